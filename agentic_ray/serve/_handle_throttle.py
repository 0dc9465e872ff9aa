"""Client-side throttling of handle calls: ``serve.call`` refuses at once what the router would refuse.

Why. A handle call that the agentic router refuses still crosses to Serve's router thread, is classified
and decided there, and its error comes back through Serve's response future. On an idle host that is
~1 ms; under overload, when the router refuses most of a class, those refusals compete with the
requests it routes for the caller's process (the router runs in the caller's process, on its own
thread). In the chaos suite's handle ladder at 10x capacity (600 requests/s offered to 60/s of
capacity) nearly 90 % of requests were refused by the router, at p50 1 ms but p99 7-48 ms per kind of
refusal (the caller's event loop and the router's thread sharing two saturated cores).

What. ``call`` (``serve._call``) keeps per deployment and class an ``AdaptiveThrottle``
(``scheduling.throttle.ClassThrottles``: Google SRE book ch. 21, client-side adaptive throttling, with
the cross-class rule the proxy's front door uses, ``serve._door``): requests attempted, and requests the
deployment accepted (answered, by a result or the method's own exception, by the request's deadline)
over the last ``WINDOW_S``. While the deployment accepts at least half of a class, every call of it goes
through; beyond, a call is refused in the caller with probability ``(requests - 2 x accepts) /
(requests + 1)`` (or a more urgent class's miss ratio while this class is mostly refused anyway), with
``Overloaded(reason="throttled")``, before any of Serve's work. Never-shed classes are never refused
here. The call is classified with the live policy of this process's agentic router of the deployment
(the router registers itself when Serve builds it, on the handle's first request); before it exists,
and for a call its policy cannot classify (the router answers that one), calls pass.

Measured (chaos suite's quick handle ladder, 4 s steps, two alternating pairs on this two-core host):
at 10x capacity refusals reached their callers within 2.3 and 2.6 ms at the 99th percentile with it,
6.5 and 14.7 ms without (4x: 2.05 and 2.05 against 4.1 and 3.4 ms), with 92-95 % of the refusals at 10x
made in the caller (81-82 % at 4x); goodput 56.5 and 58.2 requests/s against 56.0 and 51.8, critical
attainment 43 and 45 % against 40 and 31 %. The router's own refusals are not faster for it (p99 8.6
and 11.4 ms at 10x). The full ladder (10 s steps): 2.6 ms at 10x, 9.7 ms for the router's own.

Early refusal. A call the throttle lets through is then put to the router's own cheap refusals, in the
caller's thread (``AgenticRequestRouter.refuse_early`` -> ``RoutingState.refuse_early``), judged on the
router's views as they stand: by default (``AGENTIC_CALL_EARLY_REFUSAL=room``) no room for its class at
any replica it may use (``class_cap`` / ``queue_full``); with ``all`` the pressure rule too
(``host_saturated``); ``0`` turns it off. The router would refuse the call for the same reason a hop
later; under overload that hop (to Serve's router thread and back) was most of such a refusal's latency:
in the full handle ladder the throttle's refusals came back within 0.7-1.0 ms at the 99th percentile,
the router's own within 10-60 ms. The refusal is recorded as the router's (decision event, control-plane
tally) and counts against the class in the throttle, as the router's would.

Measured (chaos suite, quick runs, alternating pairs, this two-core host). Handle ladder, refusal p99 at
4x / 10x: ``all`` 2.2 / 3.3, 5.5 / 79.2, 1.2 / 1.4 ms against 20.1 / 81.8, 4.8 / 10.6, 16.6 / 98.7 off;
``room`` 3.7 / 15.2, 15.1 / 14.3, 6.6 / 48.6 against 7.1 / 41.2, 35.8 / 172.4, 18.0 / 64.1 off (a
noisier hour); goodput within the noise. Noisy neighbour (the demo's burst, one core taken), requests
answered in budget: ``all`` 453 / 402 / 382 / 355 / 452 against 472 / 517 / 480 / 429 / 454 off (mean
-62, 95 % interval -123 to -0.5; standard attainment -0.12): the pressure rule judged at the call's
arrival, at the top of a burst, refuses work the router, judging it tens of milliseconds later on a
slow host, would have routed in budget. ``room`` 445 / 428 / 497 against 448 / 442 / 394: no cost seen.
Hence the default.

``AGENTIC_CALL_THROTTLE=0`` in the caller's environment turns the throttle and the early refusal off.
``stats()`` gives the counts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

from agentic_ray import _identity
from agentic_ray.errors import AdmissionError, Overloaded, ReplicaFailed
from agentic_ray.policies.types import Shedding
from agentic_ray.scheduling.throttle import ClassThrottles
from agentic_ray.serve._meta import classified_deadline, request_meta

__all__ = [
    "EARLY_ENV", "ENV", "Ticket", "admit", "class_for", "deadline_for", "early_mode", "outcome", "recheck",
    "register", "stats",
]  # fmt: skip

ENV = "AGENTIC_CALL_THROTTLE"  # "0": calls are never refused in the caller
EARLY_ENV = "AGENTIC_CALL_EARLY_REFUSAL"  # "room" (default): no room only; "all": the pressure rule too; "0"
EARLY_MODES = ("0", "room", "all")
EARLY_DEFAULT = "room"
_warned: set[str] = set()


def early_mode(value: str | None) -> str:
    """The early-refusal mode an ``AGENTIC_CALL_EARLY_REFUSAL`` value names (``EARLY_MODES``); an unknown
    value is the default, with one warning naming the variable and what it accepts."""
    if value is None or value in EARLY_MODES:
        return EARLY_DEFAULT if value is None else value
    if value not in _warned:
        _warned.add(value)
        log.warning("%s=%r: not one of %s; using %r", EARLY_ENV, value, ", ".join(EARLY_MODES), EARLY_DEFAULT)
    return EARLY_DEFAULT


K = 2.0
WINDOW_S = 2.0
RETRY_AFTER_S = 1.0

log = logging.getLogger(__name__)
_routers: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()  # deployment id -> router
_gates = ClassThrottles(K, WINDOW_S, seed=0)
_early: dict[tuple[Any, str], int] = {}  # per (deployment, class): calls refused by ``refuse_early`` here
_lock = threading.Lock()  # calls may come from several threads' event loops


class Ticket(NamedTuple):
    """A call let through: what its ``outcome`` is counted against."""

    key: Any
    qos: str
    deadline: float


def register(deployment_id: Any, router: Any) -> None:
    """``router`` (an ``AgenticRequestRouter`` of this process) routes ``deployment_id``'s handle calls;
    the last one registered is the one ``admit`` classifies with."""
    _routers[deployment_id] = router


def router_for(deployment_id: Any) -> Any | None:
    """The router this process registered (``register``) for ``deployment_id`` (None: none)."""
    return _routers.get(deployment_id)


class _Classified(NamedTuple):
    key: Any  # the deployment
    router: Any
    classification: Any
    asked: dict[str, Any]  # the wire metadata as classified (run as the process's tenant)
    deadline: float


def _classified(handle: Any, meta: Mapping[str, Any], now: float) -> _Classified | None:
    """A call on ``handle`` with wire metadata ``meta`` as this process's router of the deployment
    classifies it (as the router does for a bound process), with its deadline; None before that router
    exists or when its policy cannot classify the call (the router answers such bad input with its typed
    error)."""
    key = getattr(handle, "deployment_id", None)
    router = _routers.get(key) if key is not None else None
    if router is None:
        return None
    try:
        asked = dict(meta)
        _identity.run_as(router.policy, asked)
        classification = router.policy.classify(request_meta(asked), now)
        _, deadline = classified_deadline(classification, asked)
    except Exception:
        return None
    return _Classified(key, router, classification, asked, deadline)


def admit(handle: Any, meta: Mapping[str, Any], now: float) -> Ticket | None:
    """Decide for a call on ``handle`` with wire metadata ``meta``: None when it is not throttled (off, no
    router yet, unclassifiable); a ``Ticket`` (with the call's deadline) when it goes through; raises
    ``Overloaded(reason="throttled")`` when it is refused here."""
    if os.environ.get(ENV, "1") == "0":
        return None
    classified = _classified(handle, meta, now)
    if classified is None:
        return None
    key, router, qos = classified.key, classified.router, classified.classification.qos
    with _lock:
        _gates.bind(key, router)
        p = _gates.admit(key, router.policy.classes, qos, now)
    if p is not None:
        raise Overloaded(
            f"the deployment refuses most {qos.name} calls now; refused in the caller with probability {p:.2f}"
            " (adaptive throttling)", reason="throttled", retry_after_s=RETRY_AFTER_S,
        )  # fmt: skip
    ticket = Ticket(key, qos.name, classified.deadline)
    early = _refuse_early(classified, ticket, now)
    if early is not None:  # what the router would refuse before choosing a replica
        raise early
    return ticket


def _refuse_early(classified: _Classified, ticket: Ticket, now: float) -> AdmissionError | None:
    """The router's early refusal of the call (``EARLY_ENV``'s mode), counted; None to let it go on."""
    qos = classified.classification.qos
    mode = early_mode(os.environ.get(EARLY_ENV))
    if qos.shedding is Shedding.NEVER or mode == "0":
        return None
    early = classified.router.refuse_early(classified.classification, classified.asked, now, pressure=mode == "all")
    if early is not None:
        outcome(ticket, early, now)
        with _lock:
            _early[(classified.key, qos.name)] = _early.get((classified.key, qos.name), 0) + 1
    return early


def recheck(handle: Any, meta: Mapping[str, Any], now: float, ticket: Ticket | None) -> AdmissionError | None:
    """The router's early refusal of a call ``admit`` let through, asked again at ``now`` (it waited in
    ``serve._call_door`` meanwhile, and the room it was judged on may be gone); None to send it."""
    if ticket is None:  # not classified by ``admit`` (no router yet, or the throttle off): nothing to ask
        return None
    classified = _classified(handle, meta, now)
    return None if classified is None else _refuse_early(classified, ticket, now)


def class_for(
    handle: Any, meta: Mapping[str, Any], now: float, ticket: Ticket | None = None
) -> tuple[Any, Any, Any] | None:
    """``(deployment key, router, QosClass)`` of a call on ``handle`` as this process's router of the
    deployment classifies it (``ticket``'s class when ``admit`` gave one); None before that router exists
    or when its policy cannot classify the call. Counts nothing (``serve._call_door`` admits by it)."""
    if ticket is not None:
        router = _routers.get(ticket.key)
        qos = router.policy.classes.get(ticket.qos) if router is not None else None
        return None if qos is None else (ticket.key, router, qos)
    classified = _classified(handle, meta, now)
    if classified is None:
        return None
    return classified.key, classified.router, classified.classification.qos


def deadline_for(handle: Any, meta: Mapping[str, Any], now: float, ticket: Ticket | None = None) -> float | None:
    """The deadline of a call on ``handle`` with wire metadata ``meta`` as this process's router of the
    deployment keeps it (its class's, or the caller's earlier one): ``ticket``'s when ``admit`` gave one
    (classified already), else classified here; ``meta``'s own deadline (or None) before that router exists
    or when its policy cannot classify the call. Counts nothing."""
    if ticket is not None:
        return ticket.deadline
    classified = _classified(handle, meta, now)
    if classified is not None:
        return classified.deadline
    carried = meta.get("deadline")
    return None if carried is None else float(carried)


def outcome(ticket: Ticket | None, error: BaseException | None, now: float | None = None) -> None:
    """Count the answer of a call ``admit`` let through: accepted when it came by its deadline with a result
    or the method's own exception; not when refused (``AdmissionError``) or its replica failed."""
    if ticket is None:
        return
    end = time.time() if now is None else now
    accepted = not isinstance(error, (AdmissionError, ReplicaFailed)) and end <= ticket.deadline
    with _lock:
        _gates.outcome(ticket.key, ticket.qos, end, accepted)


def stats(now: float | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Per deployment (``"app/name"``) and class, in this process: requests and accepts in the window, the
    refusal probability now, the total refused in the caller by the throttle (``refused_total``) and, once
    any, by the router's own rules (``refused_early_total``)."""
    at = time.time() if now is None else now
    with _lock:
        rows = _gates.stats(at)
        for (key, qos), n in _early.items():
            rows.setdefault(key, {}).setdefault(qos, {})["refused_early_total"] = n
    return {f"{getattr(key, 'app_name', '')}/{getattr(key, 'name', key)}": classes for key, classes in rows.items()}
