"""Direct HTTP into an agentic deployment: the proxy's router classifies by header, the replica answers.

``serve.run(Model.bind(), route_prefix="/infer")`` makes an ``@agentic_ray.deployment`` the HTTP entry of
its application. Serve's proxy then sends each HTTP request straight to a replica, through the
deployment's own request router, which runs inside the proxy (Serve builds a ``DeploymentHandle``
per route in the proxy, and the handle's router is the deployment's ``request_router_class``). There is no
ingress deployment in between: a request costs one replica call instead of two, and the first code of
ours that sees it is the agentic router, before any replica work. (Once a proxy's door knows the route,
what it lets in goes to the deployment as a handle call instead, ``_door_call``; this path remains for the
rest: each proxy's first request on a route, streams, Serve's multiplexing, the door turned off.)

Router side (in the proxy; ``http_request_of``, ``stamp``, ``HttpShed``): the request's only argument
is the proxy's pickled ``StreamingHTTPRequest`` (the ASGI scope with the headers, no body). The router
reads ``x-qos``, ``x-budget-ms``, ``x-tenant``, ``x-data-class``, ``x-workflow``, ``x-prompt-tokens``,
``x-max-tokens`` (and ``traceparent``)
from it, classifies the request, fixes its absolute deadline, and writes what it decided into the scope
under ``SCOPE_KEY`` before the request leaves for the replica (one unpickle and one pickle of the scope,
tens of microseconds). A request the router sheds never reaches a replica: it fails with ``HttpShed``,
a ``BackPressureError`` that Serve's proxy turns into the HTTP status it carries (429, or 503, e.g. for
``CircuitOpen`` when every replica it may use is ejected) with a JSON body and ``Retry-After``; a proxy
answers only 408, 429 and 503 this way, so a deadline that passed
before routing is a 503 here. A request with a bad header is routed to any replica with the error in
its stamp, and the replica answers 400 at once without taking a slot.

Replica side (``http_response``): the gated ``__call__`` receives Serve's starlette ``Request``. It takes
the router's stamp (or, when the request came some other way, parses the headers itself), offers the
request to the replica's admission gate, reads the JSON body once admitted, calls the user's method
with it as the one argument, and answers ``{"result": ..., "qos": ...}``; admission errors become their
statuses through ``http_status.http_error`` (429/503 + ``Retry-After``, 504 for a deadline that passed
while queued), a body that is not JSON a 400.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agentic_ray.errors import AdmissionError, EntitlementError, PolicyError
from agentic_ray.serve._http_auth import AuthError, HttpAuth
from agentic_ray.serve._http_status import http_error
from agentic_ray.serve._meta import HeaderError, meta_from_headers, policy_error_header

__all__ = ["SCOPE_KEY", "HttpShed", "bad_request_body", "http_request_of", "http_response", "refusal", "stamp"]

SCOPE_KEY = "agentic"  # key of the router's decision in the ASGI scope (clients cannot set scope keys)
_TRACE_HEADERS = ("traceparent", "tracestate")


def http_request_of(args: list[Any]) -> Any | None:
    """The proxy's ``StreamingHTTPRequest`` of a routed HTTP request (``args == [pickled bytes]``), or
    ``None`` when the arguments are not that."""
    if len(args) != 1 or not isinstance(args[0], bytes):
        return None
    try:
        request = pickle.loads(args[0])
    except Exception:
        return None
    return request if isinstance(getattr(request, "asgi_scope", None), dict) else None


def scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI scope's headers as a dict of lower-case names (the last value of a repeated header)."""
    return {bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1") for k, v in scope.get("headers") or ()}


def trace_carrier(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace headers of a request, as a carrier dict (empty when it sent none)."""
    return {k: headers[k] for k in _TRACE_HEADERS if headers.get(k)}


def bad_request_body(error: Exception) -> dict[str, Any]:
    """The 400 body of a request whose headers cannot be classified (``HeaderError`` or ``PolicyError``)."""
    if isinstance(error, HeaderError):
        return {"error": "bad_header", "header": error.header, "detail": error.reason}
    if isinstance(error, PolicyError):
        return {"error": "bad_header", "header": policy_error_header(error), "detail": str(error)}
    return {"error": "bad_request", "detail": str(error)}


def refusal(error: Exception) -> tuple[int, dict[str, str], dict[str, Any]]:
    """``(status, headers, body)`` of a request refused before admission for who sent it or what it
    asked: 401/403 for ``AuthError`` (no or unknown key, a tenant it may not claim), 403 for
    ``EntitlementError`` (a class or budget beyond its tenant's entitlement; the body names the
    entitlement and the rule), 400 for a header or policy name that cannot be classified."""
    if isinstance(error, AuthError):
        return error.status, dict(error.headers), dict(error.body)
    if isinstance(error, EntitlementError):
        return 403, {}, error.to_dict()
    return 400, {}, bad_request_body(error)


def caller_meta(auth: HttpAuth, headers: Mapping[str, str]) -> dict[str, Any]:
    """The request metadata of an HTTP request's (lower-case) ``headers``, with the caller's tenant as
    ``auth`` establishes it (``HeaderError`` for a bad header, ``AuthError`` when the caller cannot be
    identified). The router, the proxy's door, the ingress and an unrouted replica all read it so."""
    meta = meta_from_headers(headers)
    identify(auth, headers, meta)
    return meta


def identify(auth: HttpAuth, headers: Mapping[str, str], meta: dict[str, Any]) -> None:
    """Put the caller's tenant, as ``auth`` establishes it, into ``meta`` (``AuthError`` if it cannot)."""
    tenant = auth.tenant(headers)
    if tenant is None:
        meta.pop("tenant", None)
    else:
        meta["tenant"] = tenant


def stamp(args: list[Any], request: Any, decision: Mapping[str, Any]) -> None:
    """Write the router's ``decision`` (metadata with the deadline, or ``{"error": body}``) into the
    request's scope and put the re-pickled request back as its argument."""
    request.asgi_scope[SCOPE_KEY] = dict(decision)
    args[0] = pickle.dumps(request)


def _backpressure_base() -> type:
    from ray.serve.exceptions import BackPressureError

    return BackPressureError


class HttpShed(_backpressure_base()):  # type: ignore[misc]
    """A request the router refused, as Serve's proxy answers it: ``status_code`` (429 or 503), a JSON
    ``message`` body and ``Retry-After`` from ``retry_after_s`` (none when ``None``)."""

    def __init__(self, status_code: int, retry_after_s: float | None, body: dict[str, Any]) -> None:
        super().__init__(-1, -1, status_code, retry_after_s)
        self.body = body

    @property
    def message(self) -> Any:  # a dict: the proxy sends it as application/json
        return self.body

    def __str__(self) -> str:
        return json.dumps(self.body)

    def __reduce__(self):
        return (HttpShed, (self._status_code, self._retry_after_s, self.body))

    @classmethod
    def of(cls, error: AdmissionError) -> HttpShed:
        """The proxy's answer to a router ``AdmissionError`` (``http_status.http_error``: 429 for
        ``Overloaded``, 503 with ``Retry-After`` for ``CircuitOpen``, ...; 504 is not one a proxy can
        send: 503)."""
        status, headers, body = http_error(error)
        retry = float(headers["Retry-After"]) if "Retry-After" in headers else None
        return cls(503 if status == 504 else status, retry, body)


def _json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


async def http_response(
    replica: Any, http_request: Any, call: Callable[[Any], Awaitable[Any]], trace_span: Callable[..., Any]
) -> Any:
    """Answer one direct HTTP request on a replica of an agentic deployment (see the module docstring).

    ``call(payload)`` runs the user's method; ``trace_span(carrier)`` turns a carrier into the replica's
    trace parent (or ``None``)."""
    from agentic_ray.control._serve_tally import drift_workflow
    from agentic_ray.serve._deployment import serve_request_id
    from agentic_ray.serve._meta import WORKFLOW_DEADLINE, request_meta, to_request, with_tokens

    stamped = http_request.scope.get(SCOPE_KEY)
    if isinstance(stamped, Mapping) and "error" in stamped:
        return _json_response(stamped["error"], stamped.get("status", 400), stamped.get("headers"))
    if isinstance(stamped, Mapping):
        meta = dict(stamped)
        carrier = meta.pop("trace", None)
    else:  # not routed by an agentic router: this replica identifies and classifies the caller itself
        headers = {str(k).lower(): v for k, v in http_request.headers.items()}
        try:
            meta = caller_meta(replica._agentic_auth, headers)
        except (HeaderError, AuthError) as exc:
            status, extra, body = refusal(exc)
            return _json_response(body, status, extra)
        carrier = trace_carrier(headers) or None
    now = time.time()
    try:
        classification = replica._agentic_policy.classify(request_meta(meta), now)
    except (PolicyError, ValueError) as exc:
        status, extra, body = refusal(exc)
        return _json_response(body, status, extra)
    admission = replica._agentic_admission
    try:
        request = with_tokens(to_request(classification, admission.request_id(serve_request_id()), now,
                                         meta.get("deadline"), meta.get("model"), meta.get(WORKFLOW_DEADLINE)),
                              meta)  # fmt: skip
    except ValueError as exc:  # a stamped bad token count (the headers' are checked when parsed)
        return _json_response(bad_request_body(exc), 400)
    # Serve's replica fetches the body from the proxy for every HTTP request anyway (its receive task
    # runs from the start), so reading it before admission costs no extra call, and a body that is not
    # JSON is answered without taking a slot or becoming a service-time sample.
    fetch_started = time.perf_counter()
    raw = await http_request.body()
    # The body comes from the proxy by an actor call: its time is how far behind the proxy runs.
    admission.note_upstream_delay((time.perf_counter() - fetch_started) * 1000.0)
    try:
        payload = json.loads(raw) if raw else None
    except ValueError as exc:
        return _json_response({"error": "bad_body", "detail": f"body is not JSON: {exc}"}, 400)
    trace = trace_span(carrier) if carrier else None
    try:
        async with admission.admitted(request, trace, workflow=drift_workflow(meta.get("workflow"), meta.get("stage"))):
            result = await call(payload)
    except AdmissionError as exc:
        status, headers, body = http_error(exc)
        return _json_response(body, status, headers)
    if _is_response(result):
        return result
    return _json_response({"result": result, "qos": request.qos})


def _is_response(value: Any) -> bool:
    from starlette.responses import Response

    return isinstance(value, Response)
