"""TEST HOOK: make one Serve replica slower from outside, to drive the closed-loop experiment.

This is a test hook, not a feature: a replica's code that wants to be slowed multiplies its own work by
``factor()``, and a driver sets the factor of a replica by its id (``set_slowdown``). The factors live
in Ray's internal KV (namespace ``agentic-test-hooks``), so any process of the cluster can set them; a
replica reads them at most every ``REFRESH_S`` (one KV read), so a change reaches it within that.

    from agentic_ray.testing import slowdown

    @agentic_ray.deployment(slots=2, num_replicas=3)
    class Model:
        async def __call__(self, x):
            await asyncio.sleep(0.02 * slowdown.factor())   # 20 ms, times the test hook's factor

    slowdown.set_slowdown(replica_id, 5.0)   # from the driver: that replica is now 5x slower
    slowdown.clear()
"""

from __future__ import annotations

import json
import time

__all__ = ["REFRESH_S", "clear", "factor", "set_slowdown"]

REFRESH_S = 0.2
_NS = "agentic-test-hooks"
_KEY = "slowdown"
_cache: dict[str, float] = {}
_read_at = 0.0
_me: str | None = None


def _kv() -> object:
    from ray.experimental import internal_kv

    return internal_kv


def set_slowdown(replica_id: str, factor: float) -> None:
    """TEST HOOK: from now on (within ``REFRESH_S``), the replica ``replica_id`` runs ``factor`` x slower."""
    if not factor > 0:
        raise ValueError(f"factor: must be > 0, got {factor!r}")
    kv = _kv()
    raw = kv._internal_kv_get(_KEY, namespace=_NS)  # type: ignore[attr-defined]
    factors = json.loads(raw) if raw else {}
    factors[str(replica_id)] = float(factor)
    kv._internal_kv_put(_KEY, json.dumps(factors), overwrite=True, namespace=_NS)  # type: ignore[attr-defined]


def clear() -> None:
    """TEST HOOK: every replica back to its normal speed."""
    _kv()._internal_kv_put(_KEY, "{}", overwrite=True, namespace=_NS)  # type: ignore[attr-defined]


def factor() -> float:
    """TEST HOOK: this replica's slowdown factor (1.0 outside a Serve replica or when none is set)."""
    global _read_at, _cache, _me
    now = time.monotonic()
    if now - _read_at >= REFRESH_S:
        _read_at = now
        try:
            if _me is None:
                from ray import serve

                _me = serve.get_replica_context().replica_id.unique_id
            raw = _kv()._internal_kv_get(_KEY, namespace=_NS)  # type: ignore[attr-defined]
            _cache = {str(k): float(v) for k, v in json.loads(raw).items()} if raw else {}
        except Exception:
            _cache = {}
    return _cache.get(_me or "", 1.0)
