"""The `ovchat` command, above every layer: all of ovchat's flag parsing, printing and prompting.

The library (engine/, server/) parses no flags, prints nothing and asks nothing: it takes
options and settings objects, and this package turns flags into them. Nothing of the package
imports it; its ways in are the `ovchat` console script and `python -m ovchat` (cli/main.py).

    main.py     the parser: every subcommand, wired; errors as one line
    flags.py    model and generation flags -> Engine.load's arguments and GenerationOptions
    runtime.py  generate, chat, demo, devices, info on a model loaded here
    remote.py   generate and chat with --server: a client of `ovchat serve` (no OpenVINO)
    serve.py    serve (and serve --ray): flags -> server/settings.py's ServerSettings
`ovchat export` and `ovchat bench` keep their flags beside their code (tools/export_cli.py,
benchmarks/cli.py), which need the export and bench extras.
"""
