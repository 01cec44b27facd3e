"""Service routes: liveness, readiness (the gallery's checks), metrics, and who the caller is."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.metrics import CONTENT_TYPE
from faceledger.interfaces.api.routes.common import (
    op,
    ops,
    v1,
)
from faceledger.interfaces.api.runtime import ServiceState
from faceledger.interfaces.api.security import ALL_ROLES, Caller, service


# ------------------------------------------------------------------------------------------------ service
@ops.get("/healthz", response_model=s.Health, tags=["service"], summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process answers (no database or model check: see /readyz)."""
    return {"status": "ok"}


@ops.get(
    "/readyz",
    response_model=s.Readiness,
    tags=["service"],
    summary="Readiness",
    responses={503: {"model": s.Readiness, "description": "Not ready: see checks"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Models run, database readable, this database's master key present: 200, else 503 with the failed checks
    (the gallery's readiness checks: ``models``, ``database``, ``master_key``)."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    checks: dict[str, str]
    if state is None:
        checks = {"service": "starting"}
    else:
        try:
            checks = await state.run(state.gallery.readiness, models=True, model=True)
        except ApiError as exc:
            checks = {"service": exc.message}
    # A template that cannot be used degrades the service (it is left out of the search) but every other subject is
    # searched: still ready, with the problem named.
    failed = [name for name, value in checks.items() if value != "ok" and not value.startswith("degraded")]
    ready = bool(checks) and not failed
    degraded = ready and any(value != "ok" for value in checks.values())
    status = "not_ready" if not ready else ("degraded" if degraded else "ready")
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)


@ops.get(
    "/metrics",
    tags=["service"],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Request counts and latencies by route, domain counters, audit head and pending reviews (per process)."""
    state = service(request)

    def gauges() -> dict[str, tuple[str, float]]:
        stats = state.gallery.stats()  # counts only; no personal data, no audit entry
        return {
            "audit_head_seq": ("Sequence number of the last audit entry.", float(stats["audit_head_seq"])),
            "pending_reviews": ("Candidates awaiting human review.", float(stats["pending_reviews"])),
            "subjects": ("Enrolled subjects.", float(stats["subjects"])),
            "templates": ("Stored templates.", float(stats["templates"])),
            "valid_consents": ("Consent records valid now.", float(stats["valid_consents"])),
            "templates_excluded": (
                "Templates left out of the search because they do not decrypt (see /readyz).",
                float(stats["templates_excluded"]),
            ),
            "records_tampered": (
                "Records found not to match the ledger (changed outside faceledger; not used; see /readyz).",
                float(stats["records_tampered"]),
            ),
            "process_start_time_seconds": ("Start time of this process (Unix time).", state.started_at),
        }

    values = await state.run(gauges)
    return Response(state.metrics.render(values), media_type=CONTENT_TYPE)


@v1.get("/whoami", response_model=s.Principal, tags=["service"], **op(*ALL_ROLES, summary="The caller's key"))
async def whoami(caller: Caller) -> s.Principal:
    """The key id, owner and role of the API key this request was made with."""
    return caller
