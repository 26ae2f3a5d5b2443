"""OpenVINO device names: what this machine has, and a clear error for what it lacks.

Accepted: CPU, GPU, GPU.N, NPU, and the virtual devices AUTO, HETERO and MULTI with an
optional list (AUTO:GPU,CPU). A physical device that is absent is refused before compile,
so the user sees the devices that do exist instead of a plugin traceback.
"""

from __future__ import annotations

import functools

import openvino as ov

from .errors import DeviceError

PHYSICAL = ("CPU", "GPU", "NPU")
VIRTUAL = ("AUTO", "HETERO", "MULTI")

_HINTS = {
    "GPU": "An Intel GPU needs its OpenCL/Level Zero driver (e.g. intel-opencl-icd) and a visible /dev/dri.",
    "NPU": "An Intel NPU needs the NPU driver (Core Ultra processors).",
}


@functools.lru_cache(maxsize=1)
def core() -> ov.Core:
    """One ov.Core for the process: plugins load once."""
    return ov.Core()


def available_devices() -> list[str]:
    """Devices OpenVINO sees on this machine, e.g. ['CPU'] or ['CPU', 'GPU.0', 'GPU.1']."""
    return list(core().available_devices)


def check_device(name: str) -> str:
    """Return `name` normalised (upper case) or raise DeviceError saying what exists."""
    if not isinstance(name, str) or not name.strip():
        raise DeviceError("The device name is empty. Use CPU, GPU, GPU.0, NPU or AUTO.")
    name = name.strip().upper()
    family, _, targets = name.partition(":")
    if family in VIRTUAL:
        if family != "AUTO" and not targets:
            raise DeviceError(f"{family} needs a list of devices, e.g. {family}:GPU,CPU.")
        for target in filter(None, targets.split(",")):
            _check_physical(target)
        return name
    if targets:
        raise DeviceError(f"{name!r}: only AUTO, HETERO and MULTI take a device list.")
    _check_physical(name)
    return name


def _check_physical(name: str) -> None:
    family, _, index = name.partition(".")
    if family not in PHYSICAL or (index and not index.isdigit()):
        raise DeviceError(
            f"Unknown device {name!r}. Use one of CPU, GPU, GPU.N, NPU, AUTO, HETERO:..., MULTI:...; "
            f"this machine has: {', '.join(available_devices())}."
        )
    present = available_devices()
    # OpenVINO lists a single GPU as "GPU" and several as "GPU.0", "GPU.1"; "GPU.0" names the first either way.
    names = set(present) | {d.split(".")[0] for d in present} | {f"{d}.0" for d in present if "." not in d}
    if name not in names:
        raise DeviceError(
            f"Device {name} is not available on this machine; OpenVINO sees: {', '.join(present) or 'none'}. "
            f"{_HINTS.get(family, '')} Use --device CPU (or AUTO) to run here."
        )
