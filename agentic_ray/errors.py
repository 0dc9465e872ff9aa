"""The exception tree of agentic-ray.

Every error the library raises on purpose is an ``AgenticRayError``; catch that to catch them all::

    AgenticRayError
    ├── ConfigValidationError        a file (policy, scenario) is invalid; .problems lists every problem
    ├── PolicyError                  a request does not fit the policy (unknown class, tenant, workflow)
    │   ├── EntitlementError         a request asks for more than its caller is entitled to (HTTP 403)
    │   ├── PolicySignatureError     a signed policy bundle is refused (unsigned, tampered, untrusted, older)
    │   └── PolicyValidationError    the policy document itself is invalid (also a ConfigValidationError)
    ├── ScenarioValidationError      a simulator scenario is invalid (a ConfigValidationError)
    └── AdmissionError               work was refused before it started; .reason, .rule_ids, .retry_after_s
        ├── BudgetExhausted          its deadline passed, or it cannot be met
        ├── Overloaded               queues are full; retry after .retry_after_s
        ├── NoEligibleReplica        no Serve replica satisfies the placement rules
        ├── NoEligibleNode           no Ray node satisfies the placement rules
        └── CircuitOpen              every replica the work may use is ejected by its circuit breaker;
                                     retry after .retry_after_s (when the first one half-opens)
    └── ReplicaFailed                the replica running admitted work died or became unreachable
                                     (``serve.call``): the call may or may not have run

``CircuitOpen`` is an ``AdmissionError`` (the router refuses the work before it starts, as for the
others), so ``except AdmissionError`` keeps catching every refusal. The Serve router raises it (HTTP:
503 with ``Retry-After``).

Errors cross Ray process boundaries (task and actor results, Serve handles), so each one pickles with
all of its fields (``__reduce__``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "AdmissionError",
    "AgenticRayError",
    "BudgetExhausted",
    "CircuitOpen",
    "ConfigValidationError",
    "EntitlementError",
    "NoEligibleNode",
    "NoEligibleReplica",
    "Overloaded",
    "PolicyError",
    "PolicySignatureError",
    "PolicyValidationError",
    "Problem",
    "ReplicaFailed",
    "ScenarioValidationError",
]


class AgenticRayError(Exception):
    """Base class of every error agentic-ray raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a configuration file.

    ``path`` is the dotted field path (``classes.critical.budget_ms``, ``rules[3].id``), ``reason`` says
    what is wrong, ``line`` is the 1-based YAML line when known, ``source`` the file name when known.
    """

    path: str
    reason: str
    line: int | None = None
    source: str | None = None

    def format(self) -> str:
        """``FILE:LINE: field.path: reason`` (file and line when known), as the CLI prints it."""
        where = self.source or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        path = self.path or "(document)"
        return f"{where}: {path}: {self.reason}"


class ConfigValidationError(AgenticRayError, ValueError):
    """A configuration document is invalid. ``problems`` holds every problem found, not only the first."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{len(self.problems)} problem(s) in {self.source or 'input'}"
        return head + "".join(f"\n  {p.format()}" for p in self.problems)

    def __reduce__(self):
        return (self.__class__, (self.problems, self.source))


class PolicyError(AgenticRayError):
    """A request does not fit the active policy: an unknown class, tenant or workflow, for example."""


class EntitlementError(PolicyError):
    """A request asks for more than its caller is entitled to, and the policy refuses it.

    ``entitlement`` names what was exceeded: ``class`` (a more important class than the caller may use),
    ``budget`` (a longer budget than the class or the caller allows) or ``residency`` (regulated data that
    no residency rule covers); ``holder`` is who asked (``tenant:NAME`` or ``anonymous``); ``requested``
    and ``allowed`` are the figures compared; ``rule`` is the policy path that decided
    (``tenants.acme.allowed_classes``, ``data_classes.pii.requires_residency``, ...). ``to_dict()`` is
    the body of the HTTP 403 the ingress answers with.
    """

    def __init__(self, entitlement: str, holder: str, requested: object, allowed: object, rule: str) -> None:
        self.entitlement = entitlement
        self.holder = holder
        self.requested = requested
        self.allowed = allowed
        self.rule = rule
        super().__init__(f"{holder} is not entitled to {entitlement} {requested!r} (allowed: {allowed!r}; rule {rule})")

    def to_dict(self) -> dict[str, object]:
        """JSON-able: ``{"error": "entitlement", "entitlement": ..., "holder", "requested", "allowed", "rule"}``."""
        return {
            "error": "entitlement",
            "entitlement": self.entitlement,
            "holder": self.holder,
            "requested": self.requested,
            "allowed": self.allowed,
            "rule": self.rule,
            "detail": str(self),
        }

    def __reduce__(self):
        return (self.__class__, (self.entitlement, self.holder, self.requested, self.allowed, self.rule))


