"""The front door in Serve's HTTP proxy: a cheap 429 for the share of requests the router would refuse.

Why. A direct HTTP request to an ``@agentic_ray.deployment`` (``http_direct``) reaches the agentic router
only after Serve's proxy did most of its work for it: the HTTP handling, the request's setup, the hop to
the router's thread, and for an answer the trip back. A refusal by the router costs the proxy about as
much as a request that is served. In open-loop overload that work is what saturates the host: in the
chaos suite's HTTP ladder at 10x capacity the routers refused nearly every standard and sheddable
request at once, yet a refusal reached its client after 0.1-2 s and critical requests, routed within a
millisecond of reaching the router, came back 504 after 0.8-2.9 s (critical attainment 0.2 %). Refusing
every standard and sheddable request in the proxy before Serve's path (an experiment) brought critical
attainment at 10x to 38 %, where at most 50 % fits (critical demand alone is twice capacity).

What. ``ProxyDoor`` is an ASGI middleware that Serve installs in its proxy (Serve's
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``; ``enable()`` sets it to ``IMPORT_PATH``). For a request
to a route whose deployment is agentic (its router, in this process, registered the route the first
time it classified a request there: ``seen``), it classifies the request with that router's live policy
and identity rules and keeps, per route and class, an ``AdaptiveThrottle`` (Google SRE book, ch. 21:
client-side adaptive throttling): requests attempted, and requests the deployment accepted (answered in
budget with a status other than 429, 503 or 504; a request counts when its answer starts), over the
last ``WINDOW_S``. While the deployment accepts at least half of a class, every request of it goes
through; beyond, a request is refused here with probability ``(requests - 2 x accepts) / (requests +
1)``: 429, ``Retry-After: 1`` and a JSON body (``{"error": "door_throttled", ...}``), without any of
Serve's work. About twice what the deployment accepts still reaches the router, which keeps deciding
(and keeps the estimate fresh). And while the deployment refuses most of a class anyway, that class is
refused here at least in the share of a more urgent class's requests the deployment missed
(``throttle.refusal_probability``): less urgent work is turned away first, before it adds to what
delays critical work in Serve's path.

In-flight limit (``AGENTIC_PROXY_INFLIGHT_PER_SLOT``, default ``3``; ``0`` turns it off). Past the
door, every request shares the proxy's event loop and Serve's queues first come, first served. So the
door lets a request into Serve's path only while fewer than three times the route's replica slots
(``door_slots``, which its router sums from what the replicas publish; at least ``MIN_INFLIGHT``) of
its class's priority or a more urgent one are in, per proxy (``scheduling.inflight.InflightQueue``):
less urgent work inside never holds a more urgent request back (the router serves it first anyway),
and the least urgent class sees the whole count. The rest wait at the door, where a waiting request
costs a future and a timer, and go in by class priority, then deadline; a standing queue (more waiters
of a priority than the limit) lets its latest deadline in first (adaptive LIFO), so answers under
sustained overload stay fresh. At most ``WAITING_PER_INFLIGHT`` times the limit wait: past that the
least valuable is refused, 429 ``{"error": "door_queue_full"}``. A class that is never shed waits too,
ahead of every less urgent one, but is never refused for a full queue: it goes in past the limit
instead. A waiter whose deadline comes closer than the time an answer takes once past the door
(``path_s``, smoothed) is answered 504 at the door instead of being sent to miss. Held requests are not
counted by the throttle: their wait is the door's doing, not the deployment's, and refusing closed-loop
clients for it brings them straight back. Measured on two slow cores (``http_front_door``'s example,
16 s runs; not stored benchmarks), first with one limit for every class, never-shed classes let in at
once, at twice the slots, on and off alternating (five pairs; four of them
with a tighter limit for few slots or without the path-time check, neither of which changes this example):

- 120 closed-loop clients: 94.5, 86.8, 105.2, 98.7 and 104.1 requests/s in budget, critical 98.1-99.7 %,
  against 1.9, 5.5, 1.8, 92.1 and 3.5/s without (critical 0 % in four, 51 % in one: the door's throttle
  latched, refusing standard and sheddable ~400 times a second to clients that came straight back);
- 60 clients: 114.2, 107.2, 116.2, 125.4 and 108.4/s (mean 114.3), critical 89.0-100 % (100 % in two),
  against 120.1, 110.3, 123.2, 127.1 and 127.8/s (mean 121.7), critical 85.3-98.4 %: less goodput for
  more of critical in budget. Then two, three and four times the slots, alternating 3/2/4/4/2/3: at 60
  clients 115.4 and 114.2/s (critical 98.3 and 98.6 %) at 2x, 116.4 and 142.6 (99.0 and 99.5 %) at 3x,
  129.5 and 128.7 (98.5 and 100 %) at 4x; at 120 clients critical 99.2 and 99.2 %, 71.4 and 98.1 %,
  97.7 and 95.2 %, goodput 83.4-107.3 in all. Three is the default: the limit must also cover requests
  in transit between the proxy and the replicas, which a slow host makes longer;
- open loop (the chaos suite's quick HTTP ladder, three one-slot replicas, where the limit was its floor
  of 16, two pairs): equal within the noise up to 4x (4x: 36.8 and 16.0 against 33.2, 19.0 and 26.8),
  lower at 10x (13.0 and 7.2 against 18.0, 11.0 and 28.0 in three runs), where the critical class alone
  is twice the capacity, went in at once and filled the limit.

Then the limit per priority, never-shed classes held, and the floor: the same ladder's 4 s steps at 4x
and 10x, each run on a fresh cluster, alternating. Counting per priority and holding critical work gave
47.0, 50.0 (4x) and 30.0, 24.2 requests/s in budget (10x), adding adaptive LIFO 49.8, 37.8 and 35.5,
26.5, against 39.0, 41.5 and 18.5, 30.0 before: within the noise, but a served sheddable request's
median latency at 10x fell from 2.6-4.0 s to 0.9-1.0 s with LIFO. The floor decided it: sixteen in
flight for three one-slot replicas of 50 ms is over 200 ms of queue at the router, more than the
critical budget (150 ms), so nearly every critical request let in missed after costing the proxy its
whole path (at 10x 0-4 of 455 critical requests in budget, 23.5-29.8/s in all). With a floor under
the slots' multiple (nine in flight) 10x gave 35.8 and 49.8/s, critical 15 and 122 in budget, and six
in flight (twice the slots) 46.8 and 37.0/s, critical 69 and 56, the surplus critical requests answered
504 at the door after a median of 6-43 ms instead of after 0.4 s. So the floor is ``MIN_INFLIGHT``
= 8, which a route of more than two slots does not reach.

Adaptive limit (``AGENTIC_PROXY_ADAPTIVE_LIMIT``, default on; ``0``: the slots' multiple above). The
slots' multiple keeps the replicas busy, but when the host is the bottleneck (the proxies' and replicas'
event loops, not the replicas' slots) everything let in shares those loops first come, first served and
the door's priority order stops counting: with 60 closed-loop clients on the chaos suite's cluster
(three proxies on one two-core host, three replicas of two slots) the three doors let 54 in and 0-53 %
of critical requests (budget 150 ms) made it. So the limit moves between this proxy's share of the slots
(``ceil(slots / proxies)``, at least ``MIN_ADAPTIVE`` = 2; the proxies counted from Serve's controller
every 10 s) and the slots' multiple, holding the median time an answer takes once let in (``path_s``'s
samples) at or under ``TARGET_SHARE`` (half) of the tightest class budget of the route's policy:
``scheduling.target_limit.TargetLimit``, additive increase and proportional decrease every
``ADAPTIVE_INTERVAL_S``, starting at the floor. Measured on this two-core host, alternating with it off
(``benchmarks/chaos.py``'s cluster, the chaos policy; not stored benchmarks):

- 60 closed-loop clients (the noisy neighbour's HTTP load, 6 s), five pairs, without and with the busy
  process: critical attainment 84.3-96.0 % against 1.4-52.5 % (mean difference +0.77, 95 % interval
  +0.54 to +1.0) and 62.6-88.0 % against 0-1 % (+0.79, +0.66 to +0.91); requests/s in budget 75.3-121.8
  against 48.7-123.5 (+13.3, -1.2 to +27.8) and 54.3-84.7 against 41.0-75.0 (+16.3, +2.1 to +30.4);
- the quick HTTP ladder (open loop), two pairs: in budget at 0.5x / 1x / 2x / 4x / 10x 28.0 / 49.5 / 51.5 /
  47.8 / 33.5 and 28.8 / 50.0 / 50.2 / 43.5 / 28.8 requests/s against 28.5 / 53.8 / 50.2 / 48.5 / 26.5 and
  27.8 / 45.8 / 38.2 / 44.2 / 18.8; critical attainment at 2x 0.80 and 0.77 against 0.41 and 0, at 10x 0.14
  and 0.10 against 0.002 and 0.004; refusals' p99 at 2x / 4x / 10x 0.65 / 1.5 / 0.96 and 0.37 / 3.1 / 0.85 s
  against 3.3 / 4.4 / 1.6 and 3.2 / 3.5 / 2.5 s;
- one proxy (``http_front_door``'s example, 10 / 60 / 120 clients, two runs against two): 106.8 / 111.0
  / 114.0, 152.7 / 146.5 / 141.2 requests/s in budget against 102.5 / 117.5 / 126.5 and 115.5 / 118.0 /
  136.2, critical 99.2-100 % at 60 clients either way: within this host's noise (the same arm ranged
  69-183 requests/s at 10 clients across runs); standard attainment at 120 clients 0.83-0.87 against
  0.88-0.99. Two more pairs at 10 and 20 clients: 108.5 / 109.2 and 106.3 / 116.2 against 119.2 / 107.3
  and 120.0 / 91.3 (critical at 20 clients 100 % against 100 and 70.7 %): about a tenth less at 10
  clients, where the path's median exceeds the target even at the floor (the eight slots) and the door
  holds two of the ten.

Limit: the floor assumes requests spread over the proxies. When one proxy of several takes all the
traffic (clients that only reach the head node's) and the target cannot be met even at the floor (a
deployment whose calls take longer than half the tightest budget), that proxy keeps only its share of
the slots in flight and the replicas run below capacity; turn the adaptive limit off there, or give
the route a policy whose tightest budget the deployment can meet.

A latency-gradient controller against the path's recent minimum (Envoy's, Netflix's) was tried first
and not kept: on a saturated host the unqueued path is itself slow, the minimum came from loaded
samples, and it left 4-12 in flight per proxy (critical 7-33 %); without the slots' share as its floor
it also starved the one-proxy example (96-112 against 102-183 requests/s).

Refused on arrival, not after waiting (``AGENTIC_PROXY_WAIT_FORECAST`` and ``AGENTIC_PROXY_EARLY_REFUSAL``,
both default on; ``0`` turns each off). A request the door held and then refused took its wait: in the
chaos suite's quick HTTP ladder the refusals' p99 at 2x / 4x / 10x was 0.6 / 1.7-2.8 / 0.9-1.7 s, waiters
displaced from a full queue by more urgent work (``door_queue_full``) or let in to be refused by the
router. So three decisions moved to arrival or to the queue:

- a request of a class that may be shed that has to wait is refused at once, 429 ``{"error":
  "door_queue_wait"}`` with ``Retry-After: 1``, when ``scheduling.inflight.WaitForecast`` says the queue
  ahead of it (earliest deadline first) would take, with the path's own time, more than
  ``FORECAST_MARGIN`` (2; ``AGENTIC_PROXY_FORECAST_MARGIN``) times what is left of its budget. The queue
  drains at the larger of ``limit / path_s`` and the rate requests were let in lately, less what more
  urgent work let in takes. With the forecast on, the queue of those classes is earliest deadline first
  even when it stands (they are in it only when forecast to make it); never-shed classes, which are never
  refused, keep adaptive LIFO (earliest deadline first for them halved critical attainment at 10x, 0.09
  against 0.29 in one pair: under overload it serves the oldest, already late). The margin: at 1, 120
  closed-loop clients on one proxy (``http_front_door``) gave 184-302 requests/s in budget with critical
  at 22-78 % in three runs, against 257-354 and 100 % at 2: the forecast ran up to ~2x long there, and
  each refusal brings a closed-loop client straight back; counting arrivals instead of what was let in (a
  refused client comes back as a new arrival, of any class) fell to 8.5;
- the router's room check (``refuse_early`` without the pressure rule: no room for the class at any
  replica it may use) is asked on arrival, so a request of a class with no room is refused (429
  ``class_cap`` / ``queue_full``) before it waits;
- a waiter whose class has no room when its turn comes (``has_room``, asked of the router without
  recording anything) is not let in to be refused: it waits on, holding back its priority but not less
  urgent work (``InflightQueue.ready``).

Measured (quick HTTP ladder, alternating; the same code with both variables ``0`` as the other arm): in
three pairs ``door_queue_wait`` answered at 6-31 ms p99 at every step, no ``door_queue_full``, requests/s
in budget at 10x 45.5, 53.5, 42.0 against 47.0, 51.0, 48.0 (within the noise). The refusals' p99 is still
0.6-4.8 s from 2x: ``class_cap`` and ``cannot_meet_deadline`` of requests that waited before they were
refused downstream (having the router hold a call it had answered ``Wait`` until its class had room, a
trial, changed nothing in two runs, so the ``class_cap`` ones are most likely the replicas' gates', whose
counts include every proxy's requests); the room check at the queue cut ``class_cap`` at 10x from 239 and
11 to 17 and 12 in two pairs. On one proxy
(``http_front_door``, 10 / 60 / 120 closed-loop clients, two pairs): 261.2 / 320.8 / 353.7 and 265.0 /
352.2 / 267.2 requests/s in budget, every class 100 %, against 246.5 / 319.3 / 205.7 and 266.5 / 342.5 /
257.0, sheddable at 120 clients 63 and 71 %. ``door_stats`` counts ``door_wait_total`` and
``refused_early_total``.

Controlled delay (``AGENTIC_PROXY_QUEUE_INTERVAL_MS``; off by default). A request of a class that may be
shed waits at most the interval (100 in Maurer's article) while the door's queue has been empty within
it, and ``DOOR_TARGET_S`` (5 ms) once the queue has stood longer (``scheduling.inflight.ControlledDelay``),
then is refused, 429 ``{"error": "door_queue_delay"}``. Measured both ways (alternating, fresh clusters):
in the chaos suite's full HTTP ladder it cut the refusals' p99 at 2x / 4x / 10x from 4.4 / 4.5 / 1.9 s and
4.2 / 4.2 / 3.6 s to 0.31 / 0.31 / 0.50 s and 0.29 / 0.42 / 0.77 s at the same goodput within the noise
(40.2 / 25.7 / 14.0 and 46.9 / 26.1 / 9.4 requests/s against 44.2 / 33.7 / 21.9 and 41.8 / 25.3 / 6.6); but
with ``http_front_door``'s closed-loop clients, which come straight back after a 429, it collapsed the
door (60 clients: 25.0 and 28.6 requests/s in budget, critical 0 %, against 118.7 and 126.0, critical
99.3-99.6 %; 120 clients: 8.4 and 7.0 against 116.6 and 118.2): holding a closed-loop client is free,
refusing it brings it back at once. So it is for open-loop traffic whose clients honour ``Retry-After``.



Saturation (``AGENTIC_PROXY_LAG_TARGET_MS``, milliseconds; off by default). The throttles react to what
the deployment refused over the last seconds; when the proxy itself is the bottleneck (its event loop
runs every request's HTTP and Serve work first come, first served), a request waits there before any
priority applies. With a target set, a probe task (``LoopLag``) measures how late the proxy's event loop
runs a timer every ``PROBE_S``, smoothed; above the target the least urgent class is refused at once
(429, ``{"error": "door_saturated"}``, ``Retry-After: 1``), above twice it the next, and so on
(``scheduling.pressure.PressureRule``, as the routers shed by a replica's delay); the most urgent level
and never-shed classes never are. Measured with a 20 ms target on the quick chaos runs (4 s steps, a
host about half as fast as the figures above, alternating on / off / off / on): the HTTP ladder at 10x
gave 7.5 and 3.8 requests/s in budget against 16.0 and 14.5 (at 4x 18.0 and 7.2 against 18.5 and 21.8),
with fewer requests hung (472 and 629 against 1,290 and 1,463), and the HTTP noisy neighbour 5.3 and 6.2
against 30.7 and 26.8; critical attainment over HTTP was 0 % at 4x and 10x either way. It refused
sheddable work that would have been served without getting critical work through (the critical budget,
150 ms, is less than that host's HTTP path takes under load), so it is off unless asked for.

Deadlines (``AGENTIC_PROXY_DEADLINE_SLACK_S``, seconds, default ``0.25``; ``inf`` turns it off). A
request the door classified and that has no answer begun ``DEADLINE_SLACK_S`` after its deadline (its
class's budget, or the caller's earlier ``x-deadline``) is answered here: 504 with
``{"error": "deadline_exceeded", ...}``, and Serve's work for it is cancelled (Serve cancels the request
at its router or replica, as for a client that went away), the way gRPC ends a call at its deadline.
The gate and the router answer a request whose deadline passes while it waits; this ends the ones they
cannot see: still in the proxy's queues, or running past their deadline on a replica. An answer that
has begun is never cut (a stream may outlast the budget). Measured with proxies reaching replicas over
gRPC (below), quick chaos runs in alternating pairs: the HTTP ladder at 10x gave 48.0 and 41.2
requests/s in budget with it against 36.0 and 37.0 without, with 0 and 22 requests answered more than
1 s after their deadline against 412 and 116, at 4x 56.0 and 55.0 against 52.8 and 52.2; the HTTP
noisy neighbour 6 and 2 such requests against 20 and 4. Over Ray actor calls (the earlier transport) the
cancellations cost the saturated proxy more than they saved (4x: 31.5 and 43.4 against 51.6 and 50.2),
so it was off by default until the transport changed.

A class that is never shed is never refused here. Requests the door cannot classify (a bad header, an
unknown class, a failed identification) go through: the router answers them 400/401/403 as before. So do
requests to routes no agentic router registered, health checks (``/-/``) and websockets. A class the
deployment serves is never refused for another class's misses: in a closed loop a client refused at once
comes straight back, and without that condition 120 closed-loop clients latched at 0 % critical
attainment, the proxy answering ~1,000 refusals a second.

Limits. A route is known by its prefix (the ASGI ``root_path`` Serve gives the router); a non-agentic
application under a path beneath an agentic route's prefix (an agentic app at ``/`` and a plain one at
``/other``) is throttled with the agentic route's classes. With several proxies (one per node) each has
its own door. A route is learnt from Serve's route table in the proxy when an agentic router of the
proxy routes its deployment (``_learn``), else when its router has classified its first request (until
then its requests pass). A route whose router has classified none for ``ROUTE_TTL_S`` (its application
deleted or moved) is not gated (``seen``) unless Serve's route table in the proxy still sends the prefix
to that router's deployment (an idle route stays gated); a new router on a route starts with fresh
counts.

Direct call (``AGENTIC_PROXY_DIRECT_CALL``, default on; ``0``: off). A request the door lets in to a
deployment whose replicas offer it goes to the deployment as one handle call made here, not through
Serve's HTTP path (``serve._door_call``: the body read here, Serve's route table's handle for the path,
the door's metadata and deadline; about a third of the CPU per request). The router that classifies such
a call registers for the door's route as for an HTTP request (``seen``), so a redeployed application's
new router takes the route over after one call.

Transport. ``enable()`` also sets ``RAY_SERVE_PROXY_USE_GRPC=1`` (unless it is set): Serve's proxies then
send requests to replicas over the replicas' gRPC servers instead of Ray actor calls (a flag of Ray
2.60's ``serve/_private/constants.py``; the gRPC data plane that Ray's throughput-optimized mode is built
on). Over actor calls each HTTP request also costs the replica a named-actor lookup and a call back to
the proxy for the body, and the proxy the matching work: in the chaos suite's HTTP ladder at 10x
capacity the proxies and replicas saturated the two cores and critical requests, routed within ~8 ms of
the door, were answered after ~0.6 s. With gRPC, steps of 6 s at 10x after a 4x step gave 44.8-50.3
requests/s in budget against 17.7-27.3, and the quick ladder's 4 s step at 10x 40.8 and 34.2 against
34.5 and 26.0 (alternating runs). ``RAY_SERVE_PROXY_USE_GRPC=0`` keeps actor calls.

Cluster setup. The variables must be in the proxy's environment when Serve starts it: ``agentic_ray.init``
sets them before it starts a local Ray; on a cluster, start Ray with them
(``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=agentic_ray.serve:proxy_middlewares RAY_SERVE_PROXY_USE_GRPC=1
ray start ...``; proxies reach replicas on their gRPC ports, as Ray's own processes reach each other). A
callback of your own can return ``agentic_ray.serve.proxy_middlewares()`` plus your middlewares.
``AGENTIC_PROXY_DOOR=0`` in the proxy's environment turns the door off.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Mapping, MutableMapping
from typing import Any

from agentic_ray.policies.types import QosClass, Shedding
from agentic_ray.scheduling.inflight import ControlledDelay, InflightQueue, WaitForecast
from agentic_ray.scheduling.pressure import PressureRule
from agentic_ray.scheduling.target_limit import TargetLimit
from agentic_ray.scheduling.throttle import ClassThrottles
from agentic_ray.serve import _door_answers as answers
from agentic_ray.serve import _handle_throttle
from agentic_ray.serve._door_call import direct_app, proxy_router, routed_handle, send_json
from agentic_ray.serve._http_direct import caller_meta, scope_headers
from agentic_ray.serve._http_status import http_error
from agentic_ray.serve._meta import classified_deadline, env_number, request_meta
from agentic_ray.serve._proxy_count import ProxyCount

__all__ = ["ENV", "GRPC_ENV", "IMPORT_PATH", "ProxyDoor", "door_stats", "enable", "middlewares", "seen"]

ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
IMPORT_PATH = "agentic_ray.serve:proxy_middlewares"
GRPC_ENV = "RAY_SERVE_PROXY_USE_GRPC"  # "1": Serve's proxies reach replicas over gRPC (module docstring)
OFF_ENV = "AGENTIC_PROXY_DOOR"  # "0": the door passes everything through
K = 2.0
WINDOW_S = 2.0
REFUSED_STATUSES = frozenset((429, 503, 504))  # the deployment's refusals for overload or time
SLACK_ENV = "AGENTIC_PROXY_DEADLINE_SLACK_S"  # seconds after a deadline the door answers 504; inf: never
DEFAULT_SLACK_S = 0.25


def _slack(text: str | None, default: float = DEFAULT_SLACK_S) -> float:
    """The deadline slack from ``SLACK_ENV``'s text: a number >= 0 (``inf``: off), else ``default``."""
    return env_number(text, default)


