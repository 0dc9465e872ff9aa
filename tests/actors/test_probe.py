"""The accelerator probe through the fake NVML (GPU path) and on this GPU-less host (CPU path)."""

from __future__ import annotations

from agentic_ray.actors._probe import AcceleratorProbe, cpu_snapshot
from agentic_ray.testing.nvml import FakeGpu, FakeNvml


def test_gpu_path_reports_every_field_in_plain_units():
    nvml = FakeNvml([
        FakeGpu(name="NVIDIA H100", util_pct=70, mem_util_pct=30, mem_used_mb=1024, mem_total_mb=81920,
                temp_c=61, power_w=350.5),
        FakeGpu(name="NVIDIA L4"),
    ])  # fmt: skip
    probe = AcceleratorProbe(nvml=nvml)
    assert probe.has_gpu
    sample = probe.sample()
    assert sample["kind"] == "gpu" and len(sample["gpus"]) == 2
    g = sample["gpus"][0]
    assert g == {"index": 0, "name": "NVIDIA H100", "util_pct": 70.0, "mem_util_pct": 30.0, "mem_used_mb": 1024.0,
                 "mem_total_mb": 81920.0, "temp_c": 61.0, "power_w": 350.5}  # fmt: skip
    assert sample["cpu"]["count"] >= 1
    nvml.gpus[0].util_pct = 95
    assert probe.sample()["gpus"][0]["util_pct"] == 95.0
    probe.close()
    assert "nvmlShutdown" in nvml.calls


def test_unsupported_field_is_none_not_an_error():
    nvml = FakeNvml([FakeGpu(fail_fields={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature"})])
    g = AcceleratorProbe(nvml=nvml).sample()["gpus"][0]
    assert g["power_w"] is None and g["temp_c"] is None and g["util_pct"] == 0.0


def test_missing_driver_gives_cpu_snapshot():
    probe = AcceleratorProbe(nvml=FakeNvml(init_error="Driver Not Loaded"))
    sample = probe.sample()
    assert sample["kind"] == "cpu" and sample["gpus"] == []
    assert "Driver Not Loaded" in sample["nvml"]
    assert not probe.has_gpu


def test_zero_devices_is_cpu():
    assert AcceleratorProbe(nvml=FakeNvml([])).sample()["kind"] == "cpu"


def test_real_pynvml_on_this_host_does_not_raise():
    sample = AcceleratorProbe().sample()  # no GPU here: CPU figures; on a GPU host: real NVML figures
    assert sample["kind"] in ("cpu", "gpu")
    assert sample["cpu"] == {**cpu_snapshot(), "load_1m": sample["cpu"]["load_1m"],
                             "load_per_cpu": sample["cpu"]["load_per_cpu"]}  # fmt: skip
