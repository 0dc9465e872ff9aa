from __future__ import annotations

import random

import pytest

import agentic_ray.scheduling as scheduling
from agentic_ray.scheduling import Router, create_router, router_names


def test_every_registered_router_builds_and_follows_the_protocol():
    names = router_names()
    assert {"agentic", "pow2"} <= set(names)
    for name in names:
        r = create_router(name, random.Random(0))
        assert isinstance(r, Router) and r.name == name
        assert r.replica_discipline in ("fifo", "gate")
        assert callable(r.wait_order)


def test_unknown_name_lists_registered():
    with pytest.raises(ValueError, match="registered routers: agentic") as info:
        create_router("nope", random.Random(0))
    assert "pow2" in str(info.value)


def test_unknown_config_key_names_it():
    with pytest.raises(ValueError, match=r"unknown config key.*bogus"):
        create_router("pow2", random.Random(0), bogus=1)


def test_rng_must_be_random_instance():
    with pytest.raises(ValueError, match="rng"):
        create_router("pow2", 42)  # type: ignore[arg-type]


def test_public_names_pinned():
    for name in scheduling.__all__:
        assert hasattr(scheduling, name), name