DEADLINE_SLACK_S = _slack(os.environ.get(SLACK_ENV))  # no answer begun this long after the deadline: 504
LAG_ENV = "AGENTIC_PROXY_LAG_TARGET_MS"  # the least urgent class is refused above this loop lag; inf: never
DEFAULT_LAG_TARGET_MS = math.inf  # off unless asked for (module docstring: it did not help when measured)
LAG_TARGET_MS = _slack(os.environ.get(LAG_ENV), DEFAULT_LAG_TARGET_MS)
INFLIGHT_ENV = "AGENTIC_PROXY_INFLIGHT_PER_SLOT"  # in-flight limit per replica slot of the route; 0: none
INFLIGHT_PER_SLOT = _slack(os.environ.get(INFLIGHT_ENV), 3.0)
ADAPTIVE_ENV = "AGENTIC_PROXY_ADAPTIVE_LIMIT"  # "0": the in-flight limit stays at the slots' multiple
ADAPTIVE = os.environ.get(ADAPTIVE_ENV, "1") != "0"
MIN_ADAPTIVE = 2  # the adaptive limit's least (scheduling.target_limit: one per proxy collapsed)
ADAPTIVE_INTERVAL_S = 0.1  # how often the adaptive limit moves (with at least five answers in between)
TARGET_SHARE = 0.5  # the adaptive limit holds the path's median under this share of the tightest class budget
PATH_ALPHA = 0.1  # smoothing of the time an answer takes once past the door
MIN_INFLIGHT = 8  # the least in-flight limit: a replica of one slot and short calls needs more than 3 in flight
WAITING_PER_INFLIGHT = 8  # requests held at the door at most, per unit of the in-flight limit
DOOR_TARGET_S = 0.005  # a waiter that may be refused waits this long at most once the queue stands...
INTERVAL_ENV = "AGENTIC_PROXY_QUEUE_INTERVAL_MS"  # ...that is, once it has not been empty this long (100: the
DOOR_INTERVAL_S = _slack(os.environ.get(INTERVAL_ENV), math.inf) / 1000.0  # article's); off (inf) by default
PROBE_S = 0.02  # how often the door's probe measures the proxy's event loop
FORECAST_ENV = "AGENTIC_PROXY_WAIT_FORECAST"  # "0": no refusal at arrival for a forecast wait; queue LIFO
FORECAST = os.environ.get(FORECAST_ENV, "1") != "0"
MARGIN_ENV = "AGENTIC_PROXY_FORECAST_MARGIN"  # refused when the forecast wait and path exceed this x time left
FORECAST_MARGIN = max(1.0, _slack(os.environ.get(MARGIN_ENV), 2.0))
EARLY_ENV = "AGENTIC_PROXY_EARLY_REFUSAL"  # "0": the router's room check is not asked at the door
EARLY = os.environ.get(EARLY_ENV, "1") != "0"

