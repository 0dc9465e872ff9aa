"""The decision hook: the one seam through which the Serve router and the replica gate report decisions.

Telemetry (metrics, OpenTelemetry spans, the decision log) plugs in here. The router and the replica
admission wrapper call ``hook.record(event)`` once per decision with a ``DecisionEvent`` (a NamedTuple,
defined once in ``agentic_ray.scheduling.events`` and re-exported here); the default hook (``NoopHook``)
does nothing. A hook must be cheap and must not raise (errors are swallowed and counted, so telemetry
can never break serving).

The router is built by Serve from JSON-serialisable kwargs, so hooks are named by import path
(``"package.module:attribute"``); the attribute is a hook object or a zero-argument factory.
``load_hook(None)`` and ``load_hook("none")`` are the no-op hook. ``DEFAULT_HOOK`` names the hook
``@agentic_ray.deployment`` installs when the caller names none: the process's
``agentic_ray.telemetry.hotpath.TelemetryHook`` (metrics through ``ray.util.metrics``; spans only when
tracing is configured; the decision log only when ``AGENTIC_DECISION_LOG_DIR`` is set).

Hot path: a hook may also expose ``push(fields)``, a cheap append of one plain tuple of a
``DecisionEvent``'s 13 values in its field order (``None`` last: cheaper to build and to keep in a
buffer than the NamedTuple, see ``scheduling.events``); adapters call it per decision, and keep
``safe_record(DecisionEvent(...))`` for hooks without ``push`` and for decisions that carry a sampled
trace (``extra={"trace": carrier}``), which ``record`` traces at once.
A hook may also expose ``register_policy(version, sha256)``; adapters call it when they load a policy.

``DecisionStats`` is a small in-process hook that keeps decision latencies and outcome counts; the
demo uses it (the router of handle calls runs in the caller's process).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections import Counter
from typing import Any, Protocol, runtime_checkable

from agentic_ray.scheduling.events import DecisionEvent

__all__ = [
    "DEFAULT_HOOK",
    "DecisionEvent",
    "DecisionHook",
    "DecisionStats",
    "NoopHook",
    "hook_push",
    "load_hook",
    "register_policy",
    "safe_record",
]


DEFAULT_HOOK = "agentic_ray.telemetry.hotpath:process_hook"


@runtime_checkable
class DecisionHook(Protocol):
    """Receives every decision; must be cheap and must not block."""

    def record(self, event: DecisionEvent) -> None: ...


class NoopHook:
    """The default hook: does nothing."""

    def record(self, event: DecisionEvent) -> None:
        return None


class DecisionStats:
    """Keeps router decision latencies (µs) and outcome counts in memory; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decision_us: list[float] = []
        self.outcomes: Counter[tuple[str, str, str]] = Counter()

    def record(self, event: DecisionEvent) -> None:
        with self._lock:
            if event.decision_us is not None:
                self.decision_us.append(event.decision_us)
            self.outcomes[(event.where, event.outcome, event.reason)] += 1

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self.decision_us.clear()
            self.outcomes.clear()


# The process-wide instance the demo names as "agentic_ray.serve._hooks:PROCESS_STATS".
PROCESS_STATS = DecisionStats()


def load_hook(spec: str | DecisionHook | None) -> DecisionHook:
    """A hook from an object, an import path ``"pkg.mod:attr"`` (object or zero-arg factory), or
    None / ``"none"`` (the no-op hook). A bad path raises ``ValueError`` naming it.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "none"):
        return NoopHook()
    if not isinstance(spec, str):
        if not callable(getattr(spec, "record", None)):
            raise ValueError(f"decision_hook: {spec!r} has no record(event) method")
        return spec
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"decision_hook: expected 'package.module:attribute', got {spec!r}")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"decision_hook: cannot load {spec!r}: {exc}") from None
    if not callable(getattr(obj, "record", None)) and callable(obj):
        obj = obj()
    return load_hook(obj)


def hook_push(hook: DecisionHook) -> Any:
    """The hook's hot-path ``push`` (see the module docstring), or None when it has none."""
    push = getattr(hook, "push", None)
    return push if callable(push) else None


def register_policy(hook: DecisionHook, version: str, sha256: str) -> None:
    """Tell the hook the full sha256 of policy ``version`` when it wants to know; never raises."""
    register = getattr(hook, "register_policy", None)
    if callable(register):
        with contextlib.suppress(Exception):  # telemetry must not break serving
            register(version, sha256)


def safe_record(hook: DecisionHook, event: DecisionEvent) -> None:
    """Call ``hook.record(event)``; a failing hook never breaks a decision."""
    with contextlib.suppress(Exception):  # telemetry must not break serving
        hook.record(event)
