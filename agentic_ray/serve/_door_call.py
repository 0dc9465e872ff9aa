"""The proxy door's direct call: a request the door let in, sent to the deployment as one handle call.

Why. Serve's HTTP path is costly for what a direct HTTP request to an ``@agentic_ray.deployment`` needs.
The proxy sends the request's ASGI scope to a replica as a streaming call, the replica runs an ASGI
app, calls back into the proxy for the body (a second call, then a long poll that is cancelled at the
end) and streams the response's messages back. Measured on the chaos suite's cluster (three proxies, three
replicas, 30 requests/s, two slow cores; the processes' CPU time from ``/proc`` less their idle
rate), an HTTP request cost the proxies 10.7-11.3 ms of CPU and the replicas 5.9-6.7 ms; the same
call by a deployment handle cost its caller (the load and the router together) 5.8-6.0 ms and the
replicas 3.4-4.0 ms. On a saturated host that CPU is the queue critical requests wait in.

What. For a request the door let in (``ProxyDoor``; never one it refused), ``direct_app`` returns an
ASGI app that reads the body in the proxy (not JSON: 400 here, as the replica would), calls the route's
deployment through the ``DeploymentHandle`` Serve's proxy would use for the request (its route table's
match for the path, checked to be the deployment of the agentic router the door classified with: the
same router; not streamed, over the proxy's transport) with the request's metadata as the handle path
carries it (``_agentic``: the class and budget asked, the tenant the door's identification established,
the data class, workflow, token counts, the deadline the door fixed and ``DOOR_CALL``, the door's route:
the router registers for it and exempts the call from the refusals HTTP requests are exempt from; the
W3C trace carrier when sampled), and
answers as the replica would: ``{"result": ..., "qos": ...}`` (a starlette ``Response`` the method returns is sent as
it is); an admission error with its status (``http_status.http_error``; 504 for a deadline that passed,
which Serve's proxy cannot send); any other error 500 ``{"error": "call_failed"}``. Serve's request id
(``x-request-id``, or a new one) is the call's, as on Serve's path, and comes back in the answer's
``x-request-id``.

Which requests. Only to routes whose replicas all publish ``JSON_CALL_KEY`` (their ``__call__`` is
gated and not a generator: it answers an HTTP request with the JSON protocol above), without Serve's
multiplexing or session headers, and only when Serve's route table sends the path to that deployment
(not to another application under the agentic route's prefix). The rest take Serve's path as before.
``AGENTIC_PROXY_DIRECT_CALL=0`` in the proxy's environment turns it off.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from agentic_ray.errors import AdmissionError
from agentic_ray.serve._http_status import http_error
from agentic_ray.serve._meta import META_KWARG

__all__ = [
    "DIRECT_ENV",
    "DOOR_CALL",
    "JSON_CALL_KEY",
    "direct_app",
    "proxy_router",
    "route_handle",
    "routed_handle",
    "send_json",
]

DIRECT_ENV = "AGENTIC_PROXY_DIRECT_CALL"  # "0": every request the door lets in takes Serve's HTTP path
DIRECT = os.environ.get(DIRECT_ENV, "1") != "0"
JSON_CALL_KEY = "http_json_call"  # replica metadata: its __call__ answers HTTP with the JSON protocol
DOOR_CALL = "door_call"  # wire key: the door's route prefix; the router registers for it, treats it as HTTP
_SERVE_HEADERS = ("serve_multiplexed_model_id", "serve-multiplexed-model-id", "x-session-id")
_META_KEYS = ("qos", "budget_ms", "tenant", "data_class", "workflow", "stage", "model", "prompt_tokens",
              "max_tokens", "workflow_deadline")  # fmt: skip


def proxy_router(app: Any) -> Any | None:
    """Serve's ``ProxyRouter`` behind the ASGI ``app`` the door wraps (Serve's proxy, under its request-id
    middleware), or None (not in a proxy, or Serve's internals moved)."""
    for _ in range(8):
        if app is None:
            return None
        router = getattr(app, "proxy_router", None)
        if router is not None and callable(getattr(router, "match_route", None)):
            return router
        app = getattr(app, "app", None) or getattr(app, "_app", None)
    return None


def route_handle(routes: Any, scope: Mapping[str, Any], router: Any) -> Any | None:
    """The ``DeploymentHandle`` Serve's proxy would send this request to (``routes``: its ``ProxyRouter``),
    as a unary call over the proxy's transport, when it is ``router``'s deployment; else None (another
    application's route, no route, or none of Serve's)."""
    handle = routed_handle(routes, str(scope.get("path", ""))[len(str(scope.get("root_path", ""))) :], router)
    return handle.options(stream=False) if handle is not None else None


def routed_handle(routes: Any, path: str, router: Any) -> Any | None:
    """Serve's handle for ``path`` in its route table ``routes`` when it is ``router``'s deployment, else None."""
    deployment = getattr(router, "_deployment_id", None)
    if routes is None or deployment is None:
        return None
    try:
        matched = routes.match_route(path)
        if matched is None:
            return None
        handle = matched[1]
        return handle if handle.deployment_id == deployment else None
    except Exception:  # Serve's internals moved: Serve's path
        return None


def direct_app(routes: Any, scope: Mapping[str, Any], prefix: str, router: Any, headers: Mapping[str, str],
               meta: Mapping[str, Any], deadline: float, qos: str) -> Any | None:  # fmt: skip
    """An ASGI app that answers the request by a direct call (module docstring), or None when it takes
    Serve's path. ``routes``: Serve's ``ProxyRouter`` (``proxy_router``); ``prefix``: the door's route
    (the router that classifies the call registers for it, as for an HTTP request it sees);
    ``headers``: the request's, lower-case; ``meta``: the wire dict the door classified (identified);
    ``deadline``: the one the door fixed."""
    if not DIRECT or not getattr(router, "door_direct", False) or any(h in headers for h in _SERVE_HEADERS):
        return None
    handle = route_handle(routes, scope, router)
    if handle is None:
        return None
    from agentic_ray.serve._http_direct import trace_carrier  # imports Ray: not at the module's import

    wire = {k: meta[k] for k in _META_KEYS if meta.get(k) is not None}
    wire["deadline"] = deadline
    wire[DOOR_CALL] = prefix
    carrier = trace_carrier(headers)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        rid = headers.get("x-request-id") or str(uuid.uuid4())
        raw = await _body(receive)
        try:
            payload = json.loads(raw) if raw else None
        except ValueError as exc:
            return await _send_json(send, 400, {"error": "bad_body", "detail": f"body is not JSON: {exc}"}, rid)
        kwargs: dict[str, Any] = {META_KWARG: dict(wire)}
        if carrier:
            from agentic_ray.telemetry.tracing import TRACE_KWARG, is_sampled

            if is_sampled(carrier):
                kwargs[TRACE_KWARG] = carrier
        token = _request_context(scope, prefix, rid, router)
        try:
            result = await handle.remote(payload, **kwargs)
        except AdmissionError as exc:
            status, extra, body = http_error(exc)
            return await _send_json(send, status, body, rid, extra)
        except Exception as exc:  # the user's error or a replica lost: no traceback to the client
            body = {"error": "call_failed", "qos": qos, "detail": type(exc).__name__}
            return await _send_json(send, 500, body, rid)
        finally:
            _reset_context(token)
        if _is_response(result):
            return await result(scope, receive, _with_request_id(send, rid))
        try:
            await _send_json(send, 200, {"result": result, "qos": qos}, rid)
        except (TypeError, ValueError) as exc:  # nothing sent yet: json.dumps failed
            await _send_json(send, 500, {"error": "result_not_json", "qos": qos, "detail": str(exc)}, rid)

    return app


async def _body(receive: Any) -> bytes:
    """The request's body, read whole from ``receive``."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message.get("type") != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _request_context(scope: Mapping[str, Any], route: str, rid: str, router: Any) -> Any:
    """Set Serve's request context for the call (its request id and route; not marked HTTP, which would
    make the replica expect Serve's HTTP request); the token to reset it, or None."""
    try:
        from ray.serve.context import _RequestContext, _serve_request_context

        deployment = router._deployment_id
        client = scope.get("client")
        return _serve_request_context.set(_RequestContext(
            route=route, request_id=rid, app_name=deployment.app_name,
            _client=f"{client[0]}:{client[1]}" if client else ""))  # fmt: skip
    except Exception:
        return None


def _reset_context(token: Any) -> None:
    if token is not None:
        from ray.serve.context import _serve_request_context

        _serve_request_context.reset(token)


def _with_request_id(send: Any, rid: str) -> Any:
    async def sent(message: Mapping[str, Any]) -> None:
        if message.get("type") == "http.response.start":
            message = dict(message, headers=[*message.get("headers", []), (b"x-request-id", rid.encode())])
        await send(message)

    return sent


async def _send_json(send: Any, status: int, body: Any, rid: str, headers: Mapping[str, str] | None = None) -> None:
    await send_json(send, status, body, {"x-request-id": rid, **(headers or {})})


async def send_json(send: Any, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
    """Answer ``status`` on ASGI ``send`` with ``body`` as JSON and ``headers`` (the door's answers too).
    ``TypeError`` / ``ValueError`` before anything is sent when ``body`` is not JSON."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def _is_response(value: Any) -> bool:
    try:
        from starlette.responses import Response
    except ImportError:
        return False
    return isinstance(value, Response)