ROUTE_TTL_S = 5.0  # a route whose router has classified no request for this long is not gated
_routes: dict[str, Any] = {}  # route prefix (ASGI root_path) -> its router; written from routers' threads
_seen_at: dict[str, float] = {}  # route prefix -> when its router last classified a request there


def enable(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``ENV`` to ``IMPORT_PATH`` and ``GRPC_ENV`` to ``"1"`` in ``environ`` (``os.environ`` by default),
    each unless it is set already; True when the door is what ``ENV`` names. Call it before Ray starts: a
    Ray started by this process passes its environment to Serve's proxies."""
    env = os.environ if environ is None else environ
    env.setdefault(ENV, IMPORT_PATH)
    env.setdefault(GRPC_ENV, "1")
    return env[ENV] == IMPORT_PATH


_installed = False  # set when Serve's proxy in this process asked for the door (``middlewares``)


def middlewares() -> list[Any]:
    """Serve's proxy callback: the Starlette middlewares to install (``[ProxyDoor]``)."""
    global _installed
    from starlette.middleware import Middleware

    _installed = True
    return [Middleware(ProxyDoor)]


def installed() -> bool:
    """Whether Serve's proxy in this process installed the door (its callback variable named it when the
    proxy started)."""
    return _installed


def seen(scope: Mapping[str, Any], router: Any, now: float | None = None) -> None:
    """Called by an agentic router for each direct HTTP request it classifies (``scope``: the proxy's
    ASGI scope of it): registers the router's route, or renews it. A registration lapses after
    ``ROUTE_TTL_S`` without one: the application was deleted or another took its route (the door never
    refuses all of a class, so a live router keeps seeing requests)."""
    prefix = scope.get("root_path", "")
    _routes[prefix] = router  # one dict store each, atomic under the GIL: the last router to see the route wins
    _seen_at[prefix] = time.time() if now is None else now


_doors: list[ProxyDoor] = []  # the doors of this process (one per proxy server), for ``door_stats``


def door_stats() -> dict[str, dict[str, dict[str, float]]]:
    """Per route prefix and class, in this process: requests and accepts in the window, the refusal
    probability now, the totals refused at the door (``saturated_total``, ``door_full_total``,
    ``door_delay_total``), answered by its direct call (``direct_total``: ``_door_call``) and
    timed out there (``timed_out_total``). Under the key ``"*"`` of a route: its in-flight limit now
    (``limit``, ``inflight``, ``waiting``), when it has one, and when that limit is adaptive its ``floor``,
    ``cap``, ``target_ms`` and the last interval's median path time (``median_ms``, NaN before one)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    now = time.time()
    for door in list(_doors):
        for prefix, classes in door.gates.stats(now).items():
            for qos, row in classes.items():
                out.setdefault(str(prefix), {})[qos] = dict(row)
        for name, counts in (("timed_out_total", door.timed_out), ("saturated_total", door.saturated),
                             ("door_full_total", door.door_full), ("door_delay_total", door.door_delay),
                             ("direct_total", door.direct), ("door_wait_total", door.door_wait),
                             ("refused_early_total", door.refused_early)):  # fmt: skip
            for (prefix, qos), n in list(counts.items()):
                out.setdefault(str(prefix), {}).setdefault(qos, {})[name] = n
        for prefix, limiter in list(door.limits.items()):
            row = {"limit": limiter.limit, "inflight": limiter.inflight, "waiting": limiter.waiting}
            adaptive = door.targets.get(prefix)
            if adaptive is not None:  # the adaptive limit's bounds, target and last median path time
                row.update(floor=adaptive.min_limit, cap=adaptive.max_limit, target_ms=adaptive.target_s * 1000.0,
                           median_ms=adaptive.last_median_s * 1000.0)  # fmt: skip
            out.setdefault(str(prefix), {})["*"] = row
    for classes in out.values():
        for qos, row in classes.items():
            if qos != "*":
                for name in ("timed_out_total", "saturated_total", "door_full_total", "door_delay_total",
                             "direct_total", "door_wait_total", "refused_early_total"):  # fmt: skip
                    row.setdefault(name, 0)
    return out


class LoopLag:
    """How late the event loop runs a timer: a probe task sleeps ``probe_s`` at a time and smooths its
    lateness (ms, EWMA ``alpha``). ``value_ms`` is 0 until the probe runs; ``ensure`` starts it (again, if
    its loop went away) from a coroutine on the loop to watch."""

    def __init__(self, probe_s: float = PROBE_S, alpha: float = 0.3) -> None:
        self.probe_s, self.alpha = probe_s, alpha
        self.value_ms = 0.0
        self._task: asyncio.Task | None = None

    def ensure(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probe())

    def observe(self, late_ms: float) -> None:
        self.value_ms += self.alpha * (max(0.0, late_ms) - self.value_ms)

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            at = loop.time()
            await asyncio.sleep(self.probe_s)
            self.observe((loop.time() - at - self.probe_s) * 1000.0)


class ProxyDoor:
    """The ASGI middleware (module docstring)."""

    def __init__(self, app: Any, seed: int = 0, lag_target_ms: float | None = None,
                 inflight_per_slot: float | None = None, adaptive: bool | None = None,
                 forecast: bool | None = None, early: bool | None = None) -> None:  # fmt: skip
        self.app = app
        self.off = os.environ.get(OFF_ENV, "1") == "0"
        self.gates = ClassThrottles(K, WINDOW_S, seed)  # per route prefix (bound to its router) and class
        self.timed_out: Counter[tuple[str, str]] = Counter()  # per (route prefix, class)
        self.saturated: Counter[tuple[str, str]] = Counter()
        target = LAG_TARGET_MS if lag_target_ms is None else lag_target_ms
        self.lag = LoopLag() if 0 < target < math.inf else None
        self.lag_target_ms = target
        self._rules: tuple[Any, PressureRule] | None = None  # (the classes it was built for, the rule)
        self.per_slot = INFLIGHT_PER_SLOT if inflight_per_slot is None else inflight_per_slot
        self.limits: dict[str, InflightQueue[asyncio.Future]] = {}  # per route prefix
        self.adaptive = ADAPTIVE if adaptive is None else adaptive
        self.targets: dict[str, TargetLimit] = {}  # per route prefix, when adaptive
        self._proxies = ProxyCount()
        self.door_full: Counter[tuple[str, str]] = Counter()
        self.direct: Counter[tuple[str, str]] = Counter()  # answered by the direct call (``_door_call``)
        self.door_delay: Counter[tuple[str, str]] = Counter()
        self.delays: dict[str, ControlledDelay] = {}  # per route prefix: how long a waiter may wait
        self.path_s: dict[str, float] = {}  # per route: how long an answer takes once in (EWMA, seconds)
        self._routes_table: list[Any] | None = None  # [Serve's ProxyRouter or None], once looked up
        self.forecast = FORECAST if forecast is None else forecast
        self.forecasts: dict[str, WaitForecast] = {}  # per route prefix, when ``forecast``
        self.door_wait: Counter[tuple[str, str]] = Counter()  # refused at arrival for a forecast wait
        self.early = EARLY if early is None else early
        self._held: dict[asyncio.Future, tuple[Any, Any, dict[str, Any]]] = {}  # waiter -> router, class, meta
        self.refused_early: Counter[tuple[str, str]] = Counter()  # the router's room check, at arrival
        _doors.append(self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gated = self._classify(scope)
        if gated is None:
            await self.app(scope, receive, send)
            return
        prefix, qos, deadline, now, classes, router, headers, meta, classification = gated
        limit = self._lag_limit_ms(classes, qos)
        if limit is not None and self.lag is not None and self.lag.value_ms > limit:
            key = (prefix, qos.name)
            self.saturated[key] += 1
            return await answers.saturated(send, qos.name, self.lag.value_ms)
        p = self.gates.admit(prefix, classes, qos, now)
        if p is not None:
            return await answers.refuse(send, qos.name, p)
        early = self._early(prefix, qos, router, classification, meta, now)
        if early is not None:  # no room for its class at any replica: the router's refusal, at once
            status_code, extra, body = http_error(early)
            return await send_json(send, status_code, {**body, "qos": qos.name}, extra)
        entered, limiter, wait_s = await self._enter(prefix, qos, deadline, now, (router, classification, meta))
        if entered in ("expired", "full", "delayed", "forecast"):
            key = (prefix, qos.name)
            if entered == "forecast":
                self.door_wait[key] += 1
                return await answers.door_wait(send, qos.name, wait_s, self.path_s.get(prefix, 0.0), deadline - now)
            if entered == "expired":
                self.timed_out[key] += 1
                where = "held at the proxy's door until too little of it was left"
                return await answers.deadline_exceeded(send, qos.name, deadline - now, 0.0, where)
            if entered == "delayed":
                self.door_delay[key] += 1
                return await answers.door_delay(send, qos.name, time.time() - now)
            self.door_full[key] += 1
            return await answers.door_full(send, qos.name)
        status: list[int] = []
        entered_at = time.time()
        forecast = self.forecasts.get(prefix) if limiter is not None else None
        if forecast is not None:  # it takes the queue's rate from every less urgent waiter
            forecast.let_in(qos.priority, entered_at)
        try:
            direct = direct_app(self._serve_routes(), scope, prefix, router, headers, meta, deadline, qos.name)
            if not await self._forward(direct or self.app, scope, receive, send, deadline, now, status):
                key = (prefix, qos.name)
                self.timed_out[key] += 1
                status.append(504)
                await answers.deadline_exceeded(send, qos.name, deadline - now, DEADLINE_SLACK_S)
            elif direct is not None:  # its router registered for the route when it classified the call
                self.direct[(prefix, qos.name)] += 1
        finally:
            if limiter is not None:
                if status and status[0] not in REFUSED_STATUSES:
                    path_s = self.path_s.get(prefix)
                    took = time.time() - entered_at
                    self.path_s[prefix] = took if path_s is None else path_s + PATH_ALPHA * (took - path_s)
                    self._follow(prefix, limiter, took)
                _release(limiter, qos.priority)
            if status and entered is None:  # one held at the door, or whose client left, is not counted
                end = time.time()
                self.gates.outcome(prefix, qos.name, end, status[0] not in REFUSED_STATUSES and end <= deadline)

    def _early(self, prefix: str, qos: QosClass, router: Any, classification: Any, meta: dict[str, Any],
               now: float) -> Any | None:  # fmt: skip
        """The router's refusal of the request for want of room for its class at every replica it may use
        (``refuse_early`` without the pressure rule), asked on arrival, before it waits at the door (a
        refusal after waiting takes the wait); counted against the class in the throttle, as the router's
        would be. None: no refusal (a class never shed, the check off, or a router without it)."""
        refuse = getattr(router, "refuse_early", None) if self.early else None
        if refuse is None or qos.shedding is Shedding.NEVER:
            return None
        early = refuse(classification, meta, now, pressure=False)
        if early is not None:
            self.refused_early[(prefix, qos.name)] += 1
            self.gates.outcome(prefix, qos.name, now, False)
        return early

    async def _enter(self, prefix: str, qos: QosClass, deadline: float, now: float,
                     held: tuple[Any, Any, dict[str, Any]]) -> tuple[str | None, InflightQueue[asyncio.Future] | None,
                                                                     float]:  # fmt: skip
        """Wait at the door for room in the route's in-flight limit: ``(None, the limit to release when
        done, 0)`` when in at once (no limit: ``(None, None, 0)``), ``("waited", the limit, 0)`` when in
        after waiting; ``"forecast"`` (with the forecast wait, seconds) when refused on arrival because
        the queue ahead would keep it past its deadline (``WaitForecast``), ``"expired"`` when the deadline
        passed waiting, ``"full"`` when refused for more urgent work, ``"delayed"`` when it waited as long
        as a standing queue allows (``ControlledDelay``; none of these for a class that is never shed: it
        goes in past the limit when refused, and waits its deadline). ``held``: the route's router, the
        request's classification and wire dict, to ask while it waits whether its class has room
        (``_ready``)."""
        limiter = self._limiter(prefix)
        if limiter is None:
            return None, None, 0.0
        never = qos.shedding is Shedding.NEVER
        ticket = asyncio.get_running_loop().create_future()
        delay = self.delays.get(prefix)
        if delay is None:
            delay = self.delays[prefix] = ControlledDelay(min(DOOR_TARGET_S, DOOR_INTERVAL_S), DOOR_INTERVAL_S)
        delay.observe(limiter.waiting, now)
        admitted, refused = limiter.arrive(ticket, qos.priority, deadline)
        for other in refused:
            if other is not ticket and not other.done():
                other.set_result(False)
        if admitted:
            return None, limiter, 0.0
        if refused and refused[-1] is ticket:
            if never:
                limiter.admit_now(qos.priority)
                return None, limiter, 0.0
            return "full", None, 0.0
        path_s = self.path_s.get(prefix, 0.0)  # a waiter let in with less time left than this would miss
        wait_s = None if never else self._forecast_refusal(prefix, limiter, ticket, qos.priority, deadline, now)
        if wait_s is not None:  # it would wait past its deadline: refused now, not then
            limiter.leave(ticket)
            return "forecast", None, wait_s
        left_s = max(0.0, deadline - path_s - now)
        bound_s = math.inf if never else delay.max_wait_s(now)
        if self.early and not never:
            self._held[ticket] = held
        try:
            granted = await asyncio.wait_for(ticket, min(left_s, bound_s))
            if granted and time.time() > deadline - self.path_s.get(prefix, 0.0):  # answers got slower
                _release(limiter, qos.priority)
                return "expired", None, 0.0
        except asyncio.TimeoutError:
            limiter.leave(ticket)
            return ("delayed" if bound_s < left_s else "expired"), None, 0.0
        except BaseException:  # the client went away while it waited
            if not limiter.leave(ticket) and ticket.done() and not ticket.cancelled() and ticket.result():
                _release(limiter, qos.priority)
            raise
        finally:
            self._held.pop(ticket, None)
        if not granted and never:  # displaced from a full queue by more urgent work: in past the limit
            limiter.admit_now(qos.priority)
        return ("waited", limiter, 0.0) if granted or never else ("full", None, 0.0)

    def _ready(self, ticket: asyncio.Future) -> bool:
        """Whether a waiter may be let in now: its class has room at a replica it may use, as its router
        sees it (``has_room``), or the door does not know (a class never shed, the check off). One that
        may not waits on, holding back its priority but not less urgent work (``InflightQueue.ready``):
        let in, the router would refuse it (``class_cap``) after its wait."""
        held = self._held.get(ticket)
        if held is None:
            return True
        router, classification, meta = held
        has_room = getattr(router, "has_room", None)
        return has_room is None or has_room(classification, meta, time.time())

    def _forecast_refusal(self, prefix: str, limiter: InflightQueue[asyncio.Future], ticket: asyncio.Future,
                          priority: int, deadline: float, now: float) -> float | None:  # fmt: skip
        """The forecast wait (seconds) of ``ticket``, waiting in ``limiter``, when it and the path's time
        exceed ``FORECAST_MARGIN`` times what is left of its budget (refuse it now); None otherwise (or
        with the forecast off)."""
        if not self.forecast:
            return None
        forecast = self.forecasts.get(prefix)
        if forecast is None:
            forecast = self.forecasts[prefix] = WaitForecast()
        path_s = self.path_s.get(prefix, 0.0)
        wait_s = forecast.wait_s(limiter.position(ticket) or 0, priority, limiter.limit, path_s, now)
        return wait_s if now + (wait_s + path_s) / FORECAST_MARGIN > deadline else None

    def _learn(self, path: str, now: float) -> str | None:
        """The route Serve's route table in this proxy matches ``path`` to, registered now when an agentic
        router of this process routes its deployment (before that router has seen a request: the first
        burst on a route is held at the door too); None otherwise."""
        routes = self._serve_routes()
        if routes is None or path.startswith("/-/"):
            return None
        try:
            matched = routes.match_route(path)
            if matched is None:
                return None
            route, handle = matched[0], matched[1]
            router = _handle_throttle.router_for(handle.deployment_id)
        except Exception:  # Serve's internals moved: as before, the router registers the route
            return None
        if router is None or getattr(router, "policy", None) is None:
            return None
        prefix = "" if route == "/" else str(route)  # the root path Serve gives the router (none for "/")
        seen({"root_path": prefix}, router, now)
        return prefix

    def _still_routed(self, prefix: str) -> bool:
        """Whether Serve's route table in this proxy still sends ``prefix`` to the deployment of the router
        registered for it; renews the registration when it does (an idle route stays gated, a deleted or
        replaced one lapses as before)."""
        router = _routes.get(prefix)
        if routed_handle(self._serve_routes(), prefix or "/", router) is None:
            return False
        seen({"root_path": prefix}, router)
        return True

    def _serve_routes(self) -> Any | None:
        """Serve's route table in this proxy (``_door_call.proxy_router``), found once."""
        if self._routes_table is None:
            self._routes_table = [proxy_router(self.app)]
        return self._routes_table[0]

    def _limiter(self, prefix: str) -> InflightQueue[asyncio.Future] | None:
        """The route's in-flight limit, sized to its replicas' slots now (None: off, or no replica)."""
        if not 0 < self.per_slot < math.inf:
            return None
        router = _routes.get(prefix)
        slots = getattr(router, "door_slots", 0) if router is not None else 0
        limiter = self.limits.get(prefix)
        if not slots:
            return limiter  # no replica published yet (or none left): keep the last size
        limit = cap = max(MIN_INFLIGHT, math.ceil(self.per_slot * slots))
        if self.adaptive:
            self._proxies.ensure()
            floor = min(limit, max(MIN_ADAPTIVE, math.ceil(slots / self._proxies.count)))  # this proxy's share
            target_s = _target_s(router.policy.classes)
            adaptive = self.targets.get(prefix)
            if adaptive is None:
                adaptive = self.targets[prefix] = TargetLimit(target_s, floor, limit, interval_s=ADAPTIVE_INTERVAL_S)
            adaptive.target_s = target_s
            limit = adaptive.set_bounds(floor, limit)
        if limiter is None:
            limiter = self.limits[prefix] = InflightQueue(limit, WAITING_PER_INFLIGHT * cap)
            limiter.ready = self._ready
        elif limiter.limit != limit or limiter.max_waiting != WAITING_PER_INFLIGHT * cap:
            _let_in(limiter.set_limit(limit, WAITING_PER_INFLIGHT * cap, _waiting))
        limiter.lifo = _never_shed(router.policy.classes) if self.forecast else True
        return limiter

    def _follow(self, prefix: str, limiter: InflightQueue[asyncio.Future], took_s: float) -> None:
        """An answer began ``took_s`` after its request was let in: tell the route's ``TargetLimit``, and
        resize ``limiter`` to what it says (a smaller limit takes effect as requests end)."""
        adaptive = self.targets.get(prefix)
        if adaptive is None:
            return
        limit = adaptive.observe(took_s, limiter.inflight, time.time())
        if limit != limiter.limit:  # the queue's size stays what ``_limiter`` set from the slots
            _let_in(limiter.set_limit(limit, limiter.max_waiting, _waiting))

    def _lag_limit_ms(self, classes: Mapping[str, QosClass], qos: QosClass) -> float | None:
        """The proxy's loop lag above which ``qos`` is refused here (None: never; starts the probe)."""
        if self.lag is None:
            return None
        self.lag.ensure()
        if self._rules is None or self._rules[0] is not classes:
            self._rules = (classes, PressureRule(self.lag_target_ms, (c.priority for c in classes.values())))
        return self._rules[1].threshold_for(qos.priority, qos.shedding)

    def _classify(self, scope: dict[str, Any]) -> tuple[str, Any, float, float, Any, Any, dict, dict, Any] | None:
        """``(route prefix, class, deadline, now, the policy's classes, the route's router, the lower-case
        headers, the identified wire dict, the policy's classification)`` for a request the door gates;
        None for one it passes whole (door off, not HTTP, no live agentic route, bad input)."""
        if self.off or scope.get("type") != "http":
            return None
        now = time.time()
        path = scope.get("path", "")
        prefix = _match(path, now, self._still_routed) if _routes else None
        if prefix is None:
            prefix = self._learn(path, now)
        if prefix is None:
            return None
        router: Any = _routes.get(prefix)
        if router is None:
            return None
        self.gates.bind(prefix, router)  # a new router on the route starts with fresh counts
        try:
            headers = scope_headers(scope)
            # a caller's earlier deadline (``x-deadline``) wins, as at the router
            meta = caller_meta(router.http_auth, headers)
            classification = router.policy.classify(request_meta(meta), now)
            qos, deadline = classified_deadline(classification, meta)
        except Exception:  # bad input: the router answers it (400/401/403), as without the door
            return None
        return prefix, qos, deadline, now, router.policy.classes, router, headers, meta, classification

    async def _forward(self, app: Any, scope: dict[str, Any], receive: Any, send: Any, deadline: float, now: float,
                       status: list[int]) -> bool:  # fmt: skip
        """``app`` (Serve's path, or the door's direct call: ``_door_call``) for the request; False when no
        answer had begun ``DEADLINE_SLACK_S`` after ``deadline`` (it was cancelled, nothing was sent: the
        caller answers). ``status`` gets the answer's."""
        slack = DEADLINE_SLACK_S
        task = asyncio.current_task()
        if slack == math.inf or task is None:
            await app(scope, receive, _watch(send, status, None, []))
            return True
        expired: list[bool] = []

        def expire() -> None:
            if not status:
                expired.append(True)
                task.cancel()

        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + max(0.0, deadline + slack - now), expire)
        try:
            await app(scope, receive, _watch(send, status, timer, expired))
        except asyncio.CancelledError:
            if not expired:
                raise
        finally:
            timer.cancel()
        if expired and hasattr(task, "uncancel"):  # Python >= 3.11: the door's cancellation is handled here
            task.uncancel()
        return not expired  # Serve's proxy may end quietly when cancelled: the door still answers


