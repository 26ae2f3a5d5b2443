"""One-off studies behind the project's defaults and the figures in docs/ (how to run each: studies/README.md), apart from the product.

Not part of the installed package: each runs from a checkout, at its root, against the installed
`ovchat` (`python -m studies.NAME --help`), and keeps its committed results in studies/results/.
They use `ovchat bench`'s harness (ovchat.benchmarks: child processes, pairing, statistics) and
share their prompts with the tests in tests/ (read as the namespace package `tests`). Their own
tests (studies/test_*.py, no model) run with `python -m pytest studies`, outside CI's tests/.

    decode_profile, decode_parts   where a decode step's time goes, and what each property does to it
    decoding_defaults              the measurement behind the CLI's default decoding
    export_presets                 export recipes: fidelity, bytes per token, export time
    speculative, speculative_worker  what speculative decoding and structured output buy and cost
    speculative_ties               where a speculative greedy answer parts from plain greedy
    deterministic                  answers that depend on the load, and what deterministic mode costs
    tool_calls                     tool calls on the default model: valid and right, guided against unguided
    ray_serve, ray_threads         the server on Ray Serve against ovchat serve; OpenVINO's threads in a Ray actor
"""
