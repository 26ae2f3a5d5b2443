"""Device names: what exists passes, what does not is a clear error listing what does.
No machine here has an Intel GPU, so the GPU path is covered by its error."""

import pytest

from ovchat.engine import DeviceError, available_devices
from ovchat.engine.devices import check_device


def test_cpu_is_always_there():
    assert "CPU" in available_devices()
    assert check_device(" cpu ") == "CPU"


@pytest.mark.parametrize("name", ["AUTO", "AUTO:CPU", "HETERO:CPU", "MULTI:CPU"])
def test_virtual_devices_over_present_ones_are_accepted(name):
    assert check_device(name) == name


@pytest.mark.parametrize("name", ["GPU", "GPU.0", "GPU.1", "NPU", "AUTO:GPU,CPU", "HETERO:GPU,CPU"])
def test_absent_devices_say_which_exist(name):
    if "GPU" in " ".join(available_devices()):
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError) as error:
        check_device(name)
    assert "OpenVINO sees: CPU" in str(error.value)
    assert "--device CPU" in str(error.value)


@pytest.mark.parametrize("name", ["TPU", "", "GPU.x", "CPU:GPU", "HETERO"])
def test_malformed_device_names_are_refused(name):
    with pytest.raises(DeviceError):
        check_device(name)
