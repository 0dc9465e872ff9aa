"""HTTP caller identity (``serve._http_auth``), the refusal statuses (``http_direct.refusal``) and the
process binding (``agentic_ray._identity``), by calling them: no Ray."""

from __future__ import annotations

import pickle

import pytest

from agentic_ray import _identity
from agentic_ray.errors import EntitlementError, PolicyValidationError
from agentic_ray.policies import RequestMeta, parse_policy
from agentic_ray.serve._http_auth import AuthError, HttpAuth, hash_api_key, key_line, load_api_keys, new_api_key
from agentic_ray.serve._http_direct import identify, refusal
from agentic_ray.serve._meta import HeaderError

KEY_A, KEY_B = "ark_key-of-acme", "ark_key-of-umbrella"
TABLE = {hash_api_key(KEY_A): "acme", hash_api_key(KEY_B): "umbrella"}

POLICY = """
apiVersion: agentic-ray/v1
kind: Policy
metadata: {name: identity-test}
default_class: standard
classes:
  critical: {priority: 0, budget_ms: 100, shedding: never}
  standard: {priority: 1, budget_ms: 500}
  sheddable: {priority: 2, budget_ms: 2000, shedding: first}
tenants:
  acme: {region: eu-west, class: critical}
  umbrella: {region: eu-west, class: sheddable}
  gateway: {region: eu-west, class: standard, act_for: [umbrella]}
"""


def test_keys_file_env_and_mapping_load_the_same_table(tmp_path, monkeypatch):
    text = f"# keys\n{key_line(KEY_A, 'acme')}\n\n{key_line(KEY_B, 'umbrella')}  # ops\n"
    path = tmp_path / "keys.txt"
    path.write_text(text)
    monkeypatch.setenv("AGR_KEYS", text)
    assert load_api_keys(path) == load_api_keys("env:AGR_KEYS") == load_api_keys(TABLE) == TABLE


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("sha256:abc acme\n", "line 1"),  # not 64 hex digits
        (f"{hash_api_key('k')}\n", "line 1"),  # no tenant
        (f"\n{hash_api_key('k')} two words\n", "line 2"),
        (f"{hash_api_key('k')} bad/name\n", "not a tenant name"),
        (f"{hash_api_key('k')} a\n{hash_api_key('k')} b\n", "two tenants"),
    ],
)
def test_a_malformed_keys_file_is_refused_naming_the_line(tmp_path, text, needle):
    path = tmp_path / "keys.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match="api_keys") as err:
        load_api_keys(path)
    assert needle in str(err.value)


def test_missing_sources_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("AGR_NO_SUCH", raising=False)
    with pytest.raises(ValueError, match="AGR_NO_SUCH is not set"):
        load_api_keys("env:AGR_NO_SUCH")
    with pytest.raises(ValueError, match="cannot read"):
        load_api_keys(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="trust_tenant_header"):
        HttpAuth.of(TABLE, trust_tenant_header=True)
    with pytest.raises(ValueError, match="trust_tenant_header"):
        HttpAuth.of(None, trust_tenant_header="yes")


def test_api_keys_name_the_tenant_and_refuse_everything_else():
    auth = HttpAuth.of(TABLE)
    assert auth.tenant({"authorization": f"Bearer {KEY_A}"}) == "acme"
    assert auth.tenant({"x-api-key": KEY_B}) == "umbrella"
    assert auth.tenant({"authorization": f"bearer {KEY_A}", "x-tenant": "acme"}) == "acme"  # agreeing header
    for headers in ({}, {"authorization": "Basic Zm9vOmJhcg=="}, {"authorization": "Bearer "}, {"x-api-key": " "}):
        with pytest.raises(AuthError) as err:
            auth.tenant(headers)
        assert err.value.status == 401 and err.value.body["error"] == "unauthorized"
        assert err.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(AuthError) as err:
        auth.tenant({"x-api-key": "ark_guessed"})
    assert err.value.status == 401 and "unknown API key" in err.value.body["detail"]
    with pytest.raises(AuthError) as err:
        auth.tenant({"x-api-key": KEY_B, "x-tenant": "acme"})  # umbrella's key claiming acme
    assert err.value.status == 403 and err.value.body["error"] == "tenant_mismatch"


