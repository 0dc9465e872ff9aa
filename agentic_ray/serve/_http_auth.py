"""Who is calling over HTTP: API keys that name a tenant, or a tenant header from a trusted gateway.

Entitlements (``policies.entitlements``) decide what a tenant may ask for; they are worth nothing if any
caller can claim any tenant. An HTTP entry of agentic-ray (the direct entry, ``http_direct``, and the
``AgenticIngress``) therefore establishes the tenant itself, in one of three modes:

- **API keys** (``api_keys=``): every request carries a key, as ``Authorization: Bearer KEY`` or
  ``X-Api-Key: KEY``. Keys are stored only as SHA-256 hashes, each mapped to a tenant; a missing or
  unknown key is **401** (``WWW-Authenticate: Bearer``), and an ``x-tenant`` header that names another
  tenant than the key's is **403**. The request's tenant is the key's.
- **Trusted tenant header** (``trust_tenant_header=True``): behind a gateway that authenticates callers
  and sets ``x-tenant`` itself, the header is taken as sent. Only when the operator says so.
- **Neither** (the default): no caller is identified, every request is anonymous (the policy's
  ``entitlements.anonymous``), and a request that sends ``x-tenant`` is **403**, so a caller never
  believes it got a tenant's entitlements when it did not.

Keys are random strings of 32 bytes (``new_api_key``), long enough that an unsalted SHA-256 is safe to
store and to look up by (the practice of GitHub's and Stripe's API tokens; OWASP's password-storage advice
is for low-entropy secrets). The table of hashes travels with the deployment's configuration, so every
proxy and replica on the cluster checks keys without reading a file: ``load_api_keys`` reads it in the
driver from a file (``PATH``), an environment variable (``"env:NAME"``) or a mapping.

File format, one key per line, ``#`` comments and blank lines ignored::

    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 bank-eu

``agentic-ray apikey create --tenant bank-eu --keys-file keys.txt`` makes a key, prints it once and adds
its line. This module imports neither Ray nor asyncio.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AuthError", "HttpAuth", "hash_api_key", "key_line", "load_api_keys", "new_api_key"]

_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class AuthError(Exception):
    """An HTTP request refused for who it is: ``status`` 401 (no or unknown key) or 403 (a tenant it may
    not claim), a JSON ``body`` and response ``headers``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"error": error, "detail": detail}
        self.headers = {"WWW-Authenticate": 'Bearer realm="agentic-ray"'} if status == 401 else {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (AuthError, (self.status, self.body["error"], self.body["detail"]))


def new_api_key() -> str:
    """A new random API key (32 bytes, URL-safe text)."""
    return "ark_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The stored form of ``key``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_line(key: str, tenant: str) -> str:
    """The keys-file line of ``key`` for ``tenant`` (``ValueError`` for a tenant name that cannot be one)."""
    _check_tenant(tenant, "tenant")
    return f"{hash_api_key(key)} {tenant}"


def _check_tenant(tenant: str, where: str) -> None:
    if not _TENANT.match(tenant):
        raise ValueError(f"{where}: {tenant!r} is not a tenant name (letters, digits, '_.:-', up to 128)")


def _parse_lines(text: str, source: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not _HASH.match(parts[0]):
            raise ValueError(f"api_keys: {source} line {n}: expected 'sha256:<64 hex digits> TENANT'")
        _check_tenant(parts[1], f"api_keys: {source} line {n}")
        if parts[0] in table and table[parts[0]] != parts[1]:
            raise ValueError(f"api_keys: {source} line {n}: the same key is listed for two tenants")
        table[parts[0]] = parts[1]
    return table


def load_api_keys(source: str | os.PathLike[str] | Mapping[str, str]) -> dict[str, str]:
    """The key table (``sha256:<hex>`` -> tenant) from a keys file path, ``"env:NAME"`` (the variable holds
    the file's text) or a mapping already in that form. ``ValueError`` naming the source and line for
    anything else (a file that cannot be read, a malformed line, an unset variable)."""
    if isinstance(source, Mapping):
        return _parse_lines("\n".join(f"{h} {t}" for h, t in source.items()), "mapping")
    text_source = os.fspath(source)
    if text_source.startswith("env:"):
        name = text_source[4:]
        value = os.environ.get(name)
        if value is None:
            raise ValueError(f"api_keys: environment variable {name} is not set")
        return _parse_lines(value, f"${name}")
    try:
        text = Path(text_source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"api_keys: cannot read {text_source}: {exc.strerror or exc}") from None
    return _parse_lines(text, text_source)


@dataclass(frozen=True, slots=True)
class HttpAuth:
    """How an HTTP entry identifies callers (module docstring). ``keys``: hash -> tenant, or ``None`` for
    no API keys; ``trust_tenant_header``: take ``x-tenant`` as sent (a trusted gateway sets it)."""

    keys: Mapping[str, str] | None = None
    trust_tenant_header: bool = False

    def __post_init__(self) -> None:
        if self.keys is not None and self.trust_tenant_header:
            raise ValueError("trust_tenant_header: not with api_keys (the key names the tenant)")
        if self.keys is not None:
            object.__setattr__(self, "keys", dict(self.keys))  # a copy (and picklable, unlike a proxy)

    @classmethod
    def of(cls, api_keys: Any = None, trust_tenant_header: bool = False) -> HttpAuth:
        """From a deployment's options: ``api_keys`` as ``load_api_keys`` takes it (or ``None``)."""
        if not isinstance(trust_tenant_header, bool):
            raise ValueError(f"trust_tenant_header: must be True or False, got {trust_tenant_header!r}")
        keys = load_api_keys(api_keys) if api_keys is not None else None
        return cls(keys, trust_tenant_header)

    def to_config(self) -> dict[str, Any]:
        """Plain data for the router's and replicas' configuration (hashes only, never keys)."""
        return {
            "keys": dict(self.keys) if self.keys is not None else None,
            "trust_tenant_header": self.trust_tenant_header,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> HttpAuth:
        if not config:
            return cls()
        return cls(config.get("keys"), bool(config.get("trust_tenant_header", False)))

    def tenant(self, headers: Mapping[str, str]) -> str | None:
        """The caller's tenant from lower-case ``headers`` (``None``: anonymous), or ``AuthError``."""
        claimed = headers.get("x-tenant") or None
        if self.keys is None:
            if claimed is None or self.trust_tenant_header:
                return claimed
            raise AuthError(403, "tenant_not_trusted", "x-tenant is not accepted here: this endpoint identifies "
                            "callers by API key (api_keys=) or trusts a gateway's header (trust_tenant_header=True)"
                            "; neither is configured, so every caller is anonymous")  # fmt: skip
        key = _presented_key(headers)
        if key is None:
            raise AuthError(401, "unauthorized", "an API key is required (Authorization: Bearer KEY or X-Api-Key)")
        tenant = self.keys.get(hash_api_key(key))
        if tenant is None:
            raise AuthError(401, "unauthorized", "unknown API key")
        if claimed is not None and claimed != tenant:
            raise AuthError(403, "tenant_mismatch", f"x-tenant {claimed!r} contradicts the API key's tenant")
        return tenant


def _presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None
