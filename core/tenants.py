"""Tenants: the validated tenant id, the one path function, API keys.

Every lake, spool and report path that involves a tenant is built by
``tenant_partition`` from an id that passed ``validate_tenant_id``; nothing
else formats ``tenant_id=...`` into a path.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from erp.core.errors import TenantError

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_TENANT_RE = re.compile(TENANT_ID_PATTERN)

#: Partition used for rejected lines whose tenant is missing or invalid. It can
#: never collide with a real tenant: valid ids cannot start with "_".
INVALID_TENANT_BUCKET = "_invalid"

PLAN_TIERS = ("free", "pro", "enterprise")


def is_valid_tenant_id(value: object) -> bool:
    return isinstance(value, str) and _TENANT_RE.fullmatch(value) is not None


def validate_tenant_id(value: object) -> str:
    """Return ``value`` if it is a valid tenant id, else raise ``TenantError``."""
    if not is_valid_tenant_id(value):
        shown = repr(value)[:80]
        raise TenantError(
            f"invalid tenant id {shown}",
            tenant=str(value)[:80],
            hint=f"tenant ids match {TENANT_ID_PATTERN}: lowercase letters, digits, "
                 "'_' and '-', starting with a letter or digit, at most 63 characters",
        )
    return value  # type: ignore[return-value]


def tenant_partition(tenant_id: str) -> str:
    """The Hive partition segment for a tenant: ``tenant_id=<id>``.

    The single place where a tenant id becomes part of a path. The id is
    validated again here so that no caller can build a path from an
    unvalidated value (``../``, ``/``, NUL, uppercase, ...).
    """
    if tenant_id != INVALID_TENANT_BUCKET:
        validate_tenant_id(tenant_id)
    return f"tenant_id={tenant_id}"


# --- API keys -----------------------------------------------------------------

KEY_PREFIX = "erp_"


def generate_api_key() -> str:
    """A new random API key (shown once; only its hash is stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The stored form of an API key: ``sha256:<hex>``.

    Keys are 256-bit random values, so a fast unsalted hash is safe here (no
    dictionary to attack) and lets the collector look keys up in O(1).
    """
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    hash: str


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str = ""
    plan_tier: str = "free"
    storage_quota: int | None = None  # bytes; None = unlimited
    retention_days: int | None = None  # None = keep forever
    timezone: str = "UTC"
    anonymize_ip: bool = True
    api_keys: tuple[ApiKey, ...] = field(default_factory=tuple)

    def key_matches(self, key: str) -> bool:
        wanted = hash_api_key(key)
        return any(hmac.compare_digest(wanted, k.hash) for k in self.api_keys)
