"""API keys for the REST service: create, list, revoke, authenticate.

A token looks like ``flk_<id>_<secret>``; only the SHA-256 of the whole token is stored, so a leaked database
does not leak usable keys. Unsalted is enough: the secret is 256 random bits, which no guessing reaches. These
functions work inside a store transaction; the gallery layer wraps create and revoke with their audit entries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from faceledger.ledger.errors import AccessDenied, TamperedRecordError, UnknownSubjectError
from faceledger.ledger.records import ROLES, ApiKey, Role
from faceledger.ledger.store import Transaction

TOKEN_PREFIX = "flk_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_api_key(tx: Transaction, *, owner: str, role: str, created_by: str, now: str) -> tuple[ApiKey, str]:
    """Create a key; returns the record and the token (shown once, never stored)."""
    checked = role_of(role)
    if not owner.strip():
        raise ValueError("owner must name the person or system the key is for")
    key_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        id=key_id,
        owner=owner,
        role=checked,
        secret_sha256=_digest(token),
        created_at=now,
        created_by=created_by,
        revoked_at=None,
    )
    tx.add_api_key(record)
    return record, token


def role_of(role: str) -> Role:
    """Check a role name and return it typed."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def list_api_keys(tx: Transaction) -> list[ApiKey]:
    """All keys, revoked ones included."""
    return tx.list_api_keys()


def revoke_api_key(tx: Transaction, key_id: str, *, now: str) -> ApiKey:
    """Revoke a key (idempotent); raises :class:`UnknownSubjectError` for an unknown id."""
    key = tx.get_api_key(key_id)
    if key is None:
        raise UnknownSubjectError(f"no API key {key_id!r}")
    tx.revoke_api_key(key_id, now)
    updated = tx.get_api_key(key_id)
    assert updated is not None
    return updated


def authenticate(tx: Transaction, token: str) -> ApiKey:
    """The active key a token belongs to.

    Raises :class:`AccessDenied` for a malformed, unknown or revoked token.
    """
    if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
        raise AccessDenied("malformed API key")
    key_id = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
    try:
        key = tx.get_api_key(key_id)
    except TamperedRecordError as exc:  # changed, or inserted, outside faceledger
        raise AccessDenied(f"API key {key_id} is refused: {exc}") from None
    if key is None or not hmac.compare_digest(key.secret_sha256, _digest(token)):
        raise AccessDenied("unknown API key")
    if key.revoked_at is not None:
        raise AccessDenied(f"API key {key.id} was revoked at {key.revoked_at}")
    return key