_tightest: dict[int, tuple[Any, float]] = {}  # id(classes) -> (classes, their tightest budget in seconds)


def _target_s(classes: Mapping[str, QosClass]) -> float:
    """The adaptive limit's target for a policy's classes: ``TARGET_SHARE`` of the tightest budget, seconds
    (the budget cached per classes object: a policy switch brings a new one)."""
    cached = _tightest.get(id(classes))
    if cached is None or cached[0] is not classes:
        if len(_tightest) > 64:
            _tightest.clear()
        cached = _tightest[id(classes)] = (classes, min(c.budget_ms for c in classes.values()) / 1000.0)
    return TARGET_SHARE * cached[1]


_never: dict[int, tuple[Any, frozenset[int]]] = {}  # id(classes) -> (classes, priorities of never-shed ones)


def _never_shed(classes: Mapping[str, QosClass]) -> frozenset[int]:
    """The priorities of the classes that are never shed (cached per classes object): with the forecast on,
    the door's queue serves them adaptive LIFO (they are never refused on arrival, so under overload their
    queue stands and the freshest should go first), every other priority earliest deadline first."""
    cached = _never.get(id(classes))
    if cached is None or cached[0] is not classes:
        if len(_never) > 64:
            _never.clear()
        never = frozenset(c.priority for c in classes.values() if c.shedding is Shedding.NEVER)
        cached = _never[id(classes)] = (classes, never)
    return cached[1]


