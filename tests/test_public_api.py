"""The public API of ``agentic_ray`` is pinned: a change to it is a deliberate change to this test."""

from __future__ import annotations

import subprocess
import sys

import agentic_ray

PUBLIC = [
    "Budget",
    "Deadline",
    "StagePlan",
    "StageSpec",
    "current_deadline",
    "deadline_scope",
    "cluster_view",
    "AdmissionError",
    "AgenticRayError",
    "BudgetExhausted",
    "CircuitOpen",
    "Classification",
    "ConfigValidationError",
    "NoEligibleNode",
    "NoEligibleReplica",
    "NodeAttrs",
    "Overloaded",
    "Policy",
    "PolicyError",
    "PolicyValidationError",
    "ReplicaFailed",
    "RequestMeta",
    "ScenarioValidationError",
    "__version__",
    "actor",
    "apply_policy",
    "budget",
    "default_policy",
    "deployment",
    "get",
    "get_async",
    "freeze_gc",
    "init",
    "load_policy",
    "method",
    "parse_policy",
    "policy_history",
    "promote_policy",
    "rollback_policy",
    "shutdown",
    "status",
    "task",
    "workflow",
]


def test_all_is_pinned():
    assert sorted(agentic_ray.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves():
    for name in agentic_ray.__all__:
        assert getattr(agentic_ray, name) is not None, name
    assert callable(agentic_ray.task) and callable(agentic_ray.deployment) and callable(agentic_ray.budget)
    assert agentic_ray.load_policy is agentic_ray.policies.load_policy
    # No module shadows a public function: these names are the functions, not modules.
    import types

    from agentic_ray import serve

    for obj in (agentic_ray.budget, agentic_ray.deployment, serve.deployment, serve.call):
        assert not isinstance(obj, types.ModuleType), obj
    assert type(agentic_ray) is types.ModuleType  # no module swaps its own class


def test_importing_the_package_and_the_pure_core_does_not_import_ray():
    """At run time, transitively: ruff's TID251 bans direct imports in the pure core; this catches an
    import that arrives through another module. Every module of the pure packages, the pure pieces
    outside them, and the package's lazy names are imported in one fresh interpreter."""
    code = (
        "import sys, pkgutil, importlib, agentic_ray\n"
        "for pkg in ('policies', 'scheduling', 'sim', 'control'):\n"
        "    mod = importlib.import_module('agentic_ray.' + pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, mod.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "import agentic_ray._budget, agentic_ray.errors, agentic_ray.actors._probe, agentic_ray.testing.nvml\n"
        "import agentic_ray.testing.clock\n"
        "agentic_ray.RequestMeta; agentic_ray.load_policy; agentic_ray.task; agentic_ray.policies.default_policy()\n"
        "bad = sorted({'ray', 'asyncio'} & set(sys.modules)); print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_version_matches_the_distribution():
    from importlib.metadata import version

    assert agentic_ray.__version__ == version("agentic-ray")


def test_freeze_gc_moves_live_objects_out_of_collections_and_still_collects_new_garbage():
    """``agentic_ray.freeze_gc()`` (the chaos ladder's driver: full collections of 100-250 ms with Ray
    loaded) freezes what is alive; cyclic garbage made afterwards is still collected. In a child process,
    so the test run's own collector is untouched."""
    code = (
        "import gc, weakref, agentic_ray\n"
        "class C: pass\n"
        "kept = [C() for _ in range(1000)]\n"
        "n = agentic_ray.freeze_gc()\n"
        "assert n >= 1000 and gc.get_freeze_count() == n, n\n"
        "a = C(); a.self = a; ref = weakref.ref(a); del a\n"
        "gc.collect()\n"
        "assert ref() is None\n"
        "print('ok', n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
