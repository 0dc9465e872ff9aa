"""The shipped Prometheus rules: valid YAML, every expression on exported metrics or our own recording
rules, every alert per class, and ``promtool check rules`` where promtool is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from agentic_ray.telemetry.catalog import prometheus_names

RULES = Path(str(resources.files("agentic_ray.telemetry").joinpath("prometheus/agentic_ray_rules.yaml")))
_METRIC = re.compile(r"\b(ray_agentic_[a-z0-9_]+)")
_RECORDED = re.compile(r"\b(agentic:[a-z0-9_:]+)")


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_expressions_use_only_exported_metrics_and_recorded_series():
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    used_metrics = {m for r in rules for m in _METRIC.findall(r["expr"])}
    assert used_metrics and not used_metrics - prometheus_names(), sorted(used_metrics - prometheus_names())
    used_recorded = {m for r in rules for m in _RECORDED.findall(r["expr"]) if "record" not in r or m != r["record"]}
    assert used_recorded <= recorded, sorted(used_recorded - recorded)


def test_burn_rate_and_p99_alerts_are_per_class():
    alerts = {r["alert"]: r for r in _rules() if "alert" in r}
    assert {"AgenticBudgetBurnFast", "AgenticBudgetBurnSlow", "AgenticP99OverBudget"} <= set(alerts)
    recorded = {r["record"]: r["expr"] for r in _rules() if "record" in r}
    for name in ("agentic:bad_ratio:rate5m", "agentic:bad_ratio:rate1h", "agentic:late_ratio:rate5m"):
        assert "by (qos)" in recorded[name]
    # multiwindow: each burn alert needs a long and a short window above the same threshold
    fast = alerts["AgenticBudgetBurnFast"]["expr"]
    assert "rate1h > (14.4" in fast and "rate5m > (14.4" in fast


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_accepts_the_rules(tmp_path):
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
