"""ovchat: a small, fast OpenVINO runtime for chat LLMs.

    import ovchat
    eng = ovchat.load()                       # the embedded default model (`ovchat export default`)
    print(eng.generate("What is the capital of France?").text)

The public API is the engine's (`ovchat.engine`, the repository's engine/ folder), re-exported
here and imported on first use. The export tools (`ovchat.tools`) and the benchmark
(`ovchat.benchmarks`) sit beside it and are only imported by the `ovchat` command.
"""

from . import engine as _engine

__all__ = _engine.__all__


def __getattr__(name: str):
    return getattr(_engine, name)


def __dir__():
    return sorted([*globals(), *__all__])
