"""ovchat's runtime: chat LLMs on OpenVINO with openvino_genai.

    import ovchat
    eng = ovchat.Engine.load("path/to/exported-model")     # or a .gguf file; None: the default model
    print(eng.generate("What is the capital of France?").text)
    with eng.stream("Tell me a story", ovchat.GenerationOptions(max_new_tokens=64)) as stream:
        for piece in stream:
            print(piece, end="", flush=True)
    print(stream.result.finish_reason)
    chat = eng.chat(system_prompt="You are a helpful AI assistant.")
    chat.send("can you introduce yourself?")

Imports only openvino, openvino_genai, openvino_tokenizers, numpy and the standard library, and
only when a name is first used: `from ovchat.engine import EngineError` costs no OpenVINO import,
so a command-line client of a running server starts in milliseconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "BatchOptions": "options", "GenerationOptions": "options", "LoadOptions": "options",
    "BusyError": "errors", "DeviceError": "errors", "EngineError": "errors", "EngineStoppedError": "errors",
    "ModelError": "errors", "OptionsError": "errors", "PromptError": "errors",
    "ChatSession": "chat", "Engine": "engine", "EngineProcess": "process", "EngineStats": "engine", "ModelInfo": "model",
    "GeneratedToken": "results", "GenerationResult": "results", "LoadMetrics": "results", "Metrics": "results",
    "Handle": "stream", "TextStream": "stream", "Tokenizer": "tokenizer", "Tool": "tool_calls", "ToolCall": "tool_calls",
    "available_devices": "devices", "recommended_options": "decoding",
    "cache_root": "paths", "default_model_dir": "paths",
}
__all__ = [  # written out, so linters and editors read it (a test checks it matches _EXPORTS)
    "BatchOptions", "BusyError", "ChatSession", "DeviceError", "Engine", "EngineError", "EngineProcess", "EngineStats",
    "EngineStoppedError", "GeneratedToken", "GenerationOptions", "GenerationResult", "Handle", "LoadMetrics", "LoadOptions",
    "Metrics",
    "ModelError", "ModelInfo", "OptionsError", "PromptError", "TextStream", "Tokenizer", "Tool", "ToolCall",
    "available_devices", "cache_root", "default_model_dir", "load", "recommended_options",
]


def __getattr__(name: str):
    if name == "load":
        return __getattr__("Engine").load
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what editors and type checkers see
    from .chat import ChatSession
    from .decoding import recommended_options
    from .devices import available_devices
    from .engine import Engine, EngineStats
    from .errors import (BusyError, DeviceError, EngineError, EngineStoppedError, ModelError, OptionsError,
                         PromptError)
    from .model import ModelInfo
    from .process import EngineProcess
    from .options import BatchOptions, GenerationOptions, LoadOptions
    from .paths import cache_root, default_model_dir
    from .results import GeneratedToken, GenerationResult, LoadMetrics, Metrics
    from .stream import Handle, TextStream
    from .tokenizer import Tokenizer
    from .tool_calls import Tool, ToolCall
