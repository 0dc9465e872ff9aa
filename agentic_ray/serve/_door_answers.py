"""The proxy door's own answers (``serve._door``): JSON bodies naming why the door answered, with
``Retry-After: 1`` on its refusals (not on a 504)."""

from __future__ import annotations

from typing import Any

from agentic_ray.serve._door_call import send_json

__all__ = ["deadline_exceeded", "door_delay", "door_full", "door_wait", "refuse", "saturated"]


async def _answer(send: Any, status: int, error: str, qos: str, detail: str, retry_after: bool) -> None:
    """Answer ``status`` with a JSON body (``error``, ``qos``, no rule ids, ``detail``), and ``Retry-After:
    1`` when ``retry_after``."""
    body = {"error": error, "qos": qos, "rule_ids": [], "detail": detail}
    await send_json(send, status, body, {"retry-after": "1"} if retry_after else None)


async def refuse(send: Any, qos: str, probability: float) -> None:
    """Answer 429 with ``Retry-After: 1`` and a JSON body naming the door's throttle."""
    detail = (f"the deployment refuses most {qos} requests now; refused at the proxy with probability "
              f"{probability:.2f} (adaptive throttling)")  # fmt: skip
    await _answer(send, 429, "door_throttled", qos, detail, retry_after=True)


async def saturated(send: Any, qos: str, lag_ms: float) -> None:
    """Answer 429 with ``Retry-After: 1``: the proxy itself is saturated (its event loop lags)."""
    detail = f"the proxy is saturated (its event loop runs {lag_ms:.0f} ms late); {qos} requests are refused first"
    await _answer(send, 429, "door_saturated", qos, detail, retry_after=True)


async def door_full(send: Any, qos: str) -> None:
    """Answer 429 with ``Retry-After: 1``: the door's queue is full of more urgent work."""
    detail = f"the deployment is at its in-flight limit and the proxy's queue is full of more urgent work than {qos}"
    await _answer(send, 429, "door_queue_full", qos, detail, retry_after=True)


async def door_wait(send: Any, qos: str, wait_s: float, path_s: float, budget_s: float) -> None:
    """Answer 429 with ``Retry-After: 1``: the queue ahead would keep it past its deadline (``WaitForecast``)."""
    detail = (f"the deployment is at its in-flight limit and the proxy's queue ahead of this {qos} request would "
              f"take about {wait_s * 1000.0:.0f} ms, then {path_s * 1000.0:.0f} ms to answer: past its deadline "
              f"in {budget_s * 1000.0:.0f} ms; refused on arrival")  # fmt: skip
    await _answer(send, 429, "door_queue_wait", qos, detail, retry_after=True)


async def door_delay(send: Any, qos: str, waited_s: float) -> None:
    """Answer 429 with ``Retry-After: 1``: it waited at the door as long as a standing queue allows."""
    detail = (f"the deployment is at its in-flight limit and the proxy's queue has stood for a while; {qos} "
              f"refused after waiting {waited_s * 1000.0:.0f} ms (controlled delay)")  # fmt: skip
    await _answer(send, 429, "door_queue_delay", qos, detail, retry_after=True)


async def deadline_exceeded(send: Any, qos: str, budget_s: float, slack_s: float,
                             where: str = "cancelled at the proxy") -> None:  # fmt: skip
    """Answer 504 with a JSON body: no answer had begun ``slack_s`` after the deadline."""
    detail = f"no answer within the request's budget ({budget_s * 1000.0:.0f} ms) and {slack_s:g} s more; {where}"
    await _answer(send, 504, "deadline_exceeded", qos, detail, retry_after=False)
