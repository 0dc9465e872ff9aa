"""Cost of one accelerator snapshot: ``AcceleratorProbe.sample()`` on this host.

The node agent samples its node's accelerators on every report (default every 0.5 s), so the cost of
a sample bounds how often it can do so. On a host with an NVIDIA GPU this times real NVML (one
``nvmlDeviceGet*`` call per field and device); elsewhere it times the CPU snapshot and, beside it,
the fake NVML with 8 devices (the Python cost of the GPU path without the driver).

Writes ``benchmarks/results/probe_cost.json`` and ``.md`` (``--out-dir`` to put them elsewhere).

Usage: ``python benchmarks/probe_cost.py [--samples N] [--out-dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from agentic_ray.actors._probe import AcceleratorProbe
from agentic_ray.testing.nvml import FakeGpu, FakeNvml

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def time_samples(probe: AcceleratorProbe, n: int) -> dict[str, float]:
    """Median, p99 and max of ``n`` calls to ``probe.sample()``, in microseconds."""
    probe.sample()  # warm up: first-call imports and handle lookups
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        probe.sample()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return {
        "n": n,
        "p50_us": statistics.median(samples),
        "p99_us": samples[min(n - 1, int(0.99 * n))],
        "max_us": samples[-1],
    }


def run(n: int) -> dict:
    real = AcceleratorProbe()
    first = real.sample()
    rows = {f"this host ({first['kind']})": time_samples(real, n)}
    rows["fake NVML, 8 GPUs"] = time_samples(AcceleratorProbe(nvml=FakeNvml([FakeGpu()] * 8)), n)
    return {
        "host": platform.node(),
        "gpus": [g.get("name") for g in first["gpus"]],
        "nvml": first["nvml"] or "ok",
        "first_sample": first,
        "rows": rows,
    }


def write(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe_cost.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# AcceleratorProbe.sample() cost",
        "",
        f"GPUs: {', '.join(report['gpus']) or 'none'}; NVML: {report['nvml']}",
        "",
        "| probe | samples | p50 us | p99 us | max us |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["rows"].items():
        lines.append(f"| {name} | {r['n']} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['max_us']:.1f} |")
    md = out / "probe_cost.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(write(run(args.samples), args.out_dir).read_text())


if __name__ == "__main__":
    main()
