"""This process's SDK state: its one ``ClusterViewCache`` (policy and cluster view placement reads).

``init`` creates it (``install``); a process that submits without calling ``init`` (a Ray worker
submitting child tasks, or a driver connected with plain ``ray.init``) gets it on first use
(``runtime``), which also opens the telemetry the environment asks for (``_telemetry.open_from_env``);
``shutdown`` drops it (``take``).
"""

from __future__ import annotations

import threading

from agentic_ray.actors._view_cache import ClusterViewCache
from agentic_ray.sdk import _telemetry

__all__ = ["current", "install", "runtime", "take"]

_RUNTIME: ClusterViewCache | None = None
_LOCK = threading.Lock()


def current() -> ClusterViewCache | None:
    """The cache, or ``None`` before first use and after ``shutdown``."""
    return _RUNTIME


def runtime() -> ClusterViewCache:
    """The cache, created on first use: by ``init()`` when Ray is not initialised in this process, else
    here (opening the telemetry of the environment once)."""
    global _RUNTIME
    rt = _RUNTIME
    if rt is not None:
        return rt
    import ray

    if not ray.is_initialized():
        from agentic_ray.sdk._admin import init

        init()
        return _RUNTIME  # type: ignore[return-value]
    with _LOCK:
        created = _RUNTIME is None
        if created:
            _RUNTIME = ClusterViewCache()
    if created:
        _telemetry.open_from_env()
    return _RUNTIME  # type: ignore[return-value]


def install(started_ray: bool) -> ClusterViewCache:
    """The cache for ``init`` (created when missing); ``started_ray`` marks that ``init`` started Ray,
    so ``shutdown`` stops it again."""
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None:
            _RUNTIME = ClusterViewCache()
        _RUNTIME.started_ray = _RUNTIME.started_ray or started_ray
        return _RUNTIME


def take() -> ClusterViewCache | None:
    """Forget the cache and return it (``shutdown`` stops it); the next use creates a new one."""
    global _RUNTIME
    with _LOCK:
        rt, _RUNTIME = _RUNTIME, None
    return rt
