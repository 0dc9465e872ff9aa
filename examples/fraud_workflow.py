"""A three-stage card-fraud check (features -> score -> explain) inside a 150 ms end-to-end budget.

Run it on a laptop (an embedded local Ray starts, its node labelled ``zone=eu-west``)::

    python examples/fraud_workflow.py

or on a cluster whose nodes carry ``zone`` labels::

    RAY_AUTH_MODE=token ray job submit --address http://HEAD:DASHBOARD_PORT --working-dir . -- \
        python examples/fraud_workflow.py

(the client reads Ray's token from ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``; see the README).

What it shows:

- the policy (``examples/policies/fraud.yaml``) gives the ``fraud`` workflow 150 ms, split 30/50/20 %
  over its stages; EU tenants' card data (``data_class=pii``) may only run in ``eu-`` zones;
- ``check`` runs on a worker and submits the three stages as child tasks: each stage gets its stage
  budget, never more than what is left of the parent's 150 ms (``deadline_scope`` on the worker);
- a stage whose deadline has passed before it starts is refused with ``BudgetExhausted`` instead of
  doing work nobody waits for (cold worker start-up on a small machine shows this in the warm-up);
- every task runs on a node the policy allows: the example prints the zones it ran in.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
from pathlib import Path

import ray

import agentic_ray
from agentic_ray import AdmissionError, NoEligibleNode

POLICY = Path(__file__).resolve().parent / "policies" / "fraud.yaml"
FRAUD = dict(tenant="bank-eu", data_class="pii", workflow="fraud", num_cpus=0)


def _zone() -> str:
    return ray.get_runtime_context().get_node_labels().get("zone", "default")


@agentic_ray.task(stage="features", **FRAUD)
def features(txn: dict) -> dict:
    """Cheap features of one transaction (a real system reads a feature store here)."""
    time.sleep(0.005)
    return {"amount": txn["amount"], "foreign": txn["country"] != "DE", "night": txn["hour"] < 6, "zone": _zone()}


@agentic_ray.task(stage="score", model="fraud-gbt-1", **FRAUD)
def score(feats: dict) -> dict:
    """A stand-in for a gradient-boosted model: a logistic score of the features."""
    time.sleep(0.010)
    z = -4.0 + feats["amount"] / 400.0 + 1.5 * feats["foreign"] + 1.0 * feats["night"]
    return {"p_fraud": 1.0 / (1.0 + 2.718281828 ** (-z)), "zone": _zone()}


@agentic_ray.task(stage="explain", **FRAUD)
def explain(feats: dict, scored: dict) -> dict:
    """Which features pushed the score up."""
    time.sleep(0.003)
    reasons = [k for k in ("foreign", "night") if feats[k]] + (["amount"] if feats["amount"] > 800 else [])
    return {
        "p_fraud": round(scored["p_fraud"], 3),
        "reasons": reasons,
        "zones": sorted({feats["zone"], scored["zone"], _zone()}),
    }


@agentic_ray.task(**FRAUD)
def check(txn: dict) -> dict:
    """The workflow: three child tasks; each inherits what is left of this task's 150 ms."""
    from agentic_ray._budget import current_deadline

    f = features.remote(txn)
    s = score.remote(f)
    result = ray.get(explain.remote(f, s))
    result["budget_left_ms"] = round(current_deadline().remaining_ms(time.time()), 1)
    return result


def _transactions(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "amount": round(rng.lognormvariate(4.5, 1.0), 2),
            "country": rng.choice(["DE", "DE", "FR", "US"]),
            "hour": rng.randrange(24),
        }
        for i in range(n)
    ]


def main() -> int:
    init_kwargs: dict = {}
    if "RAY_ADDRESS" not in os.environ and not ray.is_initialized():
        # Embedded local Ray: one node, labelled as an EU zone so the residency rule can be met.
        init_kwargs.update(labels={"zone": "eu-west", "accelerator": "cpu"}, include_dashboard=False)
    agentic_ray.init(policy=str(POLICY), **init_kwargs)
    try:
        # Warm-up: worker processes start here, not inside the 150 ms (refusals expected while cold).
        for _ in range(3):
            for ref in [check.remote(t) for t in _transactions(4, seed=1)]:
                with contextlib.suppress(AdmissionError):
                    ray.get(ref, timeout=60)
        latencies, refused, zones = [], 0, set()
        for txn in _transactions(20):
            t0 = time.perf_counter()
            try:
                out = ray.get(check.remote(txn), timeout=60)
            except AdmissionError as exc:  # BudgetExhausted: refused, not run late
                refused += 1
                print(f"txn {txn['id']:2d}: refused ({exc.reason})")
                continue
            ms = (time.perf_counter() - t0) * 1000.0
            latencies.append(ms)
            zones.update(out["zones"])
            flag = "FRAUD?" if out["p_fraud"] > 0.5 else "ok"
            print(
                f"txn {txn['id']:2d}: {flag:6s} p={out['p_fraud']:.3f} reasons={out['reasons']} "
                f"{ms:6.1f} ms, {out['budget_left_ms']:6.1f} ms of budget left"
            )
        if latencies:
            print(
                f"\n{len(latencies)} checked, {refused} refused; median {statistics.median(latencies):.1f} ms, "
                f"max {max(latencies):.1f} ms (budget 150 ms); ran in zones: {', '.join(sorted(zones))}"
            )
        print("policy:", agentic_ray.status()["policy"]["name"], agentic_ray.status()["policy"]["version"])
    except NoEligibleNode as exc:
        print(f"no node satisfies the fraud policy here: {exc} (label a node zone=eu-west)")
        return 1
    finally:
        agentic_ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
