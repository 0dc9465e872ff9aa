"""The request ledger of the chaos suite: each request lands in exactly one outcome."""

from __future__ import annotations

import math

import pytest

from agentic_ray.testing.ledger import Ledger


def _ledger() -> Ledger:
    led = Ledger(grace_s=0.5)
    led.sent("ok", "critical", 0.0, 0.1)
    led.answered("ok", 0.05, "ok")
    led.sent("late-ok", "critical", 0.0, 0.1)
    led.answered("late-ok", 0.3, "ok")  # after its deadline, within the grace: ok, not in budget
    led.sent("shed", "sheddable", 0.0, 2.0)
    led.answered("shed", 0.001, "typed", "Overloaded:queue_full")
    led.sent("died", "standard", 0.0, 0.5)
    led.answered("died", 0.2, "untyped", "ActorDiedError")
    led.sent("hung", "standard", 0.0, 0.5)
    led.answered("hung", 1.2, "typed", "BudgetExhausted")  # 0.2 s past deadline + grace
    led.sent("lost", "standard", 0.0, 0.5)
    led.sent("open", "sheddable", 0.0, 5.0)
    return led


def test_each_request_has_one_outcome():
    t = _ledger().tally(now=2.0)
    assert (t.requests, t.ok, t.typed_error, t.untyped_error, t.hung, t.lost, t.open) == (7, 2, 1, 1, 1, 1, 1)
    assert t.details == {"Overloaded:queue_full": 1, "ActorDiedError": 1}
    assert t.to_dict()["typed_errors"] == 1


def test_unanswered_request_is_open_until_its_grace_ends():
    led = Ledger(grace_s=1.0)
    led.sent("a", "critical", 0.0, 0.1)
    assert led.tally(now=1.1).open == 1
    assert led.tally(now=1.100001).lost == 1


def test_first_answer_counts():
    led = Ledger(grace_s=0.0)
    led.sent("a", "critical", 0.0, 1.0)
    led.answered("a", 0.5, "ok")
    led.answered("a", 5.0, "untyped")  # a retried copy's echo
    assert led.tally(now=10.0).ok == 1


def test_attainment_and_percentile():
    led = _ledger()
    assert led.attainment("critical") == 0.5
    assert led.percentile(0.5, "critical") == pytest.approx(0.05)
    assert led.percentile(1.0, "critical") == pytest.approx(0.3)
    assert math.isnan(led.attainment("nobody"))
    assert led.percentile(0.99, kind="typed") == pytest.approx(1.2)  # the shed one and the hung one


def test_bad_input_is_refused_with_the_field():
    led = Ledger()
    with pytest.raises(ValueError, match="grace_s"):
        Ledger(grace_s=-1)
    led.sent("a", "critical", 1.0, 2.0)
    with pytest.raises(ValueError, match="key"):
        led.sent("a", "critical", 1.0, 2.0)
    with pytest.raises(ValueError, match="deadline"):
        led.sent("b", "critical", 1.0, 0.5)
    with pytest.raises(ValueError, match="kind"):
        led.answered("a", 1.5, "maybe")


def test_settling_folds_answered_entries_without_changing_any_figure():
    """The soak's 25k requests held ~7 MiB of entries in the driver, counted as its memory growth:
    ``settle`` folds the answered ones into counts; the tally, whole-run attainment and length stay."""
    led, ref = _ledger(), _ledger()
    assert led.settle() == 5  # all but lost and open
    assert len(led.entries) == 2 and len(led) == len(ref) == 7
    assert led.tally(now=2.0) == ref.tally(now=2.0)
    for qos in (None, "critical", "standard", "sheddable"):
        a, b = led.attainment(qos), ref.attainment(qos)
        assert a == b or (math.isnan(a) and math.isnan(b))
    led.answered("ok", 9.0, "typed", "late echo")  # a settled key's second answer: ignored
    led.answered("open", 1.0, "ok")  # a still-open one closes as before
    ref.answered("open", 1.0, "ok")
    assert led.settle() == 1 and led.tally(now=2.0) == ref.tally(now=2.0)
    with pytest.raises(KeyError):
        Ledger().answered("never-sent", 1.0, "ok")
