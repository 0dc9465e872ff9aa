"""Names, settings and the checkpoint of the control plane (shared by the actors and the SDK).

Actor names (namespace ``agentic``), all detached and restartable:

- ``agentic-global``                     the GlobalCoordinator
- ``agentic-zone-<zone>``                one ZoneCoordinator per zone
- ``agentic-agent-<first 12 hex of node id>``  one NodeAgent per alive node

The checkpoint lives in Ray's internal KV (GCS; it survives actor restarts and is readable from any
worker without an actor call), namespace ``agentic``:

- ``checkpoint``       JSON: policy history (YAML text, source, sha256, revision) and the last allocation
- ``policy/active``    the sha256 of the active policy
- ``policy/<sha256>``  the canonical YAML of that policy (workers read it to classify child tasks)
- ``serve/targets``    JSON ``{"APP/DEPLOYMENT": sha256}``: the policy each Serve deployment that a rollout
                       reached should run (its routers and replicas poll it; ``control._serve_state``)
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "AGENT_PREFIX",
    "GLOBAL_NAME",
    "NAMESPACE",
    "ControlPlaneConfig",
    "agent_name",
    "kv_get",
    "kv_put",
    "read_active_policy",
    "read_serve_targets",
    "write_serve_targets",
    "zone_name",
]

NAMESPACE = "agentic"
GLOBAL_NAME = "agentic-global"
AGENT_PREFIX = "agentic-agent-"
_KV_NS = "agentic"
SERVE_TARGETS_KEY = "serve/targets"
SERVE_OVERLAY_KEY = "serve/overlay"


def agent_name(node_id: str) -> str:
    """``agentic-agent-<first 12 hex digits of the node id>``."""
    return AGENT_PREFIX + node_id[:12]


def zone_name(zone: str) -> str:
    """``agentic-zone-<zone>`` with characters outside ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return "agentic-zone-" + re.sub(r"[^A-Za-z0-9_.-]", "_", zone)


@dataclass(frozen=True, slots=True)
class ControlPlaneConfig:
    """Timing and drift settings of the control plane (seconds). JSON-able via ``to_dict``.

    ``report_interval_s``: agents -> zone and zone -> global report period (snapshot and summary
    delta). ``snapshot_interval_s``: between full reports an agent sends its snapshot alone this often
    when its placement facts (in-flight counts, closed classes, caps, policy) changed, and a zone
    forwards what it receives at once, so the cluster view the SDK places from is at most about
    ``snapshot_interval_s`` + the SDK's 0.2 s refresh old. ``reconcile_interval_s``:
    how often the global coordinator compares agents with ``ray.nodes()`` (a joining node gets its
    agent within about this plus actor start-up). ``stale_after_s``: a node whose agent has not
    reported for this long is left out of the cluster view. ``burn_windows``: ``(long_s, short_s,
    threshold)`` triples (SRE workbook defaults 1 h/5 min at 14.4 and 6 h/30 min at 6).
    ``trusted_keys``: PEM texts of the Ed25519 public keys whose signed bundles may change the policy
    (``policies.signing``); when any is set, unsigned changes and unsigned rollbacks are refused.
    ``budget_raise_fraction``: a class budget raised by more than this is a risky change (two signatures).
    ``decision_log_dir``: where the GlobalCoordinator writes its decision log (actions, reverts, canary
    verdicts; ``coordinator-<pid>.jsonl``); default ``AGENTIC_DECISION_LOG_DIR`` of its process, else none.
    """

    report_interval_s: float = 0.5
    snapshot_interval_s: float = 0.1
    reconcile_interval_s: float = 0.25
    allocate_interval_s: float = 1.0
    stale_after_s: float = 5.0
    ack_timeout_s: float = 10.0
    slo_target: float = 0.99
    p99_window_s: float = 60.0
    min_samples: int = 20
    burn_windows: tuple[tuple[float, float, float], ...] = ((3600.0, 300.0, 14.4), (21600.0, 1800.0, 6.0))
    trusted_keys: tuple[str, ...] = ()
    budget_raise_fraction: float = 0.5
    decision_log_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "report_interval_s",
            "snapshot_interval_s",
            "reconcile_interval_s",
            "allocate_interval_s",
            "stale_after_s",
            "ack_timeout_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: must be a number > 0, got {value!r}")
        object.__setattr__(self, "burn_windows", tuple(tuple(w) for w in self.burn_windows))
        object.__setattr__(self, "trusted_keys", tuple(str(k) for k in self.trusted_keys))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ControlPlaneConfig:
        return cls(**(data or {}))

    def drift_config(self):
        """The ``DriftConfig`` these settings describe."""
        from agentic_ray.control._drift import BurnWindow, DriftConfig

        return DriftConfig(
            slo_target=self.slo_target,
            windows=tuple(BurnWindow(*w) for w in self.burn_windows),
            p99_window_s=self.p99_window_s,
            min_samples=self.min_samples,
        )


def kv_put(key: str, value: bytes | str) -> None:
    """Write ``key`` in the control plane's internal-KV namespace (overwrites)."""
    from ray.experimental import internal_kv

    data = value.encode() if isinstance(value, str) else value
    internal_kv._internal_kv_put(key, data, overwrite=True, namespace=_KV_NS)


def kv_get(key: str) -> bytes | None:
    """Read ``key`` from the control plane's internal-KV namespace (``None`` when absent)."""
    from ray.experimental import internal_kv

    return internal_kv._internal_kv_get(key, namespace=_KV_NS)


def read_active_policy() -> tuple[str, str] | None:
    """``(sha256, canonical YAML)`` of the active policy from the KV, or ``None`` before any rollout."""
    sha = kv_get("policy/active")
    if not sha:
        return None
    text = kv_get("policy/" + sha.decode())
    return None if text is None else (sha.decode(), text.decode())


def write_serve_targets(targets: dict[str, str]) -> None:
    """Publish ``{deployment: policy sha256}`` for Serve's routers and replicas (``SERVE_TARGETS_KEY``)."""
    kv_put(SERVE_TARGETS_KEY, json.dumps(targets, sort_keys=True))


def read_serve_targets() -> dict[str, str]:
    """The published ``{deployment: policy sha256}`` (empty when none was published)."""
    raw = kv_get(SERVE_TARGETS_KEY)
    return {} if not raw else {str(k): str(v) for k, v in json.loads(raw).items()}


def write_serve_overlay(overlay: dict[str, Any]) -> None:
    """Publish what Serve's routers and replicas should apply on top of their policy (``SERVE_OVERLAY_KEY``):
    the actions in force (``ActionOverlay.serve_part``), a canary's replicas and a shadow policy."""
    kv_put(SERVE_OVERLAY_KEY, json.dumps(overlay, sort_keys=True))


def read_serve_overlay() -> dict[str, Any]:
    """The published overlay (empty when none was published)."""
    raw = kv_get(SERVE_OVERLAY_KEY)
    return {} if not raw else dict(json.loads(raw))


def load_checkpoint() -> dict[str, Any] | None:
    """The coordinator's checkpoint dict, or ``None``."""
    raw = kv_get("checkpoint")
    return None if raw is None else json.loads(raw)


def save_checkpoint(state: dict[str, Any]) -> None:
    """Write the coordinator's checkpoint and the active-policy keys."""
    history = state.get("history") or []
    for entry in history:
        kv_put("policy/" + entry["sha256"], entry["text"])
    if history:
        kv_put("policy/active", history[-1]["sha256"])
    kv_put("checkpoint", json.dumps(state, sort_keys=True))
