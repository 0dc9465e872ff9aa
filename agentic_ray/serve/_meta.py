"""Request metadata on the Serve path: how QoS, budget, tenant and deadline travel with a request.

Wire format. Every request routed by ``AgenticRequestRouter`` carries one keyword argument,
``_agentic`` (``META_KWARG``): a plain dict with the ``RequestMeta`` fields that are set (``qos``,
``budget_ms``, ``tenant``, ``data_class``, ``workflow``, ``model``, ``stage``) plus ``deadline``, an
absolute ``time.time()`` instant fixed by the first hop that saw the request (the HTTP ingress, or the
router of a handle call), and, from ``agentic_ray.serve.call``, ``call_id`` / ``hedge_of`` (``CALL_ID``,
``HEDGE_OF``) that let the router send a hedge to another replica than its first copy. The replica
wrapper installed by ``@agentic_ray.deployment`` removes it before the user's method runs.

Callers of a handle may instead pass the bare keywords ``qos``, ``budget_ms``, ``tenant``,
``data_class`` and ``workflow`` (``HANDLE_META_KEYS``): ``h.remote(x, qos="critical", budget_ms=80)``.
The router folds them into ``_agentic``; these names are therefore reserved on agentic deployments.

HTTP: headers ``x-qos``, ``x-budget-ms``, ``x-tenant``, ``x-data-class``, ``x-workflow`` (``HEADERS``).
A bad value raises ``HeaderError`` naming the header (the ingress answers 400).

LLM streams: ``prompt_tokens`` (the prompt's length) and ``max_tokens`` (the most tokens the stream may
produce) travel in ``_agentic`` (``STREAM_KEYS``), or as headers ``x-prompt-tokens`` / ``x-max-tokens``.
They are not reserved as bare keywords (an LLM method commonly takes its own ``max_tokens``): when a
call's own keywords include them, they are read into the metadata and left where they are.
``with_tokens`` puts them on the scheduling core's ``Request`` (integers: ``prompt_tokens >= 0``,
``max_tokens >= 1``; ``ValueError`` naming the field otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from agentic_ray._budget import stage_deadline
from agentic_ray.policies.types import RequestMeta
from agentic_ray.scheduling.types import Request

__all__ = [
    "CALL_ID",
    "HANDLE_META_KEYS",
    "ROUTED_AT",
    "HEDGE_OF",
    "HEADERS",
    "META_KWARG",
    "STREAM_KEYS",
    "WORKFLOW_DEADLINE",
    "env_number",
    "HeaderError",
    "meta_from_headers",
    "policy_error_header",
    "pop_meta",
    "request_meta",
    "to_request",
    "with_tokens",
]

META_KWARG = "_agentic"
WORKFLOW_DEADLINE = "workflow_deadline"  # wire key: the deadline of the caller's workflow run (a stage's)
CALL_ID = "call_id"  # wire key set by ``agentic_ray.serve.call``: this copy's id
HEDGE_OF = "hedge_of"  # wire key of a hedge: the ``CALL_ID`` of the copy it hedges
ROUTED_AT = "routed_at"  # wire key set by the router: when it sent the call (wall clock, s)
HANDLE_META_KEYS = ("qos", "budget_ms", "tenant", "data_class", "workflow")
HEADERS = {
    "x-qos": "qos",
    "x-budget-ms": "budget_ms",
    "x-tenant": "tenant",
    "x-data-class": "data_class",
    "x-workflow": "workflow",
    "x-prompt-tokens": "prompt_tokens",
    "x-max-tokens": "max_tokens",
}
STREAM_KEYS = ("prompt_tokens", "max_tokens")
_TOKENS_MIN = {"prompt_tokens": 0, "max_tokens": 1}
_META_FIELDS = ("qos", "budget_ms", "tenant", "data_class", "workflow", "model", "stage")


class HeaderError(ValueError):
    """An HTTP header carries a bad value. ``header`` names it, ``reason`` says why."""

    def __init__(self, header: str, reason: str) -> None:
        self.header = header
        self.reason = reason
        super().__init__(f"{header}: {reason}")

    def __reduce__(self):
        return (HeaderError, (self.header, self.reason))


def env_number(text: str | None, default: float) -> float:
    """A setting's number from an environment variable's ``text``: a number >= 0 (``inf``: off), else
    ``default`` (unset, not a number, or negative)."""
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if value >= 0 else default


def pop_meta(kwargs: MutableMapping[str, Any]) -> dict[str, Any]:
    """Remove the agentic metadata from call ``kwargs`` and return it as one dict.

    Merges ``_agentic`` with the bare ``HANDLE_META_KEYS`` (``_agentic`` wins). ``None`` values are
    dropped. Does not validate: ``request_meta`` does.
    """
    meta: dict[str, Any] = {}
    for key in HANDLE_META_KEYS:
        if key in kwargs:
            value = kwargs.pop(key)
            if value is not None:
                meta[key] = value
    wire = kwargs.pop(META_KWARG, None)
    if isinstance(wire, Mapping):
        meta.update({k: v for k, v in wire.items() if v is not None})
    for key in STREAM_KEYS:  # the call's own arguments: read, not removed
        if key not in meta and kwargs.get(key) is not None:
            meta[key] = kwargs[key]
    return meta


def request_meta(meta: Mapping[str, Any]) -> RequestMeta:
    """The ``RequestMeta`` of a wire dict (``deadline`` is ignored). ``ValueError`` names a bad field."""
    return RequestMeta.from_mapping({k: meta[k] for k in _META_FIELDS if k in meta})


def class_and_deadline(policy: Any, meta: Mapping[str, Any], now: float) -> tuple[Any, float]:
    """The class ``policy`` gives the wire dict ``meta`` at ``now`` and the request's deadline: the class's,
    or the caller's earlier one carried in ``meta`` (as the router keeps it). Raises what
    ``policy.classify`` and ``request_meta`` raise for bad input."""
    return classified_deadline(policy.classify(request_meta(meta), now), meta)


def classified_deadline(classification: Any, meta: Mapping[str, Any]) -> tuple[Any, float]:
    """``class_and_deadline`` of a request already classified as ``classification``."""
    deadline = classification.deadline
    carried = meta.get("deadline")
    if carried is not None:
        deadline = min(deadline, float(carried))
    return classification.qos, deadline


def meta_from_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    """The wire dict of an HTTP request's headers (no deadline yet). Raises ``HeaderError``."""
    meta: dict[str, Any] = {}
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for header, key in HEADERS.items():
        raw = lowered.get(header)
        if raw is None:
            continue
        value = str(raw).strip()
        if not value:
            raise HeaderError(header, "empty value")
        if key in _TOKENS_MIN:
            try:
                meta[key] = _token_count(int(value), key)
            except ValueError:
                raise HeaderError(header, f"must be an integer >= {_TOKENS_MIN[key]}, got {value!r}") from None
        elif key == "budget_ms":
            try:
                number = float(value)
            except ValueError:
                raise HeaderError(header, f"not a number: {value!r}") from None
            if not math.isfinite(number) or number <= 0:
                raise HeaderError(header, f"must be a finite number > 0, got {value!r}")
            meta[key] = number
        else:
            meta[key] = value
    return meta


