"""Accounts: the people who sign in to the web UI, and their sessions.

A person signs in with a user account (name and password, hashed with argon2id, a memory-hard function) or with
an API key token. Either way the session gets one of the five roles of the API, read again from the account or
key at every request, so disabling an account or revoking a key takes effect at once. The session cookie is a
random 256-bit token of which only the SHA-256 is stored; each session has its own CSRF token.

Sign-ins, sign-outs and failed attempts are audit entries: who tried, why it failed, from which address.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from faceledger.gallery.context import GalleryContext, accountable
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.apikeys import authenticate, role_of
from faceledger.ledger.errors import AccessDenied, DuplicateError, TamperedRecordError, UnknownSubjectError
from faceledger.ledger.records import Role, UserAccount, WebSession
from faceledger.ledger.timeutil import to_text

USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
MIN_PASSWORD = 12
DEFAULT_SESSION_HOURS = 8.0
_HASHER = PasswordHasher()  # argon2id, 64 MiB, 3 passes: the library's defaults (RFC 9106's second choice)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the name is unknown, so an unknown name costs as long as a wrong password."""
    return _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class WebPrincipal:
    """Who a web session belongs to: the actor named on the ledger, the role, and the session's CSRF token."""

    actor: str
    role: Role
    kind: Literal["user", "key"]
    key_id: str | None
    csrf: str
    expires_at: str


@dataclass(frozen=True)
class SignIn:
    """A new session: ``token`` goes into the cookie (shown once, never stored)."""

    token: str
    principal: WebPrincipal
    audit_seq: int


_Found = tuple[str, Role, Literal["user", "key"], str | None]  # actor, role, kind, API key id


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_user_name(name: str) -> str:
    """A valid account name, or ValueError saying what is allowed."""
    if not re.match(USER_NAME_PATTERN, name or ""):
        raise ValueError(
            f"user name {name!r} is not valid: 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter "
            "or digit"
        )
    return name


