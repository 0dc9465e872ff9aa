"""``_Requirement.implies``: may an actor placed under one requirement take calls classified under another?"""

from __future__ import annotations

from agentic_ray.policies.classification import NodeSelector, _Requirement


def _req(**parts) -> _Requirement | None:
    return _Requirement.combine([NodeSelector(**parts)])


def test_none_is_implied_by_everything_and_implies_only_none():
    eu = _req(zone_prefixes=("eu-",))
    assert eu.implies(None)
    assert not _Requirement.combine([]) and _req() is None  # no parts: no requirement at all


def test_zone_lists_and_prefixes():
    west = _req(zones=frozenset({"eu-west"}))
    eu = _req(zone_prefixes=("eu-",))
    assert west.implies(eu)  # every allowed zone starts with eu-
    assert not eu.implies(west)  # eu-north is allowed by eu- but not by [eu-west]
    assert eu.implies(_req(zone_prefixes=("eu",)))
    assert not eu.implies(_req(zone_prefixes=("us-",)))
    assert west.implies(_req(zones=frozenset({"eu-west", "eu-north"})))
    assert not _req(zones=frozenset({"eu-west", "us-east"})).implies(west)


def test_accelerators_and_labels():
    gpu = _req(accelerators=frozenset({"a100"}))
    assert gpu.implies(_req(accelerators=frozenset({"a100", "h100"})))
    assert not _req(accelerators=frozenset({"a100", "h100"})).implies(gpu)
    assert not _req(zone_prefixes=("eu-",)).implies(gpu)
    tier = _req(labels=(("tier", frozenset({"fast"})),))
    assert tier.implies(_req(labels=(("tier", frozenset({"fast", "slow"})),)))
    assert not _req(labels=(("tier", frozenset({"fast", "slow"})),)).implies(tier)
    assert not gpu.implies(tier)


def test_combined_requirements():
    both = _Requirement.combine([NodeSelector(zone_prefixes=("eu-",)), NodeSelector(accelerators=frozenset({"gpu"}))])
    assert both.implies(_req(zone_prefixes=("eu-",)))
    assert both.implies(_req(accelerators=frozenset({"gpu"})))
    assert both.implies(both)
    assert not _req(zone_prefixes=("eu-",)).implies(both)