def _release(limiter: InflightQueue[asyncio.Future], priority: int) -> None:
    """An admitted request of ``priority`` ended: let the most urgent waiters in."""
    _let_in(limiter.release(priority, _waiting))


def _let_in(tickets: list[asyncio.Future]) -> None:
    """Wake the waiters ``InflightQueue`` admitted."""
    for ticket in tickets:
        ticket.set_result(True)


def _waiting(ticket: asyncio.Future) -> bool:
    """A waiter's future that no one has given up on."""
    return not ticket.done()


def _watch(send: Any, status: list[int], timer: asyncio.TimerHandle | None, expired: list[bool]) -> Any:
    """``send`` that records the answer's status in ``status`` and disarms ``timer`` when the answer begins,
    and drops every message once ``expired`` (the door answered instead)."""

    async def watched(message: Mapping[str, Any]) -> None:
        if expired:
            return
        if message.get("type") == "http.response.start":
            if timer is not None:
                timer.cancel()
            status.append(int(message.get("status", 0)))
        await send(message)

    return watched


def _match(path: str, now: float, routed: Any = None) -> str | None:
    """The longest registered route prefix of ``path`` (whole path segments) whose registration has not
    lapsed at ``now`` (or, lapsed, that ``routed(prefix)`` says Serve still sends to its router's
    deployment), or None."""
    if path.startswith("/-/"):
        return None
    best: str | None = None
    for prefix in list(_routes):
        covers = prefix in ("", "/") or path == prefix or path.startswith(prefix + "/")
        if not covers or (best is not None and len(prefix) <= len(best)):
            continue
        if now - _seen_at.get(prefix, -math.inf) <= ROUTE_TTL_S or (routed is not None and routed(prefix)):
            best = prefix
    return best