def check_password(password: str) -> str:
    """A password long enough to resist guessing, or ValueError."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters (got {len(password)})")
    return password


def add_user(
    ctx: GalleryContext, name: str, *, role: str, password: str, actor: str, purpose: str = "administration"
) -> UserAccount:
    """Create a web UI account (an audit entry names it and its role, never the password)."""
    actor, purpose = accountable(actor, purpose)
    check_user_name(name)
    user = UserAccount(name, role_of(role), _HASHER.hash(check_password(password)), to_text(ctx.now()), actor, None)
    with ctx.write() as tx:
        if tx.get_user(name) is not None:
            raise DuplicateError(f"a user named {name!r} exists already")
        tx.add_user(user)
        ctx.record(
            tx,
            AuditAction.USER_ADD,
            actor=actor,
            purpose=purpose,
            at=user.created_at,
            details={"user": name, "role": role},
        )
    return user


def disable_user(ctx: GalleryContext, name: str, *, actor: str, purpose: str = "administration") -> UserAccount:
    """Disable an account and end its sessions (idempotent; an audit entry)."""
    actor, purpose = accountable(actor, purpose)
    now = to_text(ctx.now())
    with ctx.write() as tx:
        user = tx.get_user(name)
        if user is None:
            raise UnknownSubjectError(f"no user {name!r}")
        if user.disabled_at is None:
            tx.update_user(name, disabled_at=now)
            ended = tx.end_web_sessions(now, user_name=name)
            ctx.record(
                tx,
                AuditAction.USER_DISABLE,
                actor=actor,
                purpose=purpose,
                at=now,
                details={"user": name, "sessions_ended": ended},
            )
        updated = tx.get_user(name)
    assert updated is not None
    return updated


def users(ctx: GalleryContext) -> list[UserAccount]:
    """Every account, by name (no secrets in the records' JSON form)."""
    with ctx.store.read() as tx:
        return tx.list_users()


def sign_in(
    ctx: GalleryContext,
    *,
    address: str,
    name: str | None = None,
    password: str | None = None,
    token: str | None = None,
    hours: float = DEFAULT_SESSION_HOURS,
) -> SignIn:
    """Open a session for a name and password, or for an API key token.

    A failure raises :class:`AccessDenied` with a message that does not say whether the name exists; the audit
    entry records the reason.
    """
    if token:
        principal_fields, failure = _by_token(ctx, token.strip())
        tried = "api key"
    else:
        principal_fields, failure = _by_password(ctx, (name or "").strip(), password or "")
        tried = (name or "").strip()
    now_dt = ctx.now()
    now = to_text(now_dt)
    if principal_fields is None:
        signin_failed(ctx, tried=tried, reason=failure, address=address)
        raise AccessDenied("sign-in failed: check the name and password, or the API key")
    actor, role, kind, key_id = principal_fields
    session_token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = to_text(now_dt + timedelta(hours=hours))
    with ctx.write() as tx:
        tx.delete_web_sessions_before(to_text(now_dt - timedelta(days=1)))
        tx.add_web_session(
            WebSession(_digest(session_token), actor if kind == "user" else None, key_id, csrf, now, expires, None)
        )
        entry = ctx.record(
            tx,
            AuditAction.SIGNIN,
            actor=actor,
            purpose="web sign-in",
            at=now,
            details={"kind": kind, "role": role, "key_id": key_id, "address": address, "expires_at": expires},
        )
    return SignIn(session_token, WebPrincipal(actor, role, kind, key_id, csrf, expires), entry.seq)


def _by_password(ctx: GalleryContext, name: str, password: str) -> tuple[_Found | None, str]:
    try:
        with ctx.store.read() as tx:
            user = tx.get_user(name) if re.match(USER_NAME_PATTERN, name) else None
    except TamperedRecordError:  # changed or inserted outside faceledger: never signs in (readiness names it)
        return None, "account does not match the ledger"
    try:
        _HASHER.verify(user.password_hash if user is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None, "unknown user" if user is None else "wrong password"
    if user is None:
        return None, "unknown user"
    if user.disabled_at is not None:
        return None, "account disabled"
    return (user.name, user.role, "user", None), ""


def _by_token(ctx: GalleryContext, token: str) -> tuple[_Found | None, str]:
    try:
        with ctx.store.read() as tx:
            key = authenticate(tx, token)
    except AccessDenied as exc:
        return None, str(exc)
    return (key.owner, key.role, "key", key.id), ""


def signin_failed(ctx: GalleryContext, *, tried: str, reason: str, address: str) -> None:
    """Record a failed or refused sign-in attempt (also used for attempts over the rate limit)."""
    shown = tried if re.match(USER_NAME_PATTERN, tried) or tried == "api key" else "<not a valid user name>"
    with ctx.write() as tx:
        ctx.record(
            tx,
            AuditAction.SIGNIN_FAILED,
            actor=shown,
            purpose="web sign-in",
            details={"reason": reason, "address": address},
        )


def session_principal(ctx: GalleryContext, token: str) -> WebPrincipal | None:
    """The principal of a session cookie, or None when it is unknown, ended, expired, or its account is disabled
    or its key revoked (no audit entry: every page request calls this)."""
    if not token:
        return None
    now = to_text(ctx.now())
    try:
        return _session_principal(ctx, token, now)
    except TamperedRecordError:  # its account or key was changed outside faceledger: signed out
        return None


def _session_principal(ctx: GalleryContext, token: str, now: str) -> WebPrincipal | None:
    with ctx.store.read() as tx:
        session = tx.get_web_session(_digest(token))
        if session is None or session.ended_at is not None or session.expires_at <= now:
            return None
        if session.user_name is not None:
            user = tx.get_user(session.user_name)
            if user is None or user.disabled_at is not None:
                return None
            return WebPrincipal(user.name, user.role, "user", None, session.csrf, session.expires_at)
        key = tx.get_api_key(session.key_id or "")
        if key is None or key.revoked_at is not None:
            return None
        return WebPrincipal(key.owner, key.role, "key", key.id, session.csrf, session.expires_at)


def sign_out(ctx: GalleryContext, token: str, *, address: str) -> bool:
    """End a session (an audit entry); False when it was not open."""
    principal = session_principal(ctx, token)
    if principal is None:
        return False
    now = to_text(ctx.now())
    with ctx.write() as tx:
        tx.end_web_sessions(now, id_sha256=_digest(token))
        ctx.record(
            tx,
            AuditAction.SIGNOUT,
            actor=principal.actor,
            purpose="web sign-in",
            at=now,
            details={"kind": principal.kind, "address": address},
        )
    return True
