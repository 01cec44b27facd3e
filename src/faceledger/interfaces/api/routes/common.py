"""What every route module shares: the routers, the error responses, the request parameters, ``op()``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query

from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.security import allow

_ERROR_DOCS = {
    400: "Malformed request, or no purpose given",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not call this route, or the policy does not allow the purpose",
    404: "Unknown subject, candidate or route",
    409: "Conflicts with the current state (no valid consent, already reviewed, duplicate)",
    413: "Request body above the upload limit",
    415: "Unsupported content type",
    422: "Invalid field, unreadable image, too many faces or images",
    429: "Too many requests for this key; see Retry-After",
    500: "Unexpected error (the message names the request id in the server log)",
    503: "Database, master key or models unavailable; retry later",
    504: "The request took longer than the timeout",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": s.ErrorResponse, "description": text} for status, text in _ERROR_DOCS.items()
}
# No max_length here: a purpose over 200 characters is the documented 400 purpose_too_long (security.purpose_of),
# not a 422 from parameter validation
PurposeHeader = Annotated[
    str | None,
    Header(
        alias="X-Purpose",
        description="Why this request is made (must be allowed by the policy; at most 200 characters)",
    ),
]
PurposeQuery = Annotated[
    str | None, Query(alias="purpose", description="The purpose, if not in X-Purpose (at most 200 characters)")
]
SubjectPath = Annotated[str, Path(pattern=s.SUBJECT_PATTERN, description="Subject id")]
CandidatePath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
GalleryQuery = Annotated[str | None, Query(max_length=64, description="Gallery (default: all or the only one)")]


_UNNAMED = ("<image>", "<bytes>", "<stream>")
"""Sources of images the gallery got without a name (named after their upload instead)."""


class NoFields(s._In):
    """No fields besides the image."""


def op(
    *roles: str,
    summary: str,
    body: dict[str, Any] | None = None,
    extra_responses: dict[int | str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of a route that ``roles`` may call (``body``: a hand-written request body schema)."""
    extra = allow(*roles)
    if body:
        extra.update(body)
    return {
        "summary": summary,
        "description": f"Roles: {', '.join(roles)}.",
        "openapi_extra": extra,
        "responses": {**ERRORS, **(extra_responses or {})},
    }


v1 = APIRouter(prefix="/v1")
ops = APIRouter()