class PolicySignatureError(PolicyError):
    """A signed policy bundle is refused; ``reason`` is machine-readable (``unsigned``, ``bad_signature``,
    ``untrusted_key``, ``older_version``, ``needs_two_signatures``, ``malformed``), the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self):
        return (self.__class__, (self.reason, self.detail))


class PolicyValidationError(ConfigValidationError, PolicyError):
    """The policy document is invalid; the last good policy stays active."""


class ScenarioValidationError(ConfigValidationError):
    """A simulator scenario file is invalid."""


class AdmissionError(AgenticRayError):
    """Work was refused before it started.

    ``reason`` is a short machine-readable cause (``deadline_passed``, ``queue_full``, ...), ``rule_ids``
    the policy rules involved, ``retry_after_s`` a hint for the caller (``None`` when retrying cannot
    help), ``detail`` a human sentence.
    """

    default_reason = "refused"

    def __init__(
        self,
        detail: str = "",
        *,
        reason: str | None = None,
        rule_ids: Sequence[str] = (),
        retry_after_s: float | None = None,
    ) -> None:
        self.detail = detail
        self.reason = reason or self.default_reason
        self.rule_ids: tuple[str, ...] = tuple(rule_ids)
        self.retry_after_s = retry_after_s
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [self.detail or self.reason]
        if self.detail and self.reason not in self.detail:
            parts.append(f"reason={self.reason}")
        if self.rule_ids:
            parts.append("rules=" + ",".join(self.rule_ids))
        if self.retry_after_s is not None:
            parts.append(f"retry_after_s={self.retry_after_s:.3g}")
        return " ".join(parts)

    def __reduce__(self):
        return (_rebuild_admission_error, (self.__class__, self.detail, self.reason, self.rule_ids, self.retry_after_s))


def _rebuild_admission_error(cls, detail, reason, rule_ids, retry_after_s):
    return cls(detail, reason=reason, rule_ids=rule_ids, retry_after_s=retry_after_s)


class BudgetExhausted(AdmissionError):
    """The work's deadline passed, or no placement can finish it before its deadline."""

    default_reason = "budget_exhausted"


class Overloaded(AdmissionError):
    """Queues are full; ``retry_after_s`` says when a retry may succeed."""

    default_reason = "overloaded"


class NoEligibleReplica(AdmissionError):
    """No Serve replica satisfies the request's placement rules (``rule_ids``)."""

    default_reason = "no_eligible_replica"


class NoEligibleNode(AdmissionError):
    """No Ray node satisfies the task's placement rules (``rule_ids``)."""

    default_reason = "no_eligible_node"


class CircuitOpen(AdmissionError):
    """Every replica the work may use is ejected by its circuit breaker; ``retry_after_s`` is when the
    first of them half-opens (a probe may go). ``target`` names what was refused (a deployment)."""

    default_reason = "circuit_open"

    def __init__(
        self,
        target: str = "",
        retry_after_s: float | None = None,
        *,
        detail: str = "",
        reason: str | None = None,
        rule_ids: Sequence[str] = (),
    ) -> None:
        self.target = target
        super().__init__(
            detail or f"circuit open for {target or 'every eligible replica'}",
            reason=reason,
            rule_ids=rule_ids,
            retry_after_s=retry_after_s,
        )

    def __reduce__(self):
        return (_rebuild_circuit_open, (self.target, self.retry_after_s, self.detail, self.reason, self.rule_ids))


def _rebuild_circuit_open(target, retry_after_s, detail, reason, rule_ids):
    return CircuitOpen(target, retry_after_s, detail=detail, reason=reason, rule_ids=rule_ids)


class ReplicaFailed(AgenticRayError):
    """The Serve replica running a call that had been admitted died or became unreachable before it
    answered (Ray's ``ActorDiedError`` / ``ActorUnavailableError``, raised as this by
    ``agentic_ray.serve.call``). The call may or may not have run: retry it only when it is idempotent,
    after ``retry_after_s`` (Serve replaces the replica; the router stops sending to it at once).
    ``cause`` names Ray's error."""

    def __init__(self, detail: str = "", cause: str = "", retry_after_s: float | None = None) -> None:
        self.detail = detail
        self.cause = cause
        self.reason = "replica_failed"
        self.retry_after_s = retry_after_s
        super().__init__(detail or f"the replica running the call failed ({cause or 'unknown'})")

    def __reduce__(self):
        return (self.__class__, (self.detail, self.cause, self.retry_after_s))
