"""agentic-ray on Ray Serve: the agentic request router, the replica admission gate, the HTTP ingress.

    import agentic_ray.serve as ars

    @ars.deployment(slots=2, policy="policy.yaml")
    class Model: ...

    result = await ars.call(handle, x, qos="critical", hedge_after_ms=40)  # budget scope + hedging

Telemetry is on by default (metrics through ``ray.util.metrics``; spans when tracing is configured; the
decision log when ``AGENTIC_DECISION_LOG_DIR`` is set); ``@ars.deployment(telemetry=False)`` turns it
off, ``decision_hook="none"`` / ``router_hook="none"`` only the decision hooks (see ``deployment``).

With a control plane on the cluster (``agentic_ray.init()``), routers and replicas register with it,
report per class to their node's agent, follow live policy and enforce the caps of their node's lease
(``_plane``); without one they run on their deploy-time policy.

The Ray-importing pieces load lazily, so importing this package does not import Ray.
"""

from __future__ import annotations

from typing import Any

from agentic_ray.serve._call import call
from agentic_ray.serve._deployment import deployment, ungated
from agentic_ray.serve._hooks import DecisionEvent, DecisionHook, DecisionStats, NoopHook
from agentic_ray.serve._meta import HEADERS, META_KWARG, HeaderError

__all__ = [
    "HEADERS",
    "META_KWARG",
    "AgenticIngress",
    "AgenticRequestRouter",
    "DecisionEvent",
    "DecisionHook",
    "DecisionStats",
    "HeaderError",
    "NoopHook",
    "call",
    "deployment",
    "ingress_app",
    "proxy_middlewares",
    "ungated",
]


def proxy_middlewares() -> list[Any]:
    """Serve's HTTP proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=agentic_ray.serve:proxy_middlewares``):
    the front door that refuses at once, in the proxy, the share of requests to agentic routes that
    their routers would refuse (``_door``)."""
    from agentic_ray.serve._door import middlewares

    return middlewares()


def __getattr__(name: str) -> Any:
    if name == "AgenticRequestRouter":
        from agentic_ray.serve._router import AgenticRequestRouter

        return AgenticRequestRouter
    if name in ("AgenticIngress", "ingress_app"):
        from agentic_ray.serve import _ingress as ingress

        return getattr(ingress, name)
    raise AttributeError(name)
