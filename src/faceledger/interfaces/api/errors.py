"""Errors of the REST service: one JSON shape for every failure, and the map from faceledger's exceptions.

Every error response is ``{"error": {"code": "...", "message": "..."}}``: ``code`` is a stable machine-readable
word, ``message`` says what went wrong and what to do. Unexpected exceptions become a 500 whose message names
the request id (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceledger.errors import FaceledgerError, ImageError, ModelError, NoFaceError
from faceledger.ledger.errors import (
    AccessDenied,
    AccountabilityError,
    ConsentError,
    DeploymentError,
    DuplicateError,
    GallerySizeError,
    LedgerError,
    MasterKeyError,
    NoConsentError,
    PolicyError,
    PurposeError,
    ReviewError,
    StoreError,
    TamperedRecordError,
    UnknownSubjectError,
)

log = logging.getLogger("faceledger.api")


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class TooManyFaces(FaceledgerError):
    """An image holds more faces than the service accepts in one request."""


class PayloadTooLarge(StarletteHTTPException):
    """The request body is larger than the service accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body is larger than the limit of {limit:,} bytes; send a smaller image "
            "(or ask the operator to raise --max-upload-bytes)",
        )


# Most specific first: several of these derive from each other or from ValueError.
_DOMAIN: tuple[tuple[type[BaseException], int, str], ...] = (
    (AccessDenied, 401, "unauthorized"),
    (AccountabilityError, 400, "purpose_required"),
    (PurposeError, 403, "purpose_not_allowed"),
    (DeploymentError, 403, "deployment_not_authorised"),
    (PolicyError, 422, "invalid_policy"),
    (ConsentError, 409, "consent_required"),
    (GallerySizeError, 409, "gallery_too_large"),
    (UnknownSubjectError, 404, "not_found"),
    (DuplicateError, 409, "duplicate"),
    (ReviewError, 409, "review_conflict"),
    (MasterKeyError, 503, "master_key_unavailable"),
    (TamperedRecordError, 409, "record_tampered"),
    (StoreError, 503, "store_unavailable"),
    (TooManyFaces, 422, "too_many_faces"),
    (NoFaceError, 422, "no_face"),
    (ImageError, 422, "bad_image"),
    (ModelError, 503, "model_unavailable"),
    (LedgerError, 400, "refused"),
    (FaceledgerError, 400, "refused"),
    (ValueError, 422, "invalid_value"),
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
    504: "timeout",
}


def from_domain(exc: BaseException) -> ApiError | None:
    """The :class:`ApiError` for an exception raised by the gallery, ledger or engine (None if unknown)."""
    for kind, status, code in _DOMAIN:
        if isinstance(exc, kind):
            message = str(exc) or kind.__name__
            if isinstance(exc, ImageError) and "above the limit" in exc.reason and "pixels" in exc.reason:
                message = f"{exc.source}: {exc.reason.split('; ')[0]}; send a smaller image"
            if isinstance(exc, NoConsentError):
                message += "; record a consent first with POST /v1/consents"
            headers = {"Retry-After": "5"} if status == 503 else None
            if status == 401:
                headers = {"WWW-Authenticate": "Bearer"}
            return ApiError(status, code, message, headers)
    return None


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or request.headers.get("x-request-id", "-"))


def _where(loc: Any) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body" and len(parts) > 1:
        parts = parts[1:]
    elif parts and parts[0] == "header" and len(parts) > 1:
        return f"header {parts[1]}"
    elif parts and parts[0] == "query" and len(parts) > 1:
        return f"query parameter {'.'.join(parts[1:])}"
    elif parts and parts[0] == "path" and len(parts) > 1:
        return f"path parameter {'.'.join(parts[1:])}"
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() and out else (f".{p}" if out else p)
    return out or "request"


def validation_message(errors: Any) -> str:
    """One line naming each invalid field and what is wrong with it (never echoing the input)."""
    problems = []
    for err in list(errors)[:10]:
        msg = str(err.get("msg", "invalid")) if isinstance(err, Mapping) else str(err)
        loc = err.get("loc", ()) if isinstance(err, Mapping) else ()
        problems.append(f"{_where(loc)}: {msg}")
    return "; ".join(problems) or "invalid request"


async def _caller_refusal(request: Request) -> JSONResponse | None:
    """When a request's body could not be parsed, say first what the key check would have said (401 for no or a
    bad key, 403 for a role the route does not admit): FastAPI parses a declared body before the route's
    dependencies run, so without this a request without a key would learn about its body first."""
    if not request.url.path.startswith("/v1/"):
        return None
    from faceledger.interfaces.api.security import roles_of  # security imports this module

    state = getattr(request.app.state, "service", None)
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if not token.strip():
        return error_response(401, "unauthorized", "an API key is required: send 'Authorization: Bearer <token>' "
                              "or 'X-API-Key: <token>'", unauthorized)  # fmt: skip
    if state is None:
        return None
    try:
        key = await state.run(state.gallery.authenticate, token.strip())
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    roles = roles_of(request.scope.get("route"))
    if roles is not None and key.role not in roles:
        return error_response(403, "forbidden", f"role {key.role!r} may not call {request.method} {request.url.path}")
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, answer in the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        refused = await _caller_refusal(request)
        return refused or error_response(422, "validation_error", validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI could not parse (e.g. JSON nested too deeply)
            refused = await _caller_refusal(request)
            if refused is not None:
                return refused
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 404 and exc.detail in (None, "Not Found"):
            message = f"no such route: {request.method} {request.url.path} (the routes are listed at /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /docs for its methods)"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(FaceledgerError)
    async def _domain(request: Request, exc: FaceledgerError) -> JSONResponse:
        mapped = from_domain(exc)
        assert mapped is not None
        return error_response(mapped.status, mapped.code, mapped.message, mapped.headers)

    @app.exception_handler(ResponseValidationError)
    async def _bad_response(request: Request, exc: ResponseValidationError) -> JSONResponse:
        rid = _request_id(request)
        log.error("response failed its own schema (request %s): %s", rid, exc.errors())
        return error_response(500, "internal", f"internal error (request {rid}); the server log has details")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = _request_id(request)
        log.error("unexpected error (request %s)", rid, exc_info=exc)
        return error_response(500, "internal", f"internal error (request {rid}); the server log has details")
