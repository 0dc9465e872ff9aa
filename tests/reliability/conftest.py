"""Fixtures of the reliability tests: the SDK with a running control plane, per test module."""

from __future__ import annotations

import pytest

from tests.integration._control_plane import FRAUD_POLICY, short_config


@pytest.fixture(scope="module")
def agentic(ray_cluster):
    """The SDK with a running control plane (fraud policy, short intervals), per test module."""
    from agentic_ray import sdk

    sdk.init(policy=str(FRAUD_POLICY), config=short_config(), wait_s=60)
    yield sdk
    sdk.shutdown(stop_control_plane=True)
