"""What a node's accelerators are doing: NVML per GPU when there is one, CPU figures otherwise.

``AcceleratorProbe(nvml=None)`` imports ``pynvml`` (package ``nvidia-ml-py``) lazily; pass a module-like
object instead (``agentic_ray.testing.nvml.FakeNvml``) to cover the GPU path without a GPU. The NVML
calls used are ``nvmlInit``, ``nvmlDeviceGetCount``, ``nvmlDeviceGetHandleByIndex``,
``nvmlDeviceGetName``, ``nvmlDeviceGetUtilizationRates`` (``.gpu``, ``.memory`` in percent),
``nvmlDeviceGetMemoryInfo`` (``.used``, ``.total`` in bytes), ``nvmlDeviceGetTemperature(h,
NVML_TEMPERATURE_GPU)`` (degrees C) and ``nvmlDeviceGetPowerUsage`` (milliwatts). A missing library, a
missing driver (``NVMLError`` on init) or zero devices all give the CPU snapshot, never an error; a
failing field of one GPU is reported as ``None``.

``sample()`` returns a JSON-able dict::

    {"kind": "gpu", "gpus": [{"index", "name", "util_pct", "mem_util_pct", "mem_used_mb", "mem_total_mb",
                              "temp_c", "power_w"}], "cpu": {...}}
    {"kind": "cpu", "gpus": [], "cpu": {"count", "load_1m", "load_per_cpu"}}
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["AcceleratorProbe", "cpu_snapshot"]


def cpu_snapshot() -> dict[str, Any]:
    """CPU count and 1-minute load average of this host (load is ``None`` where the OS has none)."""
    count = os.cpu_count() or 1
    try:
        load_1m: float | None = os.getloadavg()[0]
    except (OSError, AttributeError):
        load_1m = None
    return {
        "count": count,
        "load_1m": load_1m,
        "load_per_cpu": None if load_1m is None else load_1m / count,
    }


def _safe(call, *args):
    try:
        return call(*args)
    except Exception:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AcceleratorProbe:
    """Samples GPU state through NVML, or CPU state when NVML or a GPU is not there.

    ``nvml``: a module with the NVML API (default: ``pynvml`` imported on first use). NVML is
    initialised once; if that fails the probe stays on CPU and says why in ``self.unavailable_reason``.
    """

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self._ready = False
        self.unavailable_reason: str | None = None
        self._init()

    def _init(self) -> None:
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml as nvml  # type: ignore[no-redef]
            except Exception as exc:  # ImportError, or a broken install
                self.unavailable_reason = f"pynvml not importable: {exc}"
                return
            self._nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded on CPU hosts
            self.unavailable_reason = f"NVML init failed: {exc}"
            return
        self._ready = True

    @property
    def has_gpu(self) -> bool:
        """True when NVML is up and reports at least one device."""
        return self._ready and bool(_safe(self._nvml.nvmlDeviceGetCount))

    def _gpu(self, index: int) -> dict[str, Any]:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        util = _safe(nvml.nvmlDeviceGetUtilizationRates, handle)
        mem = _safe(nvml.nvmlDeviceGetMemoryInfo, handle)
        temp_kind = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        temp = _safe(nvml.nvmlDeviceGetTemperature, handle, temp_kind)
        power_mw = _safe(nvml.nvmlDeviceGetPowerUsage, handle)
        name = _safe(nvml.nvmlDeviceGetName, handle)
        return {
            "index": index,
            "name": None if name is None else _text(name),
            "util_pct": None if util is None else float(util.gpu),
            "mem_util_pct": None if util is None else float(util.memory),
            "mem_used_mb": None if mem is None else mem.used / 2**20,
            "mem_total_mb": None if mem is None else mem.total / 2**20,
            "temp_c": None if temp is None else float(temp),
            "power_w": None if power_mw is None else power_mw / 1000.0,
        }

    def sample(self) -> dict[str, Any]:
        """One snapshot (see the module docstring for its shape)."""
        cpu = cpu_snapshot()
        if not self._ready:
            return {"kind": "cpu", "gpus": [], "cpu": cpu, "nvml": self.unavailable_reason}
        count = _safe(self._nvml.nvmlDeviceGetCount) or 0
        gpus = []
        for i in range(count):
            try:
                gpus.append(self._gpu(i))
            except Exception as exc:  # the device vanished or NVML broke mid-sample
                gpus.append({"index": i, "error": str(exc)})
        return {"kind": "gpu" if gpus else "cpu", "gpus": gpus, "cpu": cpu, "nvml": None}

    def close(self) -> None:
        """Shut NVML down (safe to call more than once)."""
        if self._ready:
            _safe(self._nvml.nvmlShutdown)
            self._ready = False
