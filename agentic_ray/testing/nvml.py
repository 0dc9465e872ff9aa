"""A fake NVML: covers the GPU path of ``AcceleratorProbe`` without a GPU or driver.

    from agentic_ray.actors._probe import AcceleratorProbe
    from agentic_ray.testing.nvml import FakeGpu, FakeNvml

    nvml = FakeNvml([FakeGpu(name="NVIDIA H100", util_pct=70, mem_used_mb=1024, mem_total_mb=81920)])
    AcceleratorProbe(nvml=nvml).sample()["gpus"][0]["util_pct"]   # 70.0
    nvml.gpus[0].util_pct = 95                                     # change state between samples
    FakeNvml(init_error="Driver Not Loaded")                       # a host whose driver is missing

It implements only the ``pynvml`` calls the probe makes, with the same units (bytes, milliwatts) and
result objects (``.gpu``/``.memory``, ``.used``/``.total``/``.free``). ``fail_fields`` makes named calls
raise ``NVMLError`` for one device (``{"nvmlDeviceGetPowerUsage"}``), as real boards without power
sensors do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

__all__ = ["FakeGpu", "FakeNvml", "NVMLError"]


class NVMLError(Exception):
    """Raised by the fake like ``pynvml.NVMLError``."""


@dataclass
class FakeGpu:
    """The state of one fake device; mutate it between samples."""

    name: str = "Fake GPU"
    util_pct: float = 0.0
    mem_util_pct: float = 0.0
    mem_used_mb: float = 0.0
    mem_total_mb: float = 16384.0
    temp_c: float = 40.0
    power_w: float = 50.0
    fail_fields: set[str] = field(default_factory=set)


class FakeNvml:
    """Module-like stand-in for ``pynvml``; pass it as ``AcceleratorProbe(nvml=FakeNvml([...]))``."""

    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: str | None = None) -> None:
        self.gpus: list[FakeGpu] = list(gpus or [])
        self.init_error = init_error
        self.initialised = False
        self.calls: list[str] = []

    def _device(self, handle: int, call: str) -> FakeGpu:
        self.calls.append(call)
        if not self.initialised:
            raise NVMLError("Uninitialized")
        gpu = self.gpus[handle]
        if call in gpu.fail_fields:
            raise NVMLError("Not Supported")
        return gpu

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self.calls.append("nvmlDeviceGetCount")
        if not self.initialised:
            raise NVMLError("Uninitialized")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self.calls.append("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._device(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        gpu = self._device(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.util_pct, memory=gpu.mem_util_pct)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        gpu = self._device(handle, "nvmlDeviceGetMemoryInfo")
        used, total = int(gpu.mem_used_mb * 2**20), int(gpu.mem_total_mb * 2**20)
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetTemperature").temp_c)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetPowerUsage").power_w * 1000)
