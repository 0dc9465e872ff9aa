"""Turning a scenario into a concrete, seeded workload shared by every router of a run.

Each request gets its arrival time, class, model, tenant and data class, and one pre-sampled service
time per replica group (common random numbers: every router sees the same requests with the same
service demands, so differences between routers are not sampling noise; Law & Kelton, ch. 11). With a
policy, each request is classified with ``policy.classify(RequestMeta(...), arrival)``; otherwise its
deadline is ``arrival + budget_ms`` of its inline class. Independent ``random.Random`` streams per
purpose (arrivals, attributes, each group's service times, token counts) are derived from the seed.

Streams (a workload with ``tokens``): each request gets ``prompt_tokens`` and ``max_tokens`` (the tokens
it produces) drawn from their own stream, and on each group ``g`` with stream model ``(p, d)`` the
pre-computed ``prefill_ms[g] = prompt * p`` and ``service_ms[g] = prefill_ms[g] + (output - 1) * d``.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agentic_ray._budget import deadline_after
from agentic_ray.policies.types import RequestMeta
from agentic_ray.scheduling.types import Request
from agentic_ray.sim.arrivals import TraceRecord, mmpp_arrivals, poisson_arrivals, ramp_arrivals, read_trace
from agentic_ray.sim.scenario import MmppSpec, PoissonSpec, RampSpec, Scenario, TraceSpec

__all__ = ["WorkItem", "Workload", "build_workload", "stream"]


def stream(seed: int, purpose: str) -> random.Random:
    """An independent, reproducible ``random.Random`` for ``purpose`` derived from ``seed``."""
    return random.Random(f"{seed}:{purpose}")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One request of the workload. ``service_ms[g]`` is its service demand on replica group ``g``."""

    request: Request
    service_ms: tuple[float, ...]
    measured: bool
    data_class: str | None = None
    prefill_ms: tuple[float, ...] = ()  # a stream's time to its first token on each group (no wait)


@dataclass(frozen=True, slots=True)
class Workload:
    """The requests of a run in arrival order, and each class's budget (ms) for reporting."""

    items: tuple[WorkItem, ...]
    class_budget_ms: Mapping[str, float]


class _Mix:
    __slots__ = ("cum", "names", "total")

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.names = list(weights)
        self.cum = list(itertools.accumulate(weights.values()))
        self.total = self.cum[-1]

    def pick(self, rng: random.Random) -> str:
        return self.names[bisect.bisect_right(self.cum, rng.random() * self.total)]


def _arrivals(scenario: Scenario, rng: random.Random) -> list[TraceRecord]:
    a = scenario.workload.arrivals
    d = scenario.duration_s
    if isinstance(a, PoissonSpec):
        times = poisson_arrivals(a.rate_rps, d, rng)
    elif isinstance(a, MmppSpec):
        times = mmpp_arrivals(a.base_rps, a.burst_rps, a.burst_every_s, a.burst_for_s, d, rng, a.switching)
    elif isinstance(a, RampSpec):
        times = ramp_arrivals(a.from_rps, a.to_rps, d, rng)
    elif isinstance(a, TraceSpec):
        return [r for r in read_trace(a.file) if r.at_s < d]
    else:  # pragma: no cover - the schema admits no other process
        raise ValueError(f"unknown arrival process {a!r}")
    return [TraceRecord(t) for t in times]


def build_workload(scenario: Scenario, seed: int, policy: Any = None) -> Workload:
    """Generate the requests of ``scenario`` for ``seed`` (classified by ``policy`` when given).

    Trace records keep their own class, model and tenant; missing ones are drawn from the mixes.
    Without ``policy``, the scenario's own policy file (if any) is loaded.
    """
    if policy is None and scenario.policy is not None:
        from agentic_ray.policies import load_policy

        policy = load_policy(scenario.policy)
    wl = scenario.workload
    records = _arrivals(scenario, stream(seed, "arrivals"))
    attr_rng = stream(seed, "attributes")
    class_mix, model_mix = _Mix(wl.mix), _Mix(wl.models)
    tenant_mix = _Mix(wl.tenants) if wl.tenants else None
    data_mix = _Mix(wl.data_classes) if wl.data_classes else None
    groups = scenario.replicas
    service_rngs = [stream(seed, f"service:{g.name}") for g in groups]
    dists = [{m: spec.build() for m, spec in g.service.items()} for g in groups]
    classes = scenario.classes or {}
    tokens = wl.tokens
    if tokens is not None:
        token_rng = stream(seed, "tokens")
        prompt_dist, output_dist = tokens.prompt.build(), tokens.output.build()
        models = [g.stream for g in groups if g.stream is not None]  # every group has one (checked)
    budgets: dict[str, float] = {}
    items: list[WorkItem] = []
    warmup = scenario.warmup_s
    for i, rec in enumerate(records):
        qos = rec.qos or class_mix.pick(attr_rng)
        model = rec.model or model_mix.pick(attr_rng)
        tenant = rec.tenant or (tenant_mix.pick(attr_rng) if tenant_mix else None)
        data_class = rec.data_class or (data_mix.pick(attr_rng) if data_mix else None)
        if tokens is None:
            service = tuple((d.get(model) or d["default"]).sample(r) for d, r in zip(dists, service_rngs, strict=True))
            if rec.service_ms is not None:  # a replayed trace: the observed time, on every group
                service = (rec.service_ms,) * len(service)
        if policy is not None:
            meta = RequestMeta(qos=qos, model=model, tenant=tenant, data_class=data_class, workflow=rec.workflow,
                               stage=rec.stage)  # fmt: skip
            # The scenario's mix says which class each caller was given: not checked against entitlements.
            granted = policy.classify(meta, rec.at_s, check_entitlement=False)
            request = Request.from_classification(granted, id=i, arrival=rec.at_s, model=model)
            if request.tenant is None and tenant is not None:
                request = _with_tenant(request, tenant)
        else:
            spec = classes.get(qos)
            if spec is None:
                raise ValueError(f"trace request {i}: unknown class {qos!r}; classes are {sorted(classes)}")
            request = Request(
                id=i,
                qos=qos,
                priority=spec.priority,
                arrival=rec.at_s,
                deadline=deadline_after(rec.at_s, spec.budget_ms),
                model=model,
                shedding=spec.shedding,
                hedge_after_ms=spec.hedge_after_ms,
                tenant=tenant,
            )
        budgets.setdefault(request.qos, (request.deadline - request.arrival) * 1000.0)
        prefill: tuple[float, ...] = ()
        if tokens is not None:
            prompt = max(1, round(prompt_dist.sample(token_rng)))
            output = max(1, round(output_dist.sample(token_rng)))
            request = replace(request, prompt_tokens=prompt, max_tokens=output)
            prefill = tuple(prompt * m.prefill_ms_per_token for m in models)
            service = tuple(f + (output - 1) * m.decode_ms_per_token for f, m in zip(prefill, models, strict=True))
        items.append(WorkItem(request, service, rec.at_s >= warmup, data_class, prefill))
    for qos in wl.mix:
        if qos in classes:
            budgets.setdefault(qos, classes[qos].budget_ms)
    return Workload(tuple(items), budgets)


def _with_tenant(request: Request, tenant: str) -> Request:
    return replace(request, tenant=tenant)
