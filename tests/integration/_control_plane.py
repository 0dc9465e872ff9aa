"""Shared helpers of the control-plane integration tests (module-scoped ``agentic_ray.init``)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRAUD_EXAMPLE = REPO / "examples" / "policies" / "fraud.yaml"


def _with_test_grants(text: str) -> str:
    """The example's fraud policy plus test-only entitlements: tests submit without a tenant, in every
    class, with budgets of up to 10 minutes (so a slow CI machine cannot fail them on deadlines)."""
    for budget in ("150", "800", "5000"):
        old = f"    budget_ms: {budget}\n"
        assert old in text, old
        text = text.replace(old, f"{old}    max_budget_ms: 600000\n", 1)
    grant = "entitlements: {anonymous: {allowed_classes: [critical, standard, sheddable]}}\n"
    return text + "\n# test-only grants (tests/integration/_control_plane.py)\n" + grant


FRAUD_POLICY = Path(tempfile.gettempdir()) / f"agentic-fraud-test-policy-{os.getpid()}.yaml"
FRAUD_POLICY.write_text(_with_test_grants(FRAUD_EXAMPLE.read_text()))


def short_config():
    """Short windows so drift alerts rise and clear within seconds."""
    from agentic_ray.actors._common import ControlPlaneConfig

    return ControlPlaneConfig(
        report_interval_s=0.25,
        reconcile_interval_s=0.2,
        allocate_interval_s=0.5,
        p99_window_s=2.0,
        min_samples=5,
        burn_windows=((3.0, 1.0, 2.0),),
    )


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the actor may be restarting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
