"""The YAML policy format (``apiVersion: agentic-ray/v1``, ``kind: Policy``) as pydantic v2 models.

Every model forbids unknown keys (``extra="forbid"``) and is frozen. Numbers are strict (``"100"`` is
not a budget) and budgets must be finite and > 0. This module checks the *shape* of each field only;
cross-references (a workflow naming an undefined class, stage budgets that overflow the workflow budget,
contradictory placement rules) are checked in ``semantics.py`` so that every problem is reported at once.

Document layout (see ``examples/policies/platform.yaml``)::

    apiVersion: agentic-ray/v1
    kind: Policy
    metadata: {name, version?, description?}
    default_class: standard
    classes:   {NAME: {priority, budget_ms, shedding, max_queue_wait_ms?, hedge_after_ms?, max_budget_ms?,
                       ttft_ms?, tpot_ms?}}
    tenants:   {NAME: {region, share?, class?, allowed_classes?, max_budget_ms?, on_excess?}}
    entitlements: {on_excess: refuse|clamp, anonymous: {allowed_classes?, max_budget_ms?}}
    data_classes: {NAME: {requires_residency}}
    workflows: {NAME: {class?, budget_ms?, stages: [{name, share | budget_ms}]}}
    rules:     [{id, description?, match: {...}, require: {...}, prefer: {...}}]
    admission: {classes: {NAME: {queue_bound?, shed_threshold?}}, breaker: {...}, retry: {...}}
    costs:     {ACCELERATOR: cost per replica-second}   (e.g. {cpu: 1, gpu: 3}; ranks replicas, prices runs)
    actions:   {dry_run?, rules: [{id, description?, when: {alert, class?, workflow?, stage?, deployment?, zone?},
                                   do, factor?, classes?, hold_s?, restore_step?, restore_every_s?, weight?,
                                   drift_ratio?, replicas?, max_replicas?, resources?}]}

A rule ``match`` field takes one value or a list (any of them matches); ``model`` and ``tenant_region``
are shell globs (``fnmatch``), the others exact names. An absent field matches everything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

__all__ = [
    "ACTION_KINDS",
    "ALERT_KINDS",
    "ActionRuleSpec",
    "ActionsSpec",
    "AlertMatchSpec",
    "AnonymousSpec",
    "DataClassSpec",
    "EntitlementsSpec",
    "AdmissionClassSpec",
    "AdmissionSpec",
    "BreakerSpec",
    "ClassSpec",
    "MatchSpec",
    "MetadataSpec",
    "NodeSelectorSpec",
    "PolicySpec",
    "RetrySpec",
    "RuleSpec",
    "StageSpec",
    "TenantSpec",
    "WorkflowSpec",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
PositiveMs = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]


def _one_or_many(value: Any) -> Any:
    """``"a"`` -> ``["a"]``; lists stay lists (so the field path of an item stays ``field[i]``)."""
    return [value] if isinstance(value, str) else value


NameList = Annotated[tuple[Name, ...], BeforeValidator(_one_or_many), Field(min_length=1)]
PatternList = Annotated[
    tuple[Annotated[str, Field(min_length=1, max_length=256)], ...],
    BeforeValidator(_one_or_many),
    Field(min_length=1),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MetadataSpec(_Model):
    name: Name
    version: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    description: str | None = None


class ClassSpec(_Model):
    """A QoS class. Lower ``priority`` runs first. ``ttft_ms`` / ``tpot_ms``: token budgets of the class's
    LLM streams (time to first token; time per output token after the first), beside ``budget_ms``, the
    budget of the whole stream."""

    priority: Annotated[int, Strict(), Field(ge=0, le=1000)]
    budget_ms: PositiveMs
    shedding: Literal["never", "when_overloaded", "first"] = "when_overloaded"
    max_queue_wait_ms: PositiveMs | None = None
    hedge_after_ms: PositiveMs | None = None
    max_budget_ms: PositiveMs | None = None  # a request of this class may ask for up to this (else: shorten only)
    ttft_ms: PositiveMs | None = None  # LLM streams: time to first token
    tpot_ms: PositiveMs | None = None  # LLM streams: time per output token after the first
    description: str | None = None


OnExcess = Literal["refuse", "clamp"]


class TenantSpec(_Model):
    region: Name
    share: Fraction | None = None
    qos_class: Name | None = Field(default=None, alias="class")
    allowed_classes: NameList | None = None  # default: ``class`` (else default_class) and every less important
    max_budget_ms: PositiveMs | None = None
    on_excess: OnExcess | None = None  # default: entitlements.on_excess
    act_for: NameList | None = None  # other tenants a process bound to this one may submit for
    description: str | None = None


class AnonymousSpec(_Model):
    """What a request that names no tenant may ask for (default: the default class and less important)."""

    allowed_classes: NameList | None = None
    max_budget_ms: PositiveMs | None = None


class EntitlementsSpec(_Model):
    on_excess: OnExcess = "refuse"
    anonymous: AnonymousSpec = AnonymousSpec()


class DataClassSpec(_Model):
    """A data class: with ``requires_residency``, a request of it that no residency rule covers is refused."""

    requires_residency: Annotated[bool, Strict()] = False
    description: str | None = None


class StageSpec(_Model):
    """One stage of a workflow: exactly one of ``share`` (of the workflow budget) or ``budget_ms``."""

    name: Name
    share: Fraction | None = None
    budget_ms: PositiveMs | None = None


class WorkflowSpec(_Model):
    qos_class: Name | None = Field(default=None, alias="class")
    budget_ms: PositiveMs | None = None
    stages: tuple[StageSpec, ...] = ()
    description: str | None = None


class MatchSpec(_Model):
    """Request attributes a rule matches on; every given field must match."""

    tenant: NameList | None = None
    tenant_region: PatternList | None = None
    data_class: NameList | None = None
    model: PatternList | None = None
    workflow: NameList | None = None
    qos_class: NameList | None = Field(default=None, alias="class")


class NodeSelectorSpec(_Model):
    """Node/replica attributes a rule requires or prefers; each given field is one part."""

    zone_prefix: PatternList | None = None
    zones: NameList | None = None
    accelerators: NameList | None = None
    labels: dict[Annotated[str, Field(min_length=1)], NameList] | None = None


class RuleSpec(_Model):
    id: Name
    description: str | None = None
    match: MatchSpec = MatchSpec()
    require: NodeSelectorSpec = NodeSelectorSpec()
    prefer: NodeSelectorSpec = NodeSelectorSpec()


class AdmissionClassSpec(_Model):
    queue_bound: Annotated[int, Strict(), Field(ge=1)] | None = None
    shed_threshold: Fraction | None = None


class BreakerSpec(_Model):
    consecutive_failures: Annotated[int, Strict(), Field(ge=1)] = 5
    ejection_s: PositiveMs = 5.0
    max_ejection_s: PositiveMs = 300.0
    max_ejected_fraction: Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    latency_outlier_factor: Annotated[float, Strict(), Field(gt=1, allow_inf_nan=False)] | None = None


class RetrySpec(_Model):
    ratio: Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)] = 0.1
    min_per_s: NonNegativeFloat = 5.0
    max_attempts: Annotated[int, Strict(), Field(ge=1, le=100)] = 3


class AdmissionSpec(_Model):
    classes: dict[Name, AdmissionClassSpec] = Field(default_factory=dict)
    breaker: BreakerSpec = BreakerSpec()
    retry: RetrySpec = RetrySpec()


ALERT_KINDS = ("burn_rate", "p99_over_budget")
"""The alerts an ``actions`` rule can answer (``control.DriftDetector``'s kinds)."""

ACTION_KINDS = ("tighten_admission", "avoid_replica", "avoid_node", "scale_out", "notify")
"""The fixed vocabulary of actions (``control._actions`` decides them, the GlobalCoordinator runs them)."""

DEPLOYMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}/[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class AlertMatchSpec(_Model):
    """Which alerts a rule answers: the alert kind, narrowed by class, workflow (and stage) or Serve
    deployment (``APP/DEPLOYMENT``); ``zone`` narrows the nodes and replicas the action touches."""

    alert: Literal["burn_rate", "p99_over_budget"]
    qos_class: Name | None = Field(default=None, alias="class")
    workflow: Name | None = None
    stage: Name | None = None
    deployment: Annotated[str, Field(pattern=DEPLOYMENT_PATTERN)] | None = None
    zone: Name | None = None


class ActionRuleSpec(_Model):
    """One rule of ``actions``: when an alert matching ``when`` is active, do ``do``. Which parameters
    belong to which action (and their defaults) is in ``agentic_ray.policies.actions``."""

    id: Name
    description: str | None = None
    when: AlertMatchSpec
    do: Literal["tighten_admission", "avoid_replica", "avoid_node", "scale_out", "notify"]
    factor: Fraction | None = None
    classes: NameList | None = None
    hold_s: PositiveMs | None = None
    restore_step: Fraction | None = None
    restore_every_s: PositiveMs | None = None
    weight: Annotated[float, Strict(), Field(ge=0, lt=1, allow_inf_nan=False)] | None = None
    drift_ratio: Annotated[float, Strict(), Field(gt=1, allow_inf_nan=False)] | None = None
    replicas: Annotated[int, Strict(), Field(ge=1, le=1000)] | None = None
    max_replicas: Annotated[int, Strict(), Field(ge=1, le=10000)] | None = None
    resources: dict[Annotated[str, Field(min_length=1)], PositiveMs] | None = None


class ActionsSpec(_Model):
    """The ``actions`` section: rules from alerts to actions, and ``dry_run`` (log what would be done,
    do nothing)."""

    dry_run: Annotated[bool, Strict()] = False
    rules: tuple[ActionRuleSpec, ...] = ()


class PolicySpec(_Model):
    """The whole policy document."""

    api_version: Literal["agentic-ray/v1"] = Field(alias="apiVersion")
    kind: Literal["Policy"]
    metadata: MetadataSpec
    default_class: Name
    classes: dict[Name, ClassSpec] = Field(min_length=1)
    tenants: dict[Name, TenantSpec] = Field(default_factory=dict)
    workflows: dict[Name, WorkflowSpec] = Field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = ()
    admission: AdmissionSpec = AdmissionSpec()
    entitlements: EntitlementsSpec = EntitlementsSpec()
    data_classes: dict[Name, DataClassSpec] = Field(default_factory=dict)
    costs: dict[Name, NonNegativeFloat] = Field(default_factory=dict)
    actions: ActionsSpec | None = None


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the policy document, with YAML key names."""
    schema = PolicySpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agentic-ray Policy (agentic-ray/v1)"
    return schema
