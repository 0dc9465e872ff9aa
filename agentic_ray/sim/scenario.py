"""Simulator scenarios: the YAML schema (pydantic v2, ``extra="forbid"``) and its loader.

A scenario names the cluster (replica groups with slots, ``max_ongoing``, per-model service-time
distributions and faults), the workload (arrival process, class / model / tenant / data-class mixes),
the classes and budgets (inline ``classes`` or a policy file) and the run length. ``load_scenario``
collects every problem (schema, then cross-field checks) and raises one ``ScenarioValidationError``
with the field path and YAML line of each. Relative paths (``policy``, trace ``file``) are resolved
against the scenario file's folder and stored absolute.

LLM streams: a workload with ``tokens`` (prompt and output lengths, lognormal with a mean and a cv,
rounded, at least 1) makes every request a stream of ``prompt`` tokens producing ``output`` tokens
(its ``max_tokens``); every replica group then needs a ``stream`` model (``prefill_ms_per_token``,
``decode_ms_per_token``) and needs no ``service``: a stream's first token comes ``prompt *
prefill_ms_per_token`` after it starts, each further one ``decode_ms_per_token`` later (times a
slowdown fault's factor). Classes may set ``ttft_ms`` / ``tpot_ms`` (inline, or in the policy).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentic_ray.errors import Problem, ScenarioValidationError
from agentic_ray.policies.schema import BreakerSpec, RetrySpec
from agentic_ray.policies.types import Shedding
from agentic_ray.sim.distributions import Bimodal, Deterministic, Exponential, LogNormal, ServiceDistribution
from agentic_ray.sim.yaml_lines import PathKey, format_path, line_for, load_yaml_with_lines

__all__ = [
    "ArrivalSpec",
    "ClassSpec",
    "FaultSpec",
    "ReplicaGroupSpec",
    "Scenario",
    "StreamModelSpec",
    "TokenCountSpec",
    "TokensSpec",
    "WorkloadSpec",
    "load_scenario",
    "parse_scenario",
    "scale_load",
]

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]
MAX_SCENARIO_BYTES = 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExponentialSpec(_Model):
    dist: Literal["exponential"]
    mean_ms: Positive

    def build(self) -> ServiceDistribution:
        return Exponential(self.mean_ms)


class DeterministicSpec(_Model):
    dist: Literal["deterministic"]
    mean_ms: Positive

    def build(self) -> ServiceDistribution:
        return Deterministic(self.mean_ms)


class LogNormalSpec(_Model):
    dist: Literal["lognormal"]
    mean_ms: Positive
    cv: NonNegative = 0.5

    def build(self) -> ServiceDistribution:
        return LogNormal(self.mean_ms, self.cv)


class BimodalSpec(_Model):
    dist: Literal["bimodal"]
    fast_ms: Positive
    slow_ms: Positive
    slow_fraction: Annotated[float, Field(gt=0, lt=1)]
    cv: NonNegative = 0.0

    def build(self) -> ServiceDistribution:
        return Bimodal(self.fast_ms, self.slow_ms, self.slow_fraction, self.cv)


DistSpec = Annotated[ExponentialSpec | DeterministicSpec | LogNormalSpec | BimodalSpec, Field(discriminator="dist")]


class FaultSpec(_Model):
    """``crash`` removes the replica at ``at_s``; ``slowdown`` multiplies service times by ``factor``
    for work started in ``[at_s, at_s + for_s)`` (``for_s`` absent: until the end); ``error`` fails every
    request the replica starts in that window (answered with an error when its service time ends, as a
    replica whose code raises: the circuit breaker's signal). ``replica`` is the index within the group
    (default 0) or ``"all"``."""

    at_s: NonNegative
    kind: Literal["crash", "slowdown", "error"]
    factor: Positive | None = None
    for_s: Positive | None = None
    replica: Annotated[int, Field(ge=0)] | Literal["all"] = 0


class StreamModelSpec(_Model):
    """How a replica group serves an LLM stream: prefill time per prompt token, decode time per output
    token after the first (milliseconds)."""

    prefill_ms_per_token: Positive
    decode_ms_per_token: Positive


class ReplicaGroupSpec(_Model):
    name: Annotated[str, Field(min_length=1)]
    count: Annotated[int, Field(ge=1, le=100_000)] = 1
    accelerator: str = "cpu"
    zone: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    slots: Annotated[int, Field(ge=1)] = 1
    max_ongoing: Annotated[float, Field(ge=1)] = math.inf
    cost: NonNegative = 1.0
    service: dict[str, DistSpec] = Field(default_factory=dict)
    stream: StreamModelSpec | None = None
    faults: list[FaultSpec] = Field(default_factory=list)


class ClassSpec(_Model):
    budget_ms: Positive
    priority: Annotated[int, Field(ge=0)] = 0
    shedding: Shedding = Shedding.WHEN_OVERLOADED
    hedge_after_ms: Positive | None = None
    max_queue_wait_ms: Positive | None = None
    queue_bound: Annotated[int, Field(ge=0)] | None = None
    shed_threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    ttft_ms: Positive | None = None
    tpot_ms: Positive | None = None


class PoissonSpec(_Model):
    process: Literal["poisson"]
    rate_rps: Positive


class MmppSpec(_Model):
    process: Literal["mmpp"]
    base_rps: Positive
    burst_rps: Positive
    burst_every_s: Positive
    burst_for_s: Positive
    switching: Literal["exponential", "periodic"] = "exponential"


class RampSpec(_Model):
    process: Literal["ramp"]
    from_rps: Positive
    to_rps: Positive


class TraceSpec(_Model):
    process: Literal["trace"]
    file: Annotated[str, Field(min_length=1)]


ArrivalSpec = Annotated[PoissonSpec | MmppSpec | RampSpec | TraceSpec, Field(discriminator="process")]


class TokenCountSpec(_Model):
    """A token count per request: lognormal with this mean and coefficient of variation, rounded, >= 1."""

    mean: Positive
    cv: NonNegative = 0.0

    def build(self) -> ServiceDistribution:
        return LogNormal(self.mean, self.cv) if self.cv > 0 else Deterministic(self.mean)


class TokensSpec(_Model):
    """Every request is an LLM stream: its prompt length and how many tokens it produces."""

    prompt: TokenCountSpec
    output: TokenCountSpec


class WorkloadSpec(_Model):
    arrivals: ArrivalSpec
    mix: Annotated[dict[str, Weight], Field(min_length=1)]
    models: Annotated[dict[str, Weight], Field(min_length=1)] = Field(default_factory=lambda: {"default": 1.0})
    tenants: dict[str, Weight] | None = None
    data_classes: dict[str, Weight] | None = None
    tokens: TokensSpec | None = None


class Scenario(_Model):
    """A validated scenario. Build it with ``load_scenario`` / ``parse_scenario``.

    Routers whose replicas run an admission gate (``agentic``) are driven through the routing state
    Serve's router uses: the replicas' gates get Serve's queue bounds and the tenants' share caps
    (``tenant_shares``, else the policy's tenants' shares), the breaker and the retry budget take
    ``breaker`` / ``retry`` (the policy's ``admission.breaker`` / ``admission.retry`` schema; else the
    policy's, else the defaults), and a class with ``hedge_after_ms`` (inline, or in the policy) is
    hedged: after that long without an answer a second copy goes to another replica (with
    ``hedge_running: false`` only a copy still waiting behind another request at its replica: where
    slowness belongs to the request, not the replica, a second copy of a running request is as slow).

    ``costs`` (accelerator kind -> cost per replica-second) prices every replica group that sets no
    ``cost`` of its own (then 1): the agentic router ranks by it, and every run reports the cost of
    the replica time it used per 1,000 requests completed in budget."""

    name: Annotated[str, Field(min_length=1)]
    seed: int = 0
    duration_s: Positive
    warmup_s: NonNegative = 0.0
    policy: str | None = None
    classes: dict[str, ClassSpec] | None = None
    network_ms: NonNegative = 0.0
    replicas: Annotated[list[ReplicaGroupSpec], Field(min_length=1)]
    workload: WorkloadSpec
    router_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tenant_shares: dict[str, Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] | None = None
    breaker: BreakerSpec | None = None
    retry: RetrySpec | None = None
    costs: dict[str, NonNegative] | None = None
    hedge_running: bool = True

    @property
    def measured_s(self) -> float:
        """Seconds of arrivals that count in the figures (``duration_s - warmup_s``)."""
        return self.duration_s - self.warmup_s

    @property
    def replica_count(self) -> int:
        return sum(g.count for g in self.replicas)


def _locate(loc: tuple[Any, ...], data: Any) -> PathKey:
    """Map a pydantic ``loc`` onto the document path, dropping union tags that are not keys."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
            path.append(part)
        elif i == len(loc) - 1 or not isinstance(part, str):
            path.append(part)
            node = None
        # else: a discriminated-union tag such as "lognormal"; not part of the document
    return tuple(path)


def _semantic_problems(sc: Scenario) -> list[tuple[PathKey, str]]:
    out: list[tuple[PathKey, str]] = []
    if sc.warmup_s >= sc.duration_s:
        out.append((("warmup_s",), f"must be < duration_s ({sc.duration_s})"))
    if sc.policy is None and not sc.classes:
        out.append((("classes",), "required when no policy is given"))
    if sc.policy is not None and not os.path.isfile(sc.policy):
        out.append((("policy",), f"file not found: {sc.policy}"))
    if sc.classes is not None and sc.policy is None:
        for cls in sc.workload.mix:
            if cls not in sc.classes:
                out.append((("workload", "mix", cls), f"unknown class; classes are {sorted(sc.classes)}"))
    out.extend(_replica_problems(sc))
    arrivals = sc.workload.arrivals
    if isinstance(arrivals, MmppSpec) and arrivals.burst_for_s >= arrivals.burst_every_s:
        out.append((("workload", "arrivals", "burst_for_s"), "must be < burst_every_s"))
    if isinstance(arrivals, TraceSpec) and not os.path.isfile(arrivals.file):
        out.append((("workload", "arrivals", "file"), f"file not found: {arrivals.file}"))
    return out


def _replica_problems(sc: Scenario) -> list[tuple[PathKey, str]]:
    out: list[tuple[PathKey, str]] = []
    seen: set[str] = set()
    for gi, group in enumerate(sc.replicas):
        if group.name in seen:
            out.append((("replicas", gi, "name"), f"duplicate replica group name {group.name!r}"))
        seen.add(group.name)
        if sc.workload.tokens is not None:
            if group.stream is None:
                out.append((("replicas", gi, "stream"), "required when the workload has tokens (streams)"))
        elif "default" not in group.service:
            for model in sc.workload.models:
                if model not in group.service:
                    out.append((("replicas", gi, "service"), f"no service time for model {model!r} and no 'default'"))
        for fi, fault in enumerate(group.faults):
            if fault.kind == "slowdown" and fault.factor is None:
                out.append((("replicas", gi, "faults", fi, "factor"), "required for a slowdown"))
            if isinstance(fault.replica, int) and fault.replica >= group.count:
                out.append((("replicas", gi, "faults", fi, "replica"), f"index {fault.replica} >= count {group.count}"))
    return out


def _resolve(data: Any, base_dir: str | None) -> None:
    """Make relative ``policy`` and trace ``file`` paths absolute against ``base_dir`` (in place)."""
    if base_dir is None or not isinstance(data, dict):
        return
    if isinstance(data.get("policy"), str):
        data["policy"] = os.path.normpath(os.path.join(base_dir, data["policy"]))
    arrivals = (data.get("workload") or {}).get("arrivals") if isinstance(data.get("workload"), dict) else None
    if isinstance(arrivals, dict) and isinstance(arrivals.get("file"), str):
        arrivals["file"] = os.path.normpath(os.path.join(base_dir, arrivals["file"]))


def parse_scenario(text: str | bytes, source: str = "<string>", base_dir: str | None = None) -> Scenario:
    """Validate scenario YAML ``text``; raises ``ScenarioValidationError`` listing every problem.

    ``base_dir`` resolves relative paths (default: the current directory).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScenarioValidationError([Problem("", f"not UTF-8 text: {exc}", None, source)], source) from None
    data, lines, problems = load_yaml_with_lines(text, source)
    if problems:
        raise ScenarioValidationError(problems, source)
    if not isinstance(data, dict):
        raise ScenarioValidationError([Problem("", "a scenario must be a YAML mapping", 1, source)], source)
    _resolve(data, base_dir or os.getcwd())
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            path = _locate(err["loc"], data)
            found.append(Problem(format_path(path), err["msg"], line_for(path, lines), source))
        raise ScenarioValidationError(found, source) from None
    semantic = _semantic_problems(scenario)
    if semantic:
        raise ScenarioValidationError(
            [Problem(format_path(p), reason, line_for(p, lines), source) for p, reason in semantic], source
        )
    return scenario


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate the scenario file at ``path`` (relative paths inside it resolve from its folder)."""
    p = Path(path)
    raw = p.read_bytes()
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioValidationError([Problem("", "file larger than 1 MiB", None, str(p))], str(p))
    return parse_scenario(raw, str(p), str(p.resolve().parent))


def scale_load(scenario: Scenario, factor: float) -> Scenario:
    """A copy of ``scenario`` with every arrival rate multiplied by ``factor`` (> 0; traces unchanged)."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    a = scenario.workload.arrivals
    if isinstance(a, PoissonSpec):
        a = a.model_copy(update={"rate_rps": a.rate_rps * factor})
    elif isinstance(a, MmppSpec):
        a = a.model_copy(update={"base_rps": a.base_rps * factor, "burst_rps": a.burst_rps * factor})
    elif isinstance(a, RampSpec):
        a = a.model_copy(update={"from_rps": a.from_rps * factor, "to_rps": a.to_rps * factor})
    workload = scenario.workload.model_copy(update={"arrivals": a})
    return scenario.model_copy(update={"workload": workload})
