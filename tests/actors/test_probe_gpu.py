"""The accelerator probe against real NVML on a host with an NVIDIA GPU (skipped elsewhere).

These tests run where ``pynvml`` initialises and reports at least one device. With PyTorch and CUDA
present they also check that the probe sees this process's own load: memory it allocates on device 0
and utilisation while it runs matrix products there.
"""

from __future__ import annotations

import threading
import time

import pytest

from agentic_ray.actors._probe import AcceleratorProbe
from agentic_ray.testing.nvml import FakeGpu, FakeNvml

pynvml = pytest.importorskip("pynvml")
_probe = AcceleratorProbe()
if not _probe.has_gpu:
    pytest.skip(f"no NVIDIA GPU here ({_probe.unavailable_reason or 'NVML reports 0 devices'})",
                allow_module_level=True)  # fmt: skip


def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch cannot use CUDA here")
    return torch


def test_every_gpu_reports_plausible_fields_in_plain_units():
    sample = _probe.sample()
    assert sample["kind"] == "gpu" and sample["nvml"] is None
    assert len(sample["gpus"]) == pynvml.nvmlDeviceGetCount()
    for g in sample["gpus"]:
        assert "error" not in g, g
        assert isinstance(g["name"], str) and g["name"], g
        assert 0.0 <= g["util_pct"] <= 100.0 and 0.0 <= g["mem_util_pct"] <= 100.0, g
        assert 0.0 < g["mem_used_mb"] <= g["mem_total_mb"], g
        assert g["mem_total_mb"] >= 1024, g  # MiB: any datacentre GPU has more than 1 GiB
        assert g["temp_c"] is None or 0.0 < g["temp_c"] < 120.0, g
        assert g["power_w"] is None or 0.0 < g["power_w"] < 2000.0, g


def test_the_fake_reports_the_same_shape_as_real_nvml():
    real = _probe.sample()["gpus"][0]
    fake = AcceleratorProbe(nvml=FakeNvml([FakeGpu()])).sample()["gpus"][0]
    assert set(fake) == set(real)
    for key, value in real.items():
        if value is not None:  # a board without a sensor reports None; the fake reports a number
            assert type(fake[key]) is type(value), (key, fake[key], value)


def test_memory_allocated_by_this_process_shows_in_mem_used():
    torch = _cuda()
    before = _probe.sample()["gpus"][0]["mem_used_mb"]
    block = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda:0")  # 2 GiB
    torch.cuda.synchronize()
    after = _probe.sample()["gpus"][0]["mem_used_mb"]
    del block
    torch.cuda.empty_cache()
    assert after - before >= 1800, (before, after)


def test_utilisation_rises_while_the_gpu_is_busy():
    torch = _cuda()
    a = torch.randn(8192, 8192, device="cuda:0")
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            for _ in range(20):
                a @ a
            torch.cuda.synchronize()

    worker = threading.Thread(target=burn, daemon=True)
    worker.start()
    try:
        peak = 0.0
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and peak < 50.0:
            time.sleep(0.25)  # NVML averages utilisation over its own sample period (1/6 s to 1 s)
            peak = max(peak, _probe.sample()["gpus"][0]["util_pct"])
    finally:
        stop.set()
        worker.join(timeout=30)
    assert peak >= 50.0, peak


def test_close_then_a_new_probe_still_works():
    probe = AcceleratorProbe()
    probe.close()
    probe.close()
    assert AcceleratorProbe().sample()["kind"] == "gpu"