def test_without_keys_the_tenant_header_is_refused_unless_a_gateway_is_trusted():
    default = HttpAuth.of()
    assert default.tenant({}) is None  # anonymous
    with pytest.raises(AuthError) as err:
        default.tenant({"x-tenant": "acme"})
    assert err.value.status == 403 and err.value.body["error"] == "tenant_not_trusted"
    assert HttpAuth.of(trust_tenant_header=True).tenant({"x-tenant": "acme"}) == "acme"


def test_identify_replaces_the_claimed_tenant_and_config_travels_as_hashes_only():
    auth = HttpAuth.of(TABLE)
    meta = {"tenant": "ignored", "qos": "critical"}
    identify(auth, {"x-api-key": KEY_A}, meta)
    assert meta == {"tenant": "acme", "qos": "critical"}
    meta = {"tenant": "x"}
    identify(HttpAuth.of(trust_tenant_header=True), {}, meta)
    assert meta == {}
    config = auth.to_config()
    assert KEY_A not in repr(config) and HttpAuth.from_config(config) == auth
    assert HttpAuth.from_config(None) == HttpAuth()
    copy = pickle.loads(pickle.dumps(AuthError(401, "unauthorized", "x")))
    assert (copy.status, copy.body) == (401, {"error": "unauthorized", "detail": "x"})


def test_refusal_statuses():
    policy = parse_policy(POLICY)
    with pytest.raises(EntitlementError) as err:
        policy.classify(RequestMeta(tenant="umbrella", qos="critical"), 0.0)
    status, headers, body = refusal(err.value)
    assert status == 403 and body["error"] == "entitlement" and body["entitlement"] == "class"
    assert body["holder"] == "tenant:umbrella" and body["rule"]
    status, headers, body = refusal(AuthError(401, "unauthorized", "no key"))
    assert status == 401 and "WWW-Authenticate" in headers
    status, _, body = refusal(HeaderError("x-budget-ms", "not a number"))
    assert status == 400 and body["header"] == "x-budget-ms"


def test_new_keys_are_long_and_distinct():
    keys = {new_api_key() for _ in range(50)}
    assert len(keys) == 50 and all(len(k) >= 40 for k in keys)


@pytest.fixture
def unbound(monkeypatch):
    monkeypatch.delenv(_identity.ENV, raising=False)
    _identity.bind(None)
    yield
    _identity.bind(None)


def test_a_bound_process_runs_as_its_tenant_and_acts_only_for_those_listed(unbound):
    policy = parse_policy(POLICY)
    assert _identity.resolve_tenant(policy, "acme") == "acme"  # unbound: as named
    assert _identity.resolve_tenant(policy, None) is None
    _identity.bind("gateway")
    assert _identity.resolve_tenant(policy, None) == "gateway"
    assert _identity.resolve_tenant(policy, "gateway") == "gateway"
    assert _identity.resolve_tenant(policy, "umbrella") == "umbrella"  # act_for
    with pytest.raises(EntitlementError) as err:
        _identity.resolve_tenant(policy, "acme")
    assert err.value.entitlement == "tenant" and err.value.rule == "tenants.gateway.act_for"
    assert err.value.allowed == ["gateway", "umbrella"]
    _identity.bind("acme")
    with pytest.raises(EntitlementError):
        _identity.resolve_tenant(policy, "umbrella")


def test_run_as_writes_the_bound_tenant_into_a_calls_metadata_and_leaves_an_unbound_one(unbound):
    policy = parse_policy(POLICY)
    meta = {"qos": "critical", "tenant": "acme"}
    _identity.run_as(policy, meta)
    assert meta == {"qos": "critical", "tenant": "acme"}  # unbound: as named
    _identity.bind("gateway")
    meta = {"qos": "critical"}
    _identity.run_as(policy, meta)
    assert meta == {"qos": "critical", "tenant": "gateway"}
    with pytest.raises(EntitlementError):
        _identity.run_as(policy, {"tenant": "acme"})


def test_the_job_environment_binds_and_cannot_be_contradicted(unbound, monkeypatch):
    monkeypatch.setenv(_identity.ENV, "acme")
    assert _identity.bind(None) == "acme" == _identity.bound()
    assert _identity.bind("acme") == "acme"
    with pytest.raises(ValueError, match="contradicts AGENTIC_TENANT"):
        _identity.bind("umbrella")


def test_act_for_must_name_defined_tenants():
    with pytest.raises(PolicyValidationError, match="act_for"):
        parse_policy(POLICY.replace("act_for: [umbrella]", "act_for: [nobody]"))
