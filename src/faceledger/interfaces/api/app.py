"""The FastAPI application: :func:`create_app` for one process, :func:`app_from_env` for uvicorn workers."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute

from faceledger import __version__
from faceledger.interfaces.api.docs_pages import install_docs
from faceledger.interfaces.api.errors import install_error_handlers
from faceledger.interfaces.api.metrics import Metrics
from faceledger.interfaces.api.middleware import ServiceMiddleware
from faceledger.interfaces.api.routes import ops, v1
from faceledger.interfaces.api.runtime import LimitedEngine, ServiceState
from faceledger.interfaces.api.schemas import name_components
from faceledger.interfaces.api.security import authorize, roles_of
from faceledger.interfaces.api.settings import ServiceSettings
from faceledger.interfaces.web import mount_ui
from faceledger.ledger.timeutil import from_text, utcnow

log = logging.getLogger("faceledger.api")
SERVICE_ACTOR = "faceledger-service"

DESCRIPTION = """\
Face recognition with consent, human review and a hash-chained audit ledger behind every request.

**Authentication.** Send an API key as `Authorization: Bearer <token>` (or `X-API-Key: <token>`). An
administrator creates keys with `faceledger keys create OWNER --role ROLE`; the token is shown once. Roles:
`admin` (everything), `enroller` (consent, enroll, subjects, erase), `operator` (detect, verify, identify),
`reviewer` (review queue), `auditor` (audit, report). Each operation lists the roles it admits.

**Purpose.** Requests that touch people must say why: `X-Purpose: access-control` (or a `purpose` field). The
policy lists the purposes each gallery allows. The request is written to the audit ledger, attributed to the
key's owner, in the same transaction as its effect.

**Images** go as `multipart/form-data` file fields or as base64 strings in JSON. Nothing uploaded is kept,
except the encrypted template of an enrollment.

**Errors** always answer `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(settings: ServiceSettings, *, engine: LimitedEngine | None = None) -> FastAPI:
    """The service for ``settings``. The database is opened and the models loaded when the app starts
    (its lifespan), once per process; ``engine`` reuses already loaded models (tests)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await anyio.to_thread.run_sync(lambda: ServiceState.open(settings, metrics, engine=engine))
        app.state.service = state
        try:
            async with anyio.create_task_group() as tasks:
                if settings.purge_interval > 0:
                    tasks.start_soon(_purge_schedule, state)
                yield
                tasks.cancel_scope.cancel()
        finally:
            app.state.service = None
            state.close()

    app = FastAPI(
        title="faceledger",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served with the package's own assets (docs_pages), not a CDN's
        redoc_url=None,
        openapi_tags=[
            {"name": "service", "description": "Health, readiness, metrics, identity of the caller"},
            {"name": "vision", "description": "Detection and 1:1 verification; nothing stored"},
            {"name": "consent", "description": "Consent records: no enrollment without one"},
            {"name": "subjects", "description": "Enrollment, listing and erasure of subjects"},
            {"name": "identify", "description": "1:N search; candidates go to human review"},
            {"name": "review", "description": "Human review of candidates"},
            {"name": "retention", "description": "The policy's retention periods"},
            {"name": "audit", "description": "The hash-chained audit ledger and the transparency report"},
        ],
    )
    app.state.service = None
    app.state.settings = settings
    install_error_handlers(app)
    install_docs(app)
    mount_ui(app)  # the web UI at /ui (faceledger.interfaces.web): same process, same gallery, its own sessions
    app.include_router(ops)
    app.include_router(v1)
    _check_guarded(app)
    _name_result_schemas(app)
    app.add_middleware(
        ServiceMiddleware,
        metrics=metrics,
        timeout=settings.timeout,
        max_body=settings.max_upload_bytes,
        access_log=settings.access_log,
    )
    if settings.access_log:
        _log_to_stderr("faceledger.access")
    return app


def _log_to_stderr(name: str) -> None:
    """Give a logger a stderr handler in uvicorn's style (uvicorn configures only its own loggers)."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def app_from_env() -> FastAPI:
    """The service configured from the environment (``faceledger serve`` sets it for its workers)."""
    return create_app(ServiceSettings.from_env())


def _depends_on(dependant: Any, target: Any) -> bool:
    return any(d.call is target or _depends_on(d, target) for d in dependant.dependencies)


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, including those of included routers (however this FastAPI version nests them)."""
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        nested = getattr(getattr(route, "original_router", None), "routes", None) or getattr(route, "routes", None)
        if nested:
            out += _api_routes(list(nested))
    return out


def _check_guarded(app: FastAPI) -> None:
    """Refuse to build an app with a /v1 route that lacks roles or the key check."""
    routes = [r for r in _api_routes(list(app.routes)) if r.path.startswith("/v1/")]
    if len(routes) < len(v1.routes):
        raise RuntimeError("cannot enumerate the app's /v1 routes to check their guards")
    for route in routes:
        if not (roles_of(route) and _depends_on(route.dependant, authorize)):
            raise RuntimeError(f"route {route.path} must list its roles and depend on authorize()")


def _name_result_schemas(app: FastAPI) -> None:
    """Give the gallery results' schemas their published names in the OpenAPI document (see
    :data:`~faceledger.interfaces.api.schemas.COMPONENT_NAMES`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = name_components(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _purge_schedule(state: ServiceState) -> None:
    """Run retention every ``purge_interval`` seconds; with several workers, a run is skipped when another
    process ran one less than half an interval ago."""
    interval = state.settings.purge_interval
    await anyio.sleep(min(interval, 60.0) * (0.5 + random.random()))
    while True:
        try:
            await anyio.to_thread.run_sync(_purge_if_due, state, interval)
        except Exception:
            log.exception("scheduled retention run failed; will retry")
        await anyio.sleep(interval * (0.9 + 0.2 * random.random()))


def _purge_if_due(state: ServiceState, interval: float) -> None:
    runs = state.gallery.audit_entries(action="purge")
    if runs:
        last = from_text(str(runs[-1].data["ts"]))
        if utcnow() - last < timedelta(seconds=interval / 2):
            return
    report = state.gallery.purge(actor=SERVICE_ACTOR, purpose="retention")
    log.info("retention run: %s", report.to_dict())
