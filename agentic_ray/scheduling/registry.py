"""The one registry of routers by name; the CLI, the simulator and the benchmarks build routers here.

    router = create_router("agentic", random.Random(7), classes=policy.classes)
    router_names()  # ["agentic", "least_loaded", "oracle", "peak_ewma_p2c", "pow2", "random", "round_robin"]

``create_router`` passes ``**config`` to the router's constructor as keyword arguments. An unknown name
or a bad config key is a ``ValueError`` naming the registered routers or the accepted keys.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any

from agentic_ray.scheduling.types import Router

__all__ = ["create_router", "register_router", "router_names"]

_REGISTRY: dict[str, Callable[..., Router]] = {}


def register_router(name: str, factory: Callable[..., Router]) -> None:
    """Register ``factory(rng, **config)`` under ``name`` (a ``ValueError`` if the name is taken)."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"router {name!r} is already registered")
    _REGISTRY[name] = factory


def router_names() -> list[str]:
    """The registered router names, sorted."""
    return sorted(_REGISTRY)


def create_router(name: str, rng: random.Random, **config: Any) -> Router:
    """Build the router registered as ``name`` with a seeded ``rng`` and its keyword ``config``."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown router {name!r}; registered routers: {', '.join(router_names())}")
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p != "rng"]
    unknown = [k for k in config if k not in params or k == "rng"]
    if unknown:
        raise ValueError(
            f"router {name!r}: unknown config key(s) {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    return factory(rng, **config)


def _register_builtins() -> None:
    from agentic_ray.scheduling.routers.agentic import AgenticRouter
    from agentic_ray.scheduling.routers.pow2 import PowerOfTwoRouter

    register_router("agentic", AgenticRouter)
    register_router("pow2", PowerOfTwoRouter)
    from agentic_ray.scheduling.routers.baselines import ROUTERS
    from agentic_ray.scheduling.routers.oracle import OracleRouter

    for cls in (*ROUTERS, OracleRouter):
        register_router(cls.name, cls)


_register_builtins()
