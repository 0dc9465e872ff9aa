"""Token-level predictions for LLM streams: learned prefill and decode rates, time to first token, end.

LLM serving is judged by time to first token (TTFT) and time per output token (TPOT), not by one
latency: the Gateway API inference extension's endpoint picker and llm-d's inference scheduler score
endpoints by queue and predicted TTFT (llm-d's "predicted latency" scorer; NVIDIA Dynamo plans its
prefill and decode capacity against TTFT and inter-token latency targets). A stream is a compute-bound
*prefill* of its prompt, which ends with the first token, then a *decode* of one token at a time
(Splitwise, Patel et al., ISCA 2024; DistServe, Zhong et al., OSDI 2024, which split the two phases
across GPUs for exactly these two SLOs). So, on a replica whose prefill runs ``p`` ms per prompt token
and whose decode ``d`` ms per output token of one stream::

    ttft = wait + prompt_tokens * p                       (predicted time to first token, ms)
    tpot = d                                              (prefill rate 1000 / p tokens/s; decode 1000 / d
                                                           tokens/s per stream)
    end  = ttft + (max_tokens - 1) * tpot                 (the last of max_tokens tokens)

``end`` counts ``max_tokens - 1`` decode steps because the first token ends the prefill; it is the same
definition of TPOT that measurement uses, ``(last - first) / (n - 1)``.

``wait`` is the queue in front of the stream: with ``ahead`` streams executing or queued no less urgent
than it on a replica of ``slots`` concurrent streams, each holding its slot ``hold`` ms on average::

    wait = 0                                    if ahead < slots
           (ahead - slots + 1) / slots * hold   otherwise       (the (ahead-slots+1)-th to leave frees it)

the rule the agentic router and the admission gate use for calls, with the stream's slot-holding time
as the service time.

Estimation (``StreamEstimate``, one per replica; ``StreamRates``, a table of them per router): each of
``p``, ``d`` and ``hold`` is an exponentially weighted moving average seeded with a prior
(``StreamPrior``), ``x <- x + alpha * (sample - x)``, over completed streams (``StreamSample``):
``prefill_ms / prompt_tokens`` for streams with a prompt, ``tpot_ms`` for streams of two tokens or more,
``hold_ms`` for every stream. Times per token are averaged, not rates: the mean of rates would weigh a
fast sample more than a slow one (it estimates the harmonic, not the arithmetic, mean time).

Deciding (``StreamRouter.choose``, ``ttft_refusal``): a request is a stream request when it carries
``prompt_tokens`` and its class sets ``ttft_ms``. It *meets* its budgets on a replica when the predicted
TTFT is within ``min(ttft_ms, remaining budget)`` and, for the router, the predicted TPOT within
``tpot_ms`` (when set) and the predicted end within the remaining budget (when ``max_tokens`` is given).
Pure: no Ray, no asyncio, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.types import Decision, ReplicaView, Request, Route, Shed, Wait

__all__ = [
    "StreamEstimate",
    "StreamPrediction",
    "StreamPrior",
    "StreamRates",
    "StreamRouter",
    "StreamSample",
    "queue_wait_ms",
    "stream_router_for",
    "streaming_classes",
    "ttft_refusal",
]

_NEVER = Shedding.NEVER
_INF = math.inf


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class StreamPrior:
    """What a replica is taken to do before it has finished a stream: ``prefill_tps`` prompt tokens per
    second, ``decode_tps`` output tokens per second per stream, each stream holding its slot ``hold_ms``.
    ``alpha`` is the EWMA weight of a new sample."""

    prefill_tps: float = 5000.0
    decode_tps: float = 50.0
    hold_ms: float = 2000.0
    alpha: float = 0.2

    def __post_init__(self) -> None:
        for name in ("prefill_tps", "decode_tps", "hold_ms"):
            _positive(getattr(self, name), name)
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha: must be in (0, 1], got {self.alpha!r}")


class StreamSample(NamedTuple):
    """One completed stream as measured where it ran: ``prefill_ms`` from start to the first token,
    ``tpot_ms`` ``(last - first) / (n - 1)`` (None for fewer than two tokens), ``hold_ms`` from start to
    the last token (how long it held its slot)."""

    prompt_tokens: int
    output_tokens: int
    prefill_ms: float
    tpot_ms: float | None
    hold_ms: float


class StreamPrediction(NamedTuple):
    """Predicted figures of one stream on one replica (ms from now; ``end_ms`` NaN without max_tokens)."""

    wait_ms: float
    ttft_ms: float
    tpot_ms: float
    end_ms: float


def queue_wait_ms(ahead: int, slots: int, hold_ms: float) -> float:
    """The wait before a stream starts behind ``ahead`` streams on ``slots`` slots (module docstring)."""
    if ahead < slots:
        return 0.0
    return (ahead - slots + 1) / slots * hold_ms


class StreamEstimate:
    """One replica's learned prefill time per prompt token, decode time per output token and slot-holding
    time (EWMAs seeded with the prior; module docstring)."""

    __slots__ = ("alpha", "decode_ms_per_token", "hold_ms", "prefill_ms_per_token", "samples")

    def __init__(self, prior: StreamPrior | None = None) -> None:
        prior = prior or StreamPrior()
        self.alpha = prior.alpha
        self.prefill_ms_per_token = 1000.0 / prior.prefill_tps
        self.decode_ms_per_token = 1000.0 / prior.decode_tps
        self.hold_ms = prior.hold_ms
        self.samples = 0

    @property
    def prefill_tps(self) -> float:
        """Prompt tokens per second of prefill."""
        return 1000.0 / self.prefill_ms_per_token

    @property
    def decode_tps(self) -> float:
        """Output tokens per second of one stream's decode."""
        return 1000.0 / self.decode_ms_per_token

    def observe(self, sample: StreamSample) -> None:
        """Fold one completed stream in. Parts that are not finite and >= 0 are skipped; a stream without a
        prompt teaches nothing about prefill, one of fewer than two tokens nothing about decode."""
        a = self.alpha
        self.samples += 1
        prompt, prefill = sample.prompt_tokens, sample.prefill_ms
        if prompt > 0 and _usable(prefill):
            self.prefill_ms_per_token += a * (prefill / prompt - self.prefill_ms_per_token)
        if sample.output_tokens >= 2 and sample.tpot_ms is not None and _usable(sample.tpot_ms):
            self.decode_ms_per_token += a * (sample.tpot_ms - self.decode_ms_per_token)
        if _usable(sample.hold_ms):
            self.hold_ms += a * (sample.hold_ms - self.hold_ms)

    def predict(self, prompt_tokens: int, max_tokens: int | None, ahead: int, slots: int) -> StreamPrediction:
        """The stream's predicted wait, TTFT, TPOT and end (ms from now) behind ``ahead`` streams."""
        wait = queue_wait_ms(ahead, slots, self.hold_ms)
        ttft = wait + prompt_tokens * self.prefill_ms_per_token
        tpot = self.decode_ms_per_token
        end = ttft + (max_tokens - 1) * tpot if max_tokens is not None and max_tokens >= 1 else math.nan
        return StreamPrediction(wait, ttft, tpot, end)


