"""The proxy door's direct call (``serve._door_call``): which deployments offer it, and reading a body.
Its answers on real Serve and HTTP are in ``test_http_ingress.py``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agentic_ray.scheduling.reports import ReplicaMetadata
from agentic_ray.serve._door_call import JSON_CALL_KEY, _body


def _published(cls: type) -> dict:
    import agentic_ray.serve as ars

    deployment = ars.deployment(slots=1)(cls)
    return deployment.func_or_class.record_replica_metadata(SimpleNamespace(_agentic_metadata=ReplicaMetadata()))


def test_a_gated_call_offers_the_direct_call_a_stream_or_ungated_one_does_not():
    import agentic_ray.serve as ars

    class Async:
        async def __call__(self, payload): ...

    class Sync:
        def __call__(self, payload): ...

    class Stream:
        async def __call__(self, payload):
            yield payload

    class SyncStream:
        def __call__(self, payload):
            yield payload

    class Ungated:
        @ars.ungated
        async def __call__(self, request): ...

    class NoCall:
        async def predict(self, payload): ...

    offered = {
        cls.__name__: _published(cls)[JSON_CALL_KEY] for cls in (Async, Sync, Stream, SyncStream, Ungated, NoCall)
    }
    assert offered == {"Async": True, "Sync": True, "Stream": False, "SyncStream": False, "Ungated": False,
                       "NoCall": False}  # fmt: skip
    assert _published(Async)["slots"] == 1  # the rest of the metadata as before


def test_the_body_is_read_whole_from_its_chunks():
    messages = [{"type": "http.request", "body": b'{"a": ', "more_body": True},
                {"type": "http.request", "body": b"1}", "more_body": False}]  # fmt: skip

    async def receive():
        return messages.pop(0)

    assert asyncio.run(_body(receive)) == b'{"a": 1}'

    async def gone():
        return {"type": "http.disconnect"}

    assert asyncio.run(_body(gone)) == b""
