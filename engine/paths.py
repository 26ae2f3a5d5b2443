"""Where ovchat keeps its files: the cache root and the embedded default model's folder."""

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "smollm2-135m-instruct-int4"


def cache_root() -> Path:
    """$OVCHAT_CACHE if set, else ~/.cache/ovchat."""
    env = os.environ.get("OVCHAT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ovchat"


def models_dir() -> Path:
    """ovchat's own exports: $OVCHAT_CACHE/models (`ovchat export default` or a named model writes
    there; `-m NAME` finds a model there by its folder's name)."""
    return cache_root() / "models"


def default_model_dir() -> Path:
    """The folder `ovchat export default` writes and every command uses without `-m`."""
    return models_dir() / DEFAULT_MODEL_NAME


def compile_cache_dir() -> Path:
    """Where compiled blobs go by default (`Engine.load(cache_dir=True)`): one model-sized blob per model and device."""
    return cache_root() / "compiled"
