"""ovchat's runtime: chat LLMs on OpenVINO with openvino_genai.LLMPipeline.

    import engine
    eng = engine.Engine.load("path/to/exported-model")     # or a .gguf file; None: the default model
    print(eng.generate("What is the capital of France?").text)
    for piece in eng.stream("Tell me a story", engine.GenerationOptions(max_new_tokens=64)):
        print(piece, end="", flush=True)
    chat = eng.chat(system_prompt="You are a helpful AI assistant.")
    chat.send("can you introduce yourself?")

Imports only openvino, openvino_genai, openvino_tokenizers, numpy and the standard library.
"""

from .chat import ChatSession
from .devices import available_devices
from .engine import Engine
from .errors import BusyError, DeviceError, EngineError, ModelError, OptionsError, PromptError
from .model import ModelInfo
from .options import GenerationOptions, LoadOptions
from .paths import cache_root, default_model_dir
from .results import GenerationResult, LoadMetrics, Metrics
from .tokenizer import Tokenizer

load = Engine.load

__all__ = [
    "BusyError", "ChatSession", "DeviceError", "Engine", "EngineError", "GenerationOptions", "GenerationResult",
    "LoadMetrics", "LoadOptions", "Metrics", "ModelError", "ModelInfo", "OptionsError", "PromptError", "Tokenizer",
    "available_devices", "cache_root", "default_model_dir", "load",
]
