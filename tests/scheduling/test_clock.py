from __future__ import annotations

import math

import pytest

from agentic_ray.testing.clock import ManualClock


def test_manual_clock_moves_only_when_advanced():
    clock = ManualClock(start=10.0)
    assert clock.now() == 10.0 == clock()
    assert clock.advance(0.25) == 10.25
    assert clock.advance(0) == clock.now() == 10.25
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="seconds"):
            clock.advance(bad)
    assert clock.now() == 10.25
    with pytest.raises(ValueError, match="start"):
        ManualClock(math.nan)
