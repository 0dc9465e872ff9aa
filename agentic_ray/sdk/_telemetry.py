"""The SDK's telemetry bootstrap: tracing and the decision log, from the environment, once per process.

- Tracing: ``telemetry.tracing.configure_tracing_from_env`` (``AGENTIC_TRACE_EXPORTER`` /
  ``AGENTIC_TRACE_SAMPLING``, unless the process configured tracing itself). ``tracing_on()`` is what
  ``.remote()`` asks per call: one ``sys.modules`` lookup while the tracing module is not even imported.
- Decision log: with ``AGENTIC_DECISION_LOG_DIR`` set, every placement is a ``place`` record under its
  own request id (``next_request_id``: a per-process prefix and a counter) in the hash-chained
  ``<dir>/sdk-decisions-<pid>.jsonl`` (``AGENTIC_DECISION_LOG_CHECKPOINT_EVERY`` records per checkpoint,
  default 1000); each checkpoint head is sent to the GlobalCoordinator (``status()["decision_logs"]``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import uuid
from typing import Any

__all__ = ["DECISION_LOG", "close", "log_placement", "next_request_id", "open_from_env", "tracing_on"]

_TRACING_MODULE = "agentic_ray.telemetry.tracing"

DECISION_LOG: Any = None
"""This process's ``DecisionLog`` while ``AGENTIC_DECISION_LOG_DIR`` is set (``open_from_env``), else ``None``."""

_ID_PREFIX = ""
_IDS = itertools.count(1)


def tracing_on() -> Any:
    """The tracing module when it is imported and configured with an exporter, else ``None``."""
    tr = sys.modules.get(_TRACING_MODULE)
    if tr is None or tr.tracing_config().exporter == "none":
        return None
    return tr


def open_from_env() -> None:
    """Tracing (when not configured yet) and the decision log from the environment; idempotent."""
    global DECISION_LOG, _ID_PREFIX
    from agentic_ray.telemetry.tracing import configure_tracing_from_env

    configure_tracing_from_env()
    log_dir = os.environ.get("AGENTIC_DECISION_LOG_DIR")
    if log_dir and DECISION_LOG is None:
        from agentic_ray.telemetry.audit import open_decision_log, options_from_env

        every = int(os.environ.get("AGENTIC_DECISION_LOG_CHECKPOINT_EVERY", "1000"))
        _ID_PREFIX = f"{os.getpid():x}-{uuid.uuid4().hex[:8]}"
        DECISION_LOG = open_decision_log(
            os.path.join(log_dir, f"sdk-decisions-{os.getpid()}.jsonl"),
            checkpoint_every=every,
            on_checkpoint=_anchor_head,
            **options_from_env(),
        )
        _anchor_head(DECISION_LOG.head)


def close() -> None:
    """Stop logging placements in this process (the log object stays open in ``telemetry.audit``'s
    per-process table, so a later ``open_from_env`` continues its chain)."""
    global DECISION_LOG
    DECISION_LOG = None


def next_request_id() -> str:
    """A new request id, unique per placement: ``<pid hex>-<random>-<n>``."""
    return f"{_ID_PREFIX}-{next(_IDS)}"


def log_placement(task_name: str, request_id: str, classification: Any, placement: Any) -> None:
    """Append one placement to the decision log (never raises into ``.remote()``)."""
    with contextlib.suppress(Exception):
        DECISION_LOG.log_decision(
            request_id=request_id,
            action="place",
            qos=classification.qos.name,
            policy_version=classification.policy_version,
            policy_sha256=classification.policy_sha256,
            rule_ids=tuple(classification.rule_ids) + tuple(placement.rule_ids),
            inputs={"task": task_name, "workflow": classification.workflow, "stage": classification.stage},
            predicted={"node_id": placement.node_id, "reason": placement.reason},
            outcome="submitted",
        )


def log_policy_change(info: Any, action: str) -> None:
    """Append one policy change (``apply``, ``apply_bundle``, ``canary``, ``shadow``, ``promote``,
    ``rollback``) to the decision log: the new version and sha256, and the key ids that signed it (never
    raises)."""
    if DECISION_LOG is None:
        return
    with contextlib.suppress(Exception):
        DECISION_LOG.log_decision(
            request_id=next_request_id(),
            action="policy_change",
            qos="",
            policy_version=str(info.get("version")),
            policy_sha256=str(info.get("sha256")),
            rule_ids=(),
            inputs={"action": action, "source": info.get("source"), "sequence": info.get("sequence")},
            predicted={"signed_by": list(info.get("signed_by") or ())},
            outcome="unchanged" if info.get("unchanged") else "applied",
        )


def log_refusal(task_name: str, error: Any, policy: Any) -> None:
    """Append one refused submission (an ``EntitlementError``) to the decision log, naming the
    entitlement and the rule (never raises)."""
    if DECISION_LOG is None:
        return
    with contextlib.suppress(Exception):
        DECISION_LOG.log_decision(
            request_id=next_request_id(),
            action="refuse",
            qos=str(error.requested) if error.entitlement == "class" else "",
            policy_version=policy.version,
            policy_sha256=policy.sha256,
            rule_ids=(error.rule,),
            inputs={"task": task_name, "holder": error.holder, "requested": repr(error.requested)},
            predicted={},
            outcome=f"refused:entitlement:{error.entitlement}",
        )


def _anchor_head(head: Any) -> None:
    """Send a decision-log checkpoint head to the GlobalCoordinator (fire-and-forget)."""
    from agentic_ray.sdk import _state

    rt = _state.current()
    log_ = DECISION_LOG
    if rt is None or log_ is None:
        return
    with contextlib.suppress(Exception):
        rt.global_handle().report_log_head.remote(f"{os.getpid()}:{log_.path}", head.to_dict())
