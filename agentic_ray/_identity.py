"""The tenant a process (a job's driver and its workers, a service) submits work as.

Entitlements decide what a tenant may ask for; a binding decides which tenant a process is. A process is
bound by ``agentic_ray.init(tenant=...)`` or, for a whole Ray job including its workers, by the
``AGENTIC_TENANT`` environment variable (``ray job submit --runtime-env-json
'{"env_vars": {"AGENTIC_TENANT": "bank-eu"}}'``). In a bound process every task and handle call runs as
that tenant: a call that names no tenant gets it, and a call naming another tenant raises
``EntitlementError`` unless the policy lets the bound tenant act for it (``tenants.<t>.act_for``). An
unbound process may name any tenant, as before (code inside a Ray cluster is trusted by Ray itself:
see SECURITY.md; the binding keeps honest code inside its tenant, it does not contain hostile code).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from agentic_ray.errors import EntitlementError

__all__ = ["ENV", "bind", "bound", "resolve_tenant", "run_as"]

ENV = "AGENTIC_TENANT"
_bound: str | None = os.environ.get(ENV) or None  # a job's workers are bound from their start


def bind(tenant: str | None) -> str | None:
    """Bind this process to ``tenant`` (``None``: to ``AGENTIC_TENANT`` if set, else unbound); returns the
    binding. ``ValueError`` when both name a tenant and they differ (the environment is the operator's)."""
    global _bound
    env = os.environ.get(ENV) or None
    if tenant is not None and env is not None and tenant != env:
        raise ValueError(f"tenant: {tenant!r} contradicts {ENV}={env!r} set for this job")
    _bound = tenant if tenant is not None else env
    return _bound


def bound() -> str | None:
    """The tenant this process is bound to (``None``: unbound)."""
    return _bound


def run_as(policy: Any, meta: MutableMapping[str, Any]) -> None:
    """In a bound process, set ``meta``'s ``tenant`` to the one its call runs as (``resolve_tenant``, which
    may raise ``EntitlementError``); in an unbound one, leave ``meta`` as it is."""
    if _bound is not None:
        meta["tenant"] = resolve_tenant(policy, meta.get("tenant"))


def resolve_tenant(policy: Any, requested: str | None) -> str | None:
    """The tenant a call runs as: ``requested`` in an unbound process; else the bound tenant, when the call
    names none or names one the bound tenant may act for (``policy.may_act_for``); else
    ``EntitlementError`` (entitlement ``tenant``, rule ``tenants.<bound>.act_for``)."""
    actor = bound()
    if actor is None or requested is None:
        return requested if actor is None else actor
    if requested == actor or policy.may_act_for(actor, requested):
        return requested
    spec = policy.spec.tenants.get(actor)
    allowed = [actor, *((spec.act_for or ()) if spec is not None else ())]
    raise EntitlementError("tenant", f"process bound to tenant:{actor}", requested, allowed, f"tenants.{actor}.act_for")
