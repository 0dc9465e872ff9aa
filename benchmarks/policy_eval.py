"""Speed of policy evaluation: ``Policy.classify`` and ``Classification.allows`` on the platform policy.

Workload (seeded): 20,000 requests drawn from the tenants, models, data classes and workflows of
``examples/policies/platform.yaml`` (24 rules), and a pool of 16 candidate nodes spread over eu-west /
us-east zones, four accelerator kinds and capacity/pool labels. Measured side by side in one run:

- ``classify`` (LRU hit): the normal hot path; requests are drawn from 1,000 distinct request shapes
  (fewer than the 4,096-entry LRU), as repeated request shapes are in production;
- ``classify`` (cache miss): the LRU is cleared before each call, so the bitset rule index runs (its
  small model-glob and rule-set memos stay warm, as they would in a running process);
- ``allows``: all 16 candidates checked per classification; reported per candidate (call time / 16).

Each figure is timed per call with ``time.perf_counter_ns`` (its own ~50-100 ns overhead is included,
so the figures are upper bounds). Writes ``benchmarks/results/policy_eval.json`` and ``.md``.
Floors (this machine): classify p99 <= 20 us, allows p99 <= 2 us per candidate.

Usage: ``python benchmarks/policy_eval.py [--requests N] [--seed S]``
"""

from __future__ import annotations

import argparse
import json
import platform as host_platform
import random
import statistics
import sys
import time
from pathlib import Path

from agentic_ray.errors import PolicyError
from agentic_ray.policies import NodeAttrs, RequestMeta, load_policy

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "examples" / "policies" / "platform.yaml"
RESULTS = ROOT / "benchmarks" / "results"

MODELS = ["llama-3-70b-instruct", "llama-3-8b", "mixtral-8x7b", "sdxl-turbo", "whisper-large-v3",
          "bge-small", "e5-large", "phi-3-mini", "llama-3.1-405b", "gpt-neo"]  # fmt: skip
DATA_CLASSES = [None, None, "public", "pii", "phi", "secret"]
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-2a", "us-east-1a", "us-east-1b", "us-east-2a"]
ACCELERATORS = ["cpu", "l4", "a100", "h100"]


def make_requests(policy, rng: random.Random, n: int, shapes: int = 1000) -> list[RequestMeta]:
    """``n`` requests drawn (with repetition) from ``shapes`` distinct request shapes."""
    pool = make_shapes(policy, rng, shapes)
    return [rng.choice(pool) for _ in range(n)]


def make_shapes(policy, rng: random.Random, n: int) -> list[RequestMeta]:
    tenants = [None, *sorted(policy.tenants)]
    workflows = [None, None, None, *sorted(policy.workflows)]
    out: list[RequestMeta] = []
    while len(out) < n:
        workflow = rng.choice(workflows)
        stage = None
        if workflow is not None and rng.random() < 0.5:
            stage = rng.choice(policy.workflows[workflow].stages).name
        shape = RequestMeta(
            qos=rng.choice([None, None, None, "critical", "standard", "sheddable"]),
            tenant=rng.choice(tenants),
            data_class=rng.choice(DATA_CLASSES),
            model=rng.choice(MODELS),
            workflow=workflow,
            stage=stage,
        )
        try:
            policy.classify(shape, 0.0)
        except PolicyError:  # a shape its caller is not entitled to (refused): time the granted ones
            continue
        out.append(shape)
    return out


def make_nodes(rng: random.Random) -> list[NodeAttrs]:
    nodes = []
    for i in range(16):
        labels = {"capacity": rng.choice(["spot", "on-demand"])}
        if rng.random() < 0.5:
            labels["pool"] = rng.choice(["warm", "batch", "general", "acme"])
        if rng.random() < 0.3:
            labels["hipaa"] = "true"
        nodes.append(NodeAttrs(f"node-{i}", ZONES[i % len(ZONES)], ACCELERATORS[(i // 2) % 4], labels))
    return nodes


def summarize(samples_ns: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "n": len(ordered),
        "median_us": round(statistics.median(ordered) / 1000, 3),
        "p99_us": round(p99 / 1000, 3),
        "mean_us": round(statistics.fmean(ordered) / 1000, 3),
    }


def run(n_requests: int, seed: int) -> dict:
    policy = load_policy(POLICY)
    rng = random.Random(seed)
    requests = make_requests(policy, rng, n_requests)
    nodes = make_nodes(rng)
    clock = time.perf_counter_ns
    now = 1000.0

    # Warm-up: fills the LRU and the model-glob memo, as a running process would be.
    decisions = [policy.classify(r, now) for r in requests]

    hit_ns = []
    for r in requests:
        t0 = clock()
        policy.classify(r, now)
        hit_ns.append(clock() - t0)

    miss_ns = []
    cache = policy._cache  # cleared per call to time the rule index itself
    for r in requests[: max(2000, n_requests // 5)]:
        cache.clear()
        t0 = clock()
        policy.classify(r, now)
        miss_ns.append(clock() - t0)

    per_candidate_ns = []
    allowed = 0
    for d in decisions:
        allows = d.allows
        t0 = clock()
        for node in nodes:
            allows(node)
        per_candidate_ns.append((clock() - t0) / len(nodes))
        allowed += sum(allows(node) for node in nodes)

    return {
        "benchmark": "policy_eval",
        "policy": {
            "file": str(POLICY.relative_to(ROOT)),
            "name": policy.name,
            "version": policy.version,
            "rules": len(policy.rules),
        },
        "seed": seed,
        "requests": n_requests,
        "distinct_requests": len({r for r in requests}),
        "candidates": len(nodes),
        "allowed_fraction": round(allowed / (len(decisions) * len(nodes)), 3),
        "mean_rules_matched": round(statistics.fmean(len(d.rule_ids) for d in decisions), 2),
        "python": sys.version.split()[0],
        "machine": host_platform.machine(),
        "results": {
            "classify (LRU hit)": summarize(hit_ns),
            "classify (cache miss)": summarize(miss_ns),
            "allows per candidate (16 per call)": summarize(per_candidate_ns),
        },
        "floors_us": {"classify_p99": 20.0, "allows_p99_per_candidate": 2.0},
    }


def write(report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "policy_eval.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Policy evaluation speed",
        "",
        f"Policy `{report['policy']['file']}` ({report['policy']['rules']} rules), {report['requests']} seeded "
        f"requests ({report['distinct_requests']} distinct), {report['candidates']} candidate nodes, "
        f"seed {report['seed']}, Python {report['python']}.",
        "",
        "| measure | n | median (us) | p99 (us) | mean (us) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['n']} | {r['median_us']} | {r['p99_us']} | {r['mean_us']} |")
    lines += [
        "",
        f"Floors: classify p99 <= {report['floors_us']['classify_p99']} us, allows p99 <= "
        f"{report['floors_us']['allows_p99_per_candidate']} us per candidate. Timer overhead is included.",
        "",
    ]
    (RESULTS / "policy_eval.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = run(args.requests, args.seed)
    write(report)
    print((RESULTS / "policy_eval.md").read_text())


if __name__ == "__main__":
    main()
