"""Read Ray's Prometheus endpoints in tests: every sample of every alive node, parsed.

Ray exports metrics per node (``ray.nodes()[i]["MetricsExportPort"]``), so a metric recorded in a replica or
an actor on another node is only visible on that node's endpoint. Needs a connected Ray driver.
"""

from __future__ import annotations

import urllib.request
from typing import Any

__all__ = ["scrape_ray_metrics"]


def scrape_ray_metrics(prefix: str = "", nodes: list[dict] | None = None, timeout_s: float = 5.0) -> list[Any]:
    """All ``prometheus_client`` samples whose name starts with ``prefix`` on the alive nodes' endpoints
    (``ray.nodes()`` unless ``nodes`` is given). Unreachable endpoints are skipped."""
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[Any] = []
    for node in ray.nodes() if nodes is None else nodes:
        if not node.get("Alive", True):
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            samples.extend(s for s in family.samples if s.name.startswith(prefix))
    return samples
