"""API keys, roles and purposes.

A request carries its key as ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``. Keys are created,
listed and revoked with ``faceledger keys`` (only their SHA-256 is stored). Each route lists the roles that may
call it in its OpenAPI operation (``x-roles``); any other role gets 403, no key or a bad key 401, too many
requests 429 with ``Retry-After``. Requests that touch people are attributed to the key's owner and must say
why (``X-Purpose`` header or a ``purpose`` field); the purpose must be one the policy allows.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.runtime import ServiceState, retry_after
from faceledger.interfaces.api.schemas import Principal
from faceledger.ledger.records import ROLES

ALL_ROLES: tuple[str, ...] = tuple(ROLES)
ROLES_KEY = "x-roles"
MAX_PURPOSE = 200

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer <token>` with a token from `faceledger keys create OWNER --role ROLE`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same token in an `X-API-Key` header.",
)


def service(request: Request) -> ServiceState:
    """The running service of this process."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        raise ApiError(
            503, "unavailable", "the service is starting or stopping; retry in a few seconds", {"Retry-After": "2"}
        )
    return state


def roles_of(route: Any) -> tuple[str, ...] | None:
    """Roles a route admits (from its ``x-roles`` OpenAPI extension), or None for an open route."""
    extra = getattr(route, "openapi_extra", None) or {}
    roles = extra.get(ROLES_KEY)
    return None if roles is None else tuple(roles)


def allow(*roles: str) -> dict[str, Any]:
    """``openapi_extra`` of a route that these roles may call."""
    unknown = [r for r in roles if r not in ALL_ROLES]
    if unknown or not roles:
        raise ValueError(f"unknown role(s) {unknown}; roles are {', '.join(ALL_ROLES)}")
    return {ROLES_KEY: list(roles)}


async def authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    """Authenticate the request's API key, apply the rate limit, and check the key's role for this route."""
    state = service(request)
    token = credentials.credentials if credentials is not None else api_key
    if not token:
        state.metrics.count("auth_failures", reason="missing")
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: send 'Authorization: Bearer <token>' or 'X-API-Key: <token>' "
            "(an administrator creates one with `faceledger keys create OWNER --role ROLE`)",
            {"WWW-Authenticate": "Bearer"},
        )
    try:
        key = await state.run(state.gallery.authenticate, token.strip())
    except ApiError as exc:
        if exc.status == 401:
            state.metrics.count("auth_failures", reason="invalid")
            exc.message = f"{exc.message}: check the token, or ask an administrator for a new key"
        raise
    wait = state.rate_limiter.acquire(key.id, key.role)
    if wait is not None:
        state.metrics.count("rate_limited")
        raise ApiError(
            429,
            "rate_limited",
            f"API key {key.id} ({key.role}) made more than {state.rate_limiter.limit(key.role)} requests in a "
            "minute; "
            f"retry in {retry_after(wait)} s",
            {"Retry-After": retry_after(wait)},
        )
    route = request.scope.get("route")
    roles = roles_of(route)
    if roles is None:  # a /v1 route without roles is a programming error; refuse rather than open it
        raise ApiError(403, "forbidden", "this route admits no role")
    if key.role not in roles:
        raise ApiError(
            403,
            "forbidden",
            f"role {key.role!r} may not call {request.method} {getattr(route, 'path', request.url.path)}; "
            f"it needs one of: {', '.join(roles)}",
        )
    principal = Principal(key_id=key.id, owner=key.owner, role=key.role)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authorize)]


def purpose_of(header: str | None, field: str | None) -> str:
    """The request's purpose: the ``X-Purpose`` header or the ``purpose`` field (they must agree)."""
    values = {v.strip() for v in (header, field) if v is not None and v.strip()}
    if not values:
        raise ApiError(
            400,
            "purpose_required",
            "this request touches people: say why in an 'X-Purpose' header (or a 'purpose' field); "
            "it must be a purpose the policy allows, e.g. 'access-control'",
        )
    if len(values) > 1:
        raise ApiError(400, "purpose_conflict", "the X-Purpose header and the purpose field differ; send one purpose")
    purpose = values.pop()
    if len(purpose) > MAX_PURPOSE:
        raise ApiError(400, "purpose_too_long", f"purpose is longer than {MAX_PURPOSE} characters")
    return purpose