def _token_count(value: Any, key: str) -> int:
    minimum = _TOKENS_MIN[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}: must be an integer >= {minimum}, got {value!r}")
    return value


def with_tokens(request: Request, meta: Mapping[str, Any]) -> Request:
    """``request`` with the stream's ``prompt_tokens`` / ``max_tokens`` from ``meta`` (unchanged when it
    carries neither). ``ValueError`` names a bad one."""
    prompt, most = meta.get("prompt_tokens"), meta.get("max_tokens")
    if prompt is None and most is None:
        return request
    return replace(
        request,
        prompt_tokens=None if prompt is None else _token_count(prompt, "prompt_tokens"),
        max_tokens=None if most is None else _token_count(most, "max_tokens"),
    )


def policy_error_header(error: Exception) -> str:
    """The header a ``PolicyError`` of classification is about (unknown tenant or workflow, else class)."""
    text = str(error).lower()
    for word, header in (("tenant", "x-tenant"), ("workflow", "x-workflow"), ("stage", "x-workflow")):
        if word in text:
            return header
    return "x-qos"


def to_request(
    classification: Any,
    request_id: Any,
    now: float,
    deadline: float | None,
    model: str | None,
    workflow_deadline: float | None = None,
) -> Request:
    """The scheduling core's ``Request`` for a classified request; ``deadline`` (an absolute instant fixed by
    an earlier hop or the caller's budget scope) replaces the class's when it is earlier, never later. A
    stage request inside a workflow run (``workflow_deadline``) gets its share of what the run has left
    (``_budget.stage_deadline``), not the share of a run starting now."""
    request = Request.from_classification(classification, request_id, now, model)
    at = request.deadline
    share = classification.stage_share
    if workflow_deadline is not None and share is not None:
        # A run has at most the workflow's whole budget left: a carried deadline cannot stretch a stage.
        longest = now + (classification.workflow_budget_ms or 0.0) * share / 1000.0
        at = min(stage_deadline(float(workflow_deadline), share, now), longest)
    if deadline is not None:
        at = min(at, float(deadline))
    return request if at == request.deadline else replace(request, deadline=at)
