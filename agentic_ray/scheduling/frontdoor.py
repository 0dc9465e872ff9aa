"""The front door's cheap refusal: work whose class queue is full everywhere it may go is refused at once.

A replica's admission gate bounds each class's queue and refuses an arrival whose queue is full
(``Overloaded(reason="queue_full")``). By then the request has cost a full round trip: for HTTP, Serve's
proxy parsed and forwarded it and fetched its body for the replica, about 3 ms of CPU on a small host,
the same as a request that is served, in the first-come-first-served queues where critical work waits
too. The caller's router knows, from the replicas' published stats, how full each class queue is: a
replica whose queue for the request's class is full is not a candidate for it, and when that leaves none
of the replicas the request may use, the router refuses it itself (a 429 from the proxy costs about a
tenth of an answered request), so overload is turned away at the front instead of after a trip through
it (Google SRE book, "Handling Overload", ch. 21: reject early and cheaply; the same reasoning as
Serve's own ``max_queued_requests`` at the caller).

``class_room`` (``ReplicaView.class_room``: per class, the gate's bound minus what the replica last
reported queued) is a report up to one stats period old: a burst between reports still reaches a gate
that refuses it, which stays correct, only dearer. A class that is never shed is never refused here: the
gate admits it over its bound by evicting less critical work. A class the control plane capped at a
replica (``AdmissionGate.set_class_caps``) has no more room there than its cap leaves
(``RoutingStats.cap_room``), and when the caps are what leave no replica, the refusal says
``class_cap`` as the gate's would: the chaos ladder's slowest refusals at 1x and 2x were the gates'
``class_cap`` ones, each after a round trip to a replica. Pure.
"""

from __future__ import annotations

from agentic_ray.policies.types import Shedding
from agentic_ray.scheduling.types import ReplicaView, Request, Shed

__all__ = ["with_room"]


def with_room(request: Request, replicas: list[ReplicaView]) -> tuple[list[ReplicaView], Shed | None]:
    """The replicas whose queue for ``request``'s class has room (all of them for a never-shed class),
    and ``Shed("queue_full")`` when that leaves none of the healthy replicas the request may use (then
    ``retry_after_s`` is the time those replicas take to start one more: mean reported service time over
    their slots). A replica that reports nothing for the class counts as having room."""
    if request.shedding is Shedding.NEVER:
        return replicas, None
    qos = request.qos
    room = [r for r in replicas if r.class_room.get(qos, 1) > 0]
    if len(room) == len(replicas):
        return replicas, None
    allows = request.allows
    if any(r.healthy and (allows is None or allows(r.attrs)) for r in room):
        return room, None
    full = [r for r in replicas if r.healthy and (allows is None or allows(r.attrs))]
    if not full:
        return replicas, None  # nothing eligible: the router's own decision names why
    services = [s for r in full if (s := r.service_ms.get(request.model) or r.service_ms.get("default"))]
    service_ms = sum(services) / len(services) if services else 0.0
    reason = "class_cap" if all(qos in r.class_capped for r in full) else "queue_full"
    return replicas, Shed(reason, service_ms / max(1, sum(r.slots for r in full)) / 1000.0, request.rule_ids)
