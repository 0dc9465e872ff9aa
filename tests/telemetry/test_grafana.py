"""The shipped Grafana dashboard queries only metrics the code exports, and shows all of them."""

from __future__ import annotations

import json
import re
from importlib import resources

from agentic_ray.telemetry.catalog import METRICS, prometheus_names

_NAME = re.compile(r"\b(ray_agentic_[a-z0-9_]+)")


def _dashboard() -> dict:
    text = resources.files("agentic_ray.telemetry").joinpath("grafana/agentic_ray.json").read_text()
    return json.loads(text)


def _expressions(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_every_queried_metric_is_exported():
    exprs = _expressions(_dashboard())
    assert exprs
    used = {name for e in exprs for name in _NAME.findall(e)}
    assert used, "the dashboard queries no agentic metric"
    unknown = used - prometheus_names()
    assert not unknown, f"dashboard queries metrics the code does not export: {sorted(unknown)}"


def test_every_exported_metric_has_a_panel():
    used = {name for e in _expressions(_dashboard()) for name in _NAME.findall(e)}
    for m in METRICS:
        forms = {n for n in prometheus_names() if n == "ray_" + m.name or n.startswith("ray_" + m.name + "_")}
        assert used & forms, f"no panel shows {m.name}"


def test_panels_use_the_datasource_variable_and_unique_ids():
    dash = _dashboard()
    assert any(v["name"] == "datasource" for v in dash["templating"]["list"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])
