"""HTTP ingress: headers become request metadata; admission errors become HTTP statuses.

``ingress_app(model_app, policy=...)`` binds an ``AgenticIngress`` in front of an agentic deployment::

    app = ingress_app(Model.bind(), policy="policy.yaml")
    serve.run(app, route_prefix="/")
    # curl -H 'x-qos: critical' -H 'x-budget-ms: 80' -d '{"prompt": "hi"}' http://127.0.0.1:8000/

Per request the ingress reads ``x-qos``, ``x-budget-ms``, ``x-tenant``, ``x-data-class``, ``x-workflow``,
classifies them with the policy (so an unknown class or tenant is refused before any work), fixes the
absolute deadline (``time.time() + budget``) and calls the model's handle with the JSON body as its one
argument and the metadata as ``_agentic`` (through ``agentic_ray.serve.call``: a class with the policy's
``hedge_after_ms`` gets a hedged request on another replica when the first has not answered by then).
The model's router (running in this ingress replica) and the replicas' gates do the rest.

Front door. The ingress is itself a first-come-first-served stage (its event loop, the handle call it
makes per request), so it admits requests through an admission gate of its own before calling the
model: at most ``slots`` (default 64) calls in flight, priority then earliest deadline for the rest,
budget-sized queues per class; while its calls wait longer than ``delay_target_ms`` on Serve's proxy
(the body fetch) or on its own loop, it runs fewer calls of the classes that may be shed
(``scheduling.limits.DelayLimit``), so critical requests keep getting through when the host is
saturated. A full class queue is a 429.

Status codes (``http_error``):

- 400 ``{"error": "bad_header", "header": ..., "detail": ...}``: a bad header value, an unknown class,
  tenant or workflow; 400 ``{"error": "bad_body"}`` for a body that is not JSON;
- 429 + ``Retry-After``: ``Overloaded`` (queue full, shed above threshold, retry budget spent);
- 503 + ``Retry-After``: ``BudgetExhausted`` that cannot meet its budget (retry later), or
  ``CircuitOpen`` (every replica the request may use is ejected by its breaker; retry when one
  half-opens); 503 without it: ``NoEligibleReplica`` (no replica satisfies the placement rules; retrying won't help);
- 504: the deadline passed (while queued at the replica or at the router).

``Retry-After`` is whole seconds, rounded up, at least 1 (RFC 9110 section 10.2.3).

Tracing (when configured in the ingress process, e.g. ``AGENTIC_TRACE_EXPORTER`` in its ``runtime_env``):
a request with a W3C ``traceparent`` header (and ``tracestate``) gets an ``agentic.ingress`` span under
that parent when the parent is sampled (the caller's sampling decision is kept); a request without one
starts an ``agentic.ingress`` root for ~``sampling_ratio`` of requests (``tracing.root_span``). A sampled
context rides to the model in ``_agentic_trace`` (``tracing.with_trace``), so the router's
``agentic.route`` span and the replica's ``agentic.queue`` / ``agentic.execute`` spans chain under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from ray import serve
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse

from agentic_ray.errors import AdmissionError, PolicyError
from agentic_ray.policies import Policy, default_policy, load_policy, parse_policy
from agentic_ray.scheduling.admission import AdmissionGate
from agentic_ray.scheduling.limits import DelayLimit, DelayLimitConfig
from agentic_ray.serve._call import call
from agentic_ray.serve._deployment import serve_request_id
from agentic_ray.serve._http_auth import AuthError, HttpAuth
from agentic_ray.serve._http_direct import caller_meta, refusal
from agentic_ray.serve._http_status import http_error
from agentic_ray.serve._meta import META_KWARG, HeaderError, request_meta, to_request
from agentic_ray.serve._replica_gate import ReplicaAdmission
from agentic_ray.telemetry import tracing

__all__ = ["AgenticIngress", "ingress_app"]


INGRESS_MAX_ONGOING = 1024
INGRESS_SLOTS = 64


@serve.deployment(ray_actor_options={"num_cpus": 0})
class AgenticIngress:
    """The HTTP front of an agentic deployment (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        policy_yaml: str | None = None,
        method_name: str = "__call__",
        slots: int = INGRESS_SLOTS,
        delay_target_ms: float | None = 8.0,
        http_auth: dict[str, Any] | None = None,
    ) -> None:
        self.auth = HttpAuth.from_config(http_auth)
        self.policy: Policy = parse_policy(policy_yaml, source="<ingress policy>") if policy_yaml else default_policy()
        self.model = model.options(method_name=method_name)
        gate = AdmissionGate(slots, self.policy.classes, budget_bounds=True, max_budget_bound=INGRESS_MAX_ONGOING)
        limiter = DelayLimit(slots, DelayLimitConfig(target_ms=delay_target_ms)) if delay_target_ms else None
        hook = None
        if os.environ.get("AGENTIC_TRACE_EXPORTER") or os.environ.get("AGENTIC_DECISION_LOG_DIR"):
            from agentic_ray.telemetry.hotpath import process_hook

            hook = process_hook()  # configures this process's tracing (and decision log) from the environment
        # Its decisions go to the decision log (``where="ingress"``) only when one is configured: the
        # request's records there, the router's and the gate's all carry Serve's request id.
        log_decisions = bool(os.environ.get("AGENTIC_DECISION_LOG_DIR"))
        self.admission = ReplicaAdmission(gate, limiter=limiter, policy_version=self.policy.version,
                                          hook=hook if log_decisions else None, where="ingress")  # fmt: skip
        with contextlib.suppress(Exception):  # its completion records name this ingress replica
            self.admission.replica_id = serve.get_replica_context().replica_id.unique_id

    async def __call__(self, request: HttpRequest) -> JSONResponse:
        try:
            meta = caller_meta(self.auth, {k.lower(): v for k, v in request.headers.items()})
            now = time.time()
            classification = self.policy.classify(request_meta(meta), now)
        except (HeaderError, AuthError, PolicyError) as exc:
            status, headers, body = refusal(exc)
            return JSONResponse(body, status_code=status, headers=headers)
        meta["deadline"] = classification.deadline
        fetch_started = time.perf_counter()
        raw = await request.body()
        self.admission.note_upstream_delay((time.perf_counter() - fetch_started) * 1000.0)
        try:
            payload = json.loads(raw) if raw else None
        except ValueError as exc:
            return JSONResponse({"error": "bad_body", "detail": f"body is not JSON: {exc}"}, status_code=400)
        carrier = {k: v for k in ("traceparent", "tracestate") if (v := request.headers.get(k))}
        attrs = {"agentic.qos": classification.qos.name, "http.route": request.url.path}
        if "traceparent" in carrier:
            trace_span = tracing.span("agentic.ingress", parent=carrier, attributes=attrs, child_only=True)
        else:
            trace_span = tracing.root_span("agentic.ingress", attributes=attrs)
        rid = self.admission.request_id(serve_request_id())  # the HTTP request's id, as the router logs it
        request_here = to_request(classification, rid, now, None, meta.get("model"))
        with trace_span as s:
            try:
                async with self.admission.admitted(request_here):
                    kwargs = tracing.with_trace({META_KWARG: meta})
                    hedge_after_ms = classification.qos.hedge_after_ms
                    result = await call(self.model, payload, hedge_after_ms=hedge_after_ms, **kwargs)
            except AdmissionError as exc:
                status, headers, body = http_error(exc)
                s.set_attribute("agentic.outcome", type(exc).__name__)
                return JSONResponse(body, status_code=status, headers=headers)
        return JSONResponse({"result": result, "qos": classification.qos.name})


