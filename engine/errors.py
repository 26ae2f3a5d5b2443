"""ovchat's exceptions. Every message is shown to the user as is, and says what to do next."""

import re


class EngineError(Exception):
    """Base of every error ovchat raises on purpose. `param` names the field at fault when one is
    (e.g. "tools[1].parameters", "messages[2].tool_call_id"), for a server's error body."""

    def __init__(self, message: str = "", param: str | None = None):
        super().__init__(message)
        self.param = param

    def __reduce__(self):  # keep `param` across processes (EngineProcess)
        return (type(self), (str(self), self.param))


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


# OpenVINO wraps its reason in "Exception from <file>:<line>:" and "Check '<cond>' failed at <file>:"
# lines; the user needs the reason, which comes after them.
_OPENVINO_LOCATION = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")


def reason(error: Exception) -> str:
    """The first line of `error` that says why, skipping OpenVINO's source locations."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not _OPENVINO_LOCATION.match(line)]
    return (reasons or lines or [type(error).__name__])[0]
