"""Measuring a streaming method of an agentic deployment: time to first token and time per output token.

``measured_stream(admission, request, trace, items)`` runs one stream (an async iterator of the user's
method's items) through the replica's admission gate, as ``_deployment`` did before, and times it. Each
yielded item counts as one output token::

    ttft_ms = first item - the request's arrival at this replica      (queueing in the gate included)
    tpot_ms = (last item - first item) / (n - 1)                      (None for fewer than two items)

When the stream ends normally, ``ReplicaAdmission.stream_done`` gets its figures: a
``scheduling.streams.StreamSample`` (prefill from the start of execution to the first item, the slot
held until the last) that teaches the gate's and, through ``record_routing_stats``, the routers'
estimates of this replica's prefill and decode rates, and the TTFT / TPOT that metrics record against
the class's ``ttft_ms`` / ``tpot_ms``. A stream that fails or that its caller stops reading is no sample.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from agentic_ray.scheduling.streams import StreamSample
from agentic_ray.scheduling.types import Request

__all__ = ["measured_stream"]


async def measured_stream(
    admission: Any, request: Request, trace: Any, items: AsyncIterator[Any], workflow: str | None = None
) -> AsyncIterator:
    """Yield ``items`` once the gate admits ``request`` (holding its slot until they end), timing each;
    ``workflow``: the request's drift key (``ReplicaAdmission.admitted``)."""
    async with admission.admitted(request, trace, measure=False, workflow=workflow):
        clock = time.time
        started = clock()
        first = last = 0.0
        n = 0
        async for item in items:
            last = clock()
            if n == 0:
                first = last
            n += 1
            yield item
        if n:
            tpot_ms = (last - first) * 1000.0 / (n - 1) if n > 1 else None
            sample = StreamSample(request.prompt_tokens or 0, n, (first - started) * 1000.0, tpot_ms,
                                  (last - started) * 1000.0)  # fmt: skip
            admission.stream_done(request, sample, (first - request.arrival) * 1000.0)
