"""The one registry of routers by name; the CLI, the simulator and the benchmarks build routers here.

    router = create_router("agentic", random.Random(7), classes=policy.classes)
    router_names()  # ["agentic", "central_edf", "clairvoyant", "least_loaded", "peak_ewma_p2c", "pow2", ...]

``create_router`` passes ``**config`` to the router's constructor as keyword arguments. An unknown name
or a bad config key is a ``ValueError`` naming the registered routers or the accepted keys.

Renamed routers keep their old name as an alias (``ALIASES``: old name -> (new name, why)): building one
by its old name works and warns (``DeprecationWarning``); ``router_names`` lists only current names.
``oracle`` is such an alias of ``central_edf`` (a central EDF queue, not a bound: the bound the
benchmarks use is ``clairvoyant``).
"""

from __future__ import annotations

import inspect
import random
import warnings
from collections.abc import Callable
from typing import Any

from agentic_ray.scheduling.types import Router

__all__ = ["ALIASES", "canonical_name", "create_router", "register_router", "router_names"]

_REGISTRY: dict[str, Callable[..., Router]] = {}
ALIASES: dict[str, tuple[str, str]] = {
    "oracle": (
        "central_edf",
        "router 'oracle' was renamed 'central_edf' (a central EDF queue, not an upper bound); "
        "the bound is 'clairvoyant'",
    ),
}


def canonical_name(name: str) -> str:
    """The registered name of ``name`` (an alias's new name; any other name unchanged)."""
    alias = ALIASES.get(name)
    return alias[0] if alias is not None else name


def register_router(name: str, factory: Callable[..., Router]) -> None:
    """Register ``factory(rng, **config)`` under ``name`` (a ``ValueError`` if the name is taken)."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"router {name!r} is already registered")
    _REGISTRY[name] = factory


def router_names() -> list[str]:
    """The registered router names, sorted."""
    return sorted(_REGISTRY)


def create_router(name: str, rng: random.Random, **config: Any) -> Router:
    """Build the router registered as ``name`` (or an alias of it, with a ``DeprecationWarning``) with a
    seeded ``rng`` and its keyword ``config``."""
    alias = ALIASES.get(name)
    if alias is not None:
        warnings.warn(alias[1], DeprecationWarning, stacklevel=2)
        name = alias[0]
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
    from agentic_ray.scheduling.routers.central_edf import CentralEdfRouter
    from agentic_ray.scheduling.routers.clairvoyant import ClairvoyantRouter

    for cls in (*ROUTERS, CentralEdfRouter, ClairvoyantRouter):
        register_router(cls.name, cls)


_register_builtins()