def ingress_app(
    model_app: Any,
    policy: Policy | str | None = None,
    method_name: str = "__call__",
    *,
    slots: int = INGRESS_SLOTS,
    delay_target_ms: float | None = 8.0,
    api_keys: Any = None,
    trust_tenant_header: bool = False,
    **ingress_options: Any,
) -> Any:
    """Bind an ``AgenticIngress`` in front of ``model_app`` (a bound agentic deployment).

    ``ingress_options`` go to ``AgenticIngress.options`` (e.g. ``ray_actor_options`` with a
    ``runtime_env`` that sets ``AGENTIC_TRACE_EXPORTER``, or ``num_replicas``). ``slots`` and
    ``delay_target_ms`` size the ingress's own admission gate (module docstring). ``max_ongoing_requests``
    defaults to ``INGRESS_MAX_ONGOING``: with Serve's default of 5, requests queue in Serve's proxy in front
    of the ingress, where no priority applies and its router's backoff collapses throughput (6.6 requests/s
    at 60 clients); the model's router and gates, in and behind the ingress, bound and order the work.

    Prefer serving the deployment itself (``serve.run(Model.bind(), route_prefix=...)``, module
    ``http_direct``): one replica call per request instead of two, and the agentic router decides in Serve's
    proxy before any replica work. Use this ingress to hedge HTTP requests (``hedge_after_ms``) or to call
    another method than ``__call__``. ``api_keys`` / ``trust_tenant_header``: how callers are identified
    (``serve._http_auth``; default: anonymous, ``x-tenant`` refused with 403)."""
    ingress_options.setdefault("max_ongoing_requests", INGRESS_MAX_ONGOING)
    if policy is None:
        text = None
    elif isinstance(policy, Policy):
        text = policy.to_yaml()
    else:
        text = load_policy(policy).to_yaml()
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots: must be an integer >= 1, got {slots!r}")
    if delay_target_ms is not None:
        DelayLimitConfig(target_ms=delay_target_ms)  # ValueError names the field, before deploying
    auth = HttpAuth.of(api_keys, trust_tenant_header)
    return AgenticIngress.options(**ingress_options).bind(
        model_app, text, method_name, slots, delay_target_ms, auth.to_config()
    )
