"""How many HTTP proxies Serve runs: the proxy door's adaptive limit takes its proxy's share of the slots.

Serve's controller names its proxies (``get_proxy_names``: one per node that runs the head or a replica,
under the default ``ProxyLocation``); a door asks it every ``refresh_s`` from a worker thread, never on
the proxy's event loop. Requests spread over the proxies (a load balancer in front of them, or the
kernel's share of one port among proxies on one host), so each door's floor is ``slots / proxies``.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["ProxyCount"]


class ProxyCount:
    """How many HTTP proxies Serve runs (its controller's ``get_proxy_names``), read every ``refresh_s`` on a
    worker thread of the loop that called ``ensure``; 1 until the first answer, and the last answer kept
    when a read fails (no Serve controller, Ray going away)."""

    def __init__(self, refresh_s: float = 10.0) -> None:
        self.refresh_s = refresh_s
        self.count = 1
        self._task: asyncio.Task | None = None

    def ensure(self) -> None:
        """Start the reader, on the running loop, unless it runs."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # no controller (yet), Ray shutting down: keep the last count
                self.count = max(1, await asyncio.to_thread(_proxy_count))
            await asyncio.sleep(self.refresh_s)


def _proxy_count() -> int:
    """Serve's proxies now, from its controller (blocking: call off the event loop)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
    from ray.serve.generated.serve_pb2 import ActorNameList

    if not ray.is_initialized():  # a door outside a Ray worker (tests): never start a Ray from here
        raise RuntimeError("Ray is not initialized")
    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    names = ray.get(controller.get_proxy_names.remote(), timeout=5.0)
    return len(ActorNameList.FromString(names).names) if names else 1
