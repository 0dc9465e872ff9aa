"""The per-process cache of the active policy and the cluster view that ``@agentic_ray.task`` places from.

One ``ClusterViewCache`` per process (driver or Ray worker). A daemon thread fetches the
GlobalCoordinator's ``cluster_view()`` (a ``control.ClusterView``; from a coordinator of wire version 1,
which has none, the JSON of ``view()``) every ``VIEW_REFRESH_S`` while the process places work; after
``VIEW_IDLE_S`` without placements it stops polling, and the next placement fetches once, synchronously,
if the view went stale (older than ``VIEW_STALE_S``). The policy is taken from the control plane's KV by
sha256 (``policy/<sha>``) whenever the view announces a new one, so a rollout reaches every process
within one refresh. ``place`` runs ``placement.choose_node`` on the cached view (no actor call), or
``placement.fallback_placement`` when the view is stale or missing (agents unreachable).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agentic_ray.actors._common import GLOBAL_NAME, NAMESPACE, kv_get, read_active_policy
from agentic_ray.control._outstanding import OutstandingEstimate
from agentic_ray.control._placement import (
    NodeView,
    Placement,
    choose_node,
    fallback_placement,
    label_selector_for,
    node_attrs_from_ray,
)
from agentic_ray.control._view import ClusterView
from agentic_ray.policies import Policy, default_policy
from agentic_ray.policies.types import Shedding

__all__ = ["ClusterViewCache"]

VIEW_REFRESH_S = 0.2
VIEW_STALE_S = 3.0
VIEW_IDLE_S = 10.0
PLACEMENT_BATCH_PER_CPU = 4  # outstanding tasks per CPU of a node before the next node gets work
# Count this process's outstanding tasks per node with a completion callback on every ObjectRef. More
# exact load, but each callback takes the GIL from a Ray thread, which slowed pipelined submission by
# ~15-20 % in benchmarks/task_overhead.py; off by default (``OutstandingEstimate`` predicts completions).
TRACK_COMPLETIONS = False
ACCOUNTING_LAG_S = 0.15  # a placement reaches its node's agent within this (worker._Accountant, 0.1 s + send)


class ClusterViewCache:
    """Policy and cluster-view cache of one process (driver or worker); a daemon thread refreshes it."""

    def __init__(self) -> None:
        self.policy: Policy = default_policy()
        self.policy_sha: str | None = None
        self._policies: dict[str, Policy] = {}
        self.nodes: list[NodeView] = []
        self.view_at = 0.0  # monotonic time of the last good view
        self.view_ages: dict[str, float | None] = {}  # per node: its snapshot's age when the view was read
        self.view_error: str | None = None
        self.last_used = time.monotonic()
        self.outstanding: dict[str, int] = {}  # tasks placed by this process and not finished, per node
        self.estimate = OutstandingEstimate()  # this process's tasks the view does not count yet
        self._by_id: dict[str, NodeView] = {}
        self.track_completions = TRACK_COMPLETIONS
        self._selectors: dict[Any, Any] = {}
        self.rotation = 0
        self.started_ray = False
        self.local_node_id: str | None = None
        try:
            import ray

            self.local_node_id = ray.get_runtime_context().get_node_id()
        except Exception:
            pass
        self._stop = threading.Event()
        self._global = None
        self._typed_view = True  # False after meeting a coordinator of wire version 1 (no cluster_view())
        self.reload_policy()
        self._thread = threading.Thread(target=self._refresh_loop, name="agentic-view", daemon=True)
        self._thread.start()

    # -- policy --------------------------------------------------------------------------------------
    def adopt_policy_sha(self, sha: str) -> None:
        if sha == self.policy_sha:
            return
        policy = self._policies.get(sha)
        if policy is None:
            text = kv_get("policy/" + sha)
            if text is None:
                return
            from agentic_ray.policies import parse_policy

            policy = self._policies[sha] = parse_policy(text.decode(), "<control plane>")
        self.policy, self.policy_sha = policy, sha

    def remember_policy(self, policy: Policy) -> None:
        """Cache a compiled policy by sha256 (saves re-parsing it when the view announces it)."""
        self._policies[policy.sha256] = policy

    def reload_policy(self) -> None:
        try:
            active = read_active_policy()
        except Exception:
            active = None
        if active is not None:
            self.adopt_policy_sha(active[0])

    # -- view ----------------------------------------------------------------------------------------
    def global_handle(self):
        import ray

        if self._global is None:
            self._global = ray.get_actor(GLOBAL_NAME, namespace=NAMESPACE)
        return self._global

    def fetch_view(self, timeout: float = 2.0) -> ClusterView:
        """Fetch the view now and place from it (also called by the thread)."""
        import ray

        handle = self.global_handle()
        ref = None
        if self._typed_view:
            try:
                ref = handle.cluster_view.remote()
            except AttributeError:  # a coordinator of wire version 1: only the JSON view()
                self._typed_view = False
        if ref is None:
            ref = handle.view.remote()
        view = ClusterView.from_wire(ray.get(ref, timeout=timeout))
        self._adopt(view)
        return view

    def refresh(self, timeout: float = 2.0) -> dict[str, Any]:
        """Fetch the view now and place from it; returns its JSON form (``ClusterView.to_dict``)."""
        return self.fetch_view(timeout).to_dict()

    def _adopt(self, view: ClusterView) -> None:
        nodes = [n.node_view() for n in view.nodes]
        self.adopt_policy_sha(view.policy_sha)
        now = time.monotonic()
        for n in view.nodes:
            if n.age_s is not None:  # tasks placed well before that snapshot are in its count
                self.estimate.forget_before(n.node_id, now - n.age_s - ACCOUNTING_LAG_S)
        self.nodes = nodes
        self._by_id = {node.node_id: node for node in nodes}
        self._selectors = {}
        self.rotation += 1
        self.view_at = now
        self.view_ages = {n.node_id: n.age_s for n in view.nodes}
        self.view_error = None

    def _refresh_loop(self) -> None:
        import ray

        while not self._stop.wait(VIEW_REFRESH_S):
            if time.monotonic() - self.last_used > VIEW_IDLE_S:
                continue  # nobody placed work lately (an idle worker): do not poll the coordinator
            if not ray.is_initialized():
                # After a plain ray.shutdown(): a Ray call here would auto-init (start or join a
                # cluster behind the caller's back) and the caller's next init would fail.
                self._global = None
                continue
            self.try_refresh()

    def try_refresh(self, timeout: float = 2.0) -> bool:
        try:
            self.fetch_view(timeout=timeout)
            return True
        except Exception as exc:
            self._global = None
            self._typed_view = True  # the next coordinator may be a newer one
            self.view_error = repr(exc)
            return False

    def view_age_s(self, node_id: str | None = None) -> float | None:
        """Age now (seconds) of ``node_id``'s snapshot in the cached view, or of the oldest node snapshot
        when ``node_id`` is ``None``; ``None`` without a view (or when that node never reported)."""
        if not self.nodes:
            return None
        if node_id is not None:
            age = self.view_ages.get(node_id)
        else:
            age = max((a for a in self.view_ages.values() if a is not None), default=None)
        return None if age is None else age + (time.monotonic() - self.view_at)

    def view_fresh(self) -> bool:
        return bool(self.nodes) and time.monotonic() - self.view_at <= VIEW_STALE_S

    def known_nodes(self) -> list[NodeView]:
        """Nodes of the last view, or of ``ray.nodes()`` when there never was one."""
        if self.nodes:
            return self.nodes
        import ray

        return [
            NodeView(
                node_attrs_from_ray(n["NodeID"], n.get("Labels") or {}, n.get("Resources") or {}),
                resources=n.get("Resources") or {},
            )
            for n in ray.nodes()
            if n.get("Alive")
        ]

    def place(
        self, classification: Any, accelerator: str | None, resources: dict[str, float], *, task: bool = True
    ) -> Placement:
        """A node for one task (``task=False``: for a governed actor, which is neither refused because
        the nodes' agents closed its class to tasks nor counted as an outstanding task)."""
        qos = classification.qos.name
        now = time.monotonic()
        if now - self.last_used > VIEW_IDLE_S and not self.view_fresh():
            self.try_refresh(timeout=1.0)  # first placement after an idle spell: one synchronous fetch
        self.last_used = now
        if self.view_fresh():
            nodes = self.nodes
            key = (id(nodes), getattr(classification, "requirement", None), accelerator)
            selector = self._selectors.get(key)
            if selector is None:
                if len(self._selectors) > 1024:
                    self._selectors.clear()
                selector = self._selectors[key] = label_selector_for(classification, nodes, accelerator)
            placement = choose_node(
                classification,
                nodes,
                qos=qos,
                accelerator=accelerator,
                resources=resources,
                local_load=self.outstanding if self.track_completions else self.estimate.at(now),
                rotation=self.rotation,
                selector=selector,
                local_node_id=self.local_node_id,
                batch_per_cpu=PLACEMENT_BATCH_PER_CPU,
                shed_when_closed=task and classification.qos.shedding is not Shedding.NEVER,
            )
            node = self._by_id.get(placement.node_id)
            if node is not None and task:
                service_ms = node.service_ms.get(qos)
                self.estimate.add(node.node_id, now, None if service_ms is None else service_ms / 1000.0, node.cpus)
            return placement
        self.rotation += 1
        return fallback_placement(
            classification, self.known_nodes(), qos=qos, accelerator=accelerator, rotation=self.rotation
        )

    def track(self, node_id: str | None, ref: Any) -> None:
        """Count ``ref`` as outstanding on ``node_id`` until it completes (success or error)."""
        if node_id is None or not self.track_completions:
            return
        on_completed = getattr(ref, "_on_completed", None)
        if on_completed is None:  # not a single ObjectRef (num_returns > 1, generators)
            return
        counts = self.outstanding
        counts[node_id] = counts.get(node_id, 0) + 1

        def done(_result: Any) -> None:
            counts[node_id] = max(0, counts.get(node_id, 0) - 1)

        try:
            on_completed(done)
        except Exception:  # a Ray without this private hook: fall back to counting since the view
            self.track_completions = False

    def stop(self) -> None:
        self._stop.set()
