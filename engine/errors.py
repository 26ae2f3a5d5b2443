"""ovchat's exceptions. Every message is shown to the user as is, and says what to do next."""


class EngineError(Exception):
    """Base of every error ovchat raises on purpose."""


class ModelError(EngineError):
    """The model folder or file is missing, incomplete or unreadable."""


class DeviceError(EngineError):
    """The requested OpenVINO device does not exist on this machine or is malformed."""


class OptionsError(EngineError, ValueError):
    """A generation or load option has an invalid value."""


class PromptError(EngineError, ValueError):
    """The prompt or the chat messages are empty, malformed, or too long for the model."""


class BusyError(EngineError):
    """The engine is already generating for another caller and was asked not to wait."""