def _usable(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


class StreamRates:
    """Per replica id, its ``StreamEstimate`` (the prior's until it has reported a stream)."""

    __slots__ = ("_by_replica", "_default", "prior")

    def __init__(self, prior: StreamPrior | None = None) -> None:
        self.prior = prior or StreamPrior()
        self._default = StreamEstimate(self.prior)
        self._by_replica: dict[str, StreamEstimate] = {}

    def observe(self, replica_id: str, sample: StreamSample) -> None:
        """One completed stream on ``replica_id``."""
        est = self._by_replica.get(replica_id)
        if est is None:
            est = self._by_replica[replica_id] = StreamEstimate(self.prior)
        est.observe(sample)

    def get(self, replica_id: str) -> StreamEstimate:
        """``replica_id``'s estimate (a shared prior estimate before its first sample: do not modify)."""
        return self._by_replica.get(replica_id, self._default)

    def forget(self, replica_id: str) -> None:
        """The replica went away."""
        self._by_replica.pop(replica_id, None)


def streaming_classes(classes: Mapping[str, QosClass]) -> dict[str, QosClass]:
    """The classes that set a time-to-first-token budget (those stream requests are predicted for)."""
    return {name: c for name, c in classes.items() if c.ttft_ms is not None}


def ttft_refusal(
    estimate: StreamEstimate, request: Request, qos: QosClass | None, now: float, ahead: int, slots: int
) -> tuple[str, float] | None:
    """For a replica's admission gate: ``(detail, retry_after_s)`` when ``request`` is a stream request of
    a class with ``ttft_ms`` whose predicted TTFT here (behind ``ahead`` streams on ``slots``) misses
    ``min(ttft_ms, remaining budget)``; else None. The caller applies it only to classes that may be shed."""
    if request.prompt_tokens is None or qos is None or qos.ttft_ms is None:
        return None
    need = min(qos.ttft_ms, request.remaining_ms(now))
    pred = estimate.predict(request.prompt_tokens, request.max_tokens, ahead, slots)
    if pred.ttft_ms <= need:
        return None
    detail = (
        f"predicted time to first token {pred.ttft_ms:.1f} ms (wait {pred.wait_ms:.1f} ms + "
        f"{request.prompt_tokens} prompt tokens at {estimate.prefill_tps:.0f} tokens/s) > {need:.1f} ms"
    )
    return detail, max(pred.wait_ms, pred.ttft_ms - need) / 1000.0


class StreamRouter:
    """Ranks replicas for stream requests by predicted TTFT (module docstring); ``choose`` returns None for
    what it does not decide (no stream request, or no eligible healthy replica: the main router then
    names why).

    Classes that may be shed: among replicas that meet the budgets, the cheapest, then the earliest first
    token (``Route(reason="meets_ttft")``); none does: ``Shed("cannot_meet_ttft")`` with the fastest
    prediction and its wait as the retry hint. Never-shed classes: the earliest first token
    (``"fastest_ttft"``), whether or not it meets the budget. No replica with room: ``Wait``.
    ``rates`` learn from completed streams (``observe``)."""

    def __init__(self, classes: Mapping[str, QosClass], rates: StreamRates | None = None) -> None:
        self.classes = dict(classes)
        self.rates = rates if rates is not None else StreamRates()

    def observe(self, replica_id: str, sample: StreamSample) -> None:
        """A completed stream on ``replica_id`` (a replica's published sample, or the simulator's)."""
        self.rates.observe(replica_id, sample)

    def choose(
        self, request: Request, replicas: list[ReplicaView], now: float, pending: Mapping[str, int] | None = None
    ) -> Decision | None:
        """Route, shed or hold a stream request (None: not one this router decides; see the class doc).
        ``pending``: requests this caller sent per replica and has not seen answered (counted as ongoing
        when more than the replica's report)."""
        prompt = request.prompt_tokens
        qos = self.classes.get(request.qos)
        if prompt is None or qos is None or qos.ttft_ms is None:
            return None
        remaining = request.remaining_ms(now)
        if remaining <= 0:
            return None
        need_ttft = min(qos.ttft_ms, remaining)
        tpot_ms = qos.tpot_ms
        never = qos.shedding is _NEVER
        prio, allows, rates = request.priority, request.allows, self.rates
        pending = pending or {}
        eligible = 0
        best = fastest = None
        best_key = fastest_pred = None
        for r in replicas:
            if not r.healthy or (allows is not None and not allows(r.attrs)):
                continue
            eligible += 1
            ongoing = max(r.ongoing, pending.get(r.replica_id, 0))
            if ongoing >= r.max_ongoing:
                continue
            ahead = ongoing - sum(k for q, k in r.queued_by_priority.items() if q > prio)
            pred = rates.get(r.replica_id).predict(prompt, request.max_tokens, ahead, r.slots)
            if fastest_pred is None or pred.ttft_ms < fastest_pred.ttft_ms:
                fastest, fastest_pred = r, pred
            meets = (
                pred.ttft_ms <= need_ttft
                and (tpot_ms is None or pred.tpot_ms <= tpot_ms)
                and not pred.end_ms > remaining  # NaN (no max_tokens) never misses
            )
            key = (r.cost, pred.ttft_ms)
            if meets and (best_key is None or key < best_key):
                best, best_key = r, key
        if eligible == 0:
            return None
        if fastest is None or fastest_pred is None:
            return Wait("all_replicas_full")
        if never:
            reason = "meets_ttft" if fastest_pred.ttft_ms <= need_ttft else "fastest_ttft"
            return Route(fastest.replica_id, fastest_pred.ttft_ms, reason, request.rule_ids)
        if best is not None:
            return Route(best.replica_id, best_key[1], "meets_ttft", request.rule_ids)  # type: ignore[index]
        retry = max(fastest_pred.wait_ms, fastest_pred.ttft_ms - need_ttft) / 1000.0
        return Shed("cannot_meet_ttft", retry, request.rule_ids, fastest_pred.ttft_ms)


def stream_router_for(classes: Mapping[str, QosClass], prior: StreamPrior | None = None) -> StreamRouter | None:
    """A ``StreamRouter`` when some class sets ``ttft_ms`` (else None: nothing for it to decide)."""
    if not streaming_classes(classes):
        return None
    return StreamRouter(classes, StreamRates(prior))
