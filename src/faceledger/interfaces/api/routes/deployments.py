"""Deployment routes: the authorisations identification in video runs under, and the video sessions running.

Changing or ending a deployment that does not exist is a 404 (``not_found``); one that has ended or expired is a
409 (``deployment_closed``): the caller is authorised, the deployment is what is missing or over.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import Path, Request

from faceledger.gallery import Gallery
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.routes.common import PurposeHeader, op, v1
from faceledger.interfaces.api.security import Caller, purpose_of, service
from faceledger.ledger.errors import DeploymentError
from faceledger.ledger.records import DeploymentRecord, DeploymentWithState

NamePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", description="Deployment name")]


def _why(x_purpose: str | None) -> str:
    """Administration unless the request says otherwise."""
    return purpose_of(x_purpose, None) if x_purpose and x_purpose.strip() else "administration"


def _out(record: DeploymentRecord, now: datetime) -> DeploymentWithState:
    return DeploymentWithState.at(record, now)


async def _on_existing(
    request: Request, caller: s.Principal, x_purpose: str | None, name: str, method: str, **kwargs: Any
) -> DeploymentWithState:
    """``Gallery.<method>(name, actor=, purpose=, **kwargs)`` for an existing deployment; its refusal is a 404 when
    there is no deployment ``name``, else a 409 (ended or expired)."""
    state = service(request)
    g: Gallery = state.gallery

    def work() -> DeploymentRecord:
        try:
            return cast(
                DeploymentRecord, getattr(g, method)(name, actor=caller.owner, purpose=_why(x_purpose), **kwargs)
            )
        except DeploymentError as exc:
            if all(d.name != name for d in g.deployments()):
                raise ApiError(404, "not_found", str(exc)) from None
            raise ApiError(409, "deployment_closed", str(exc)) from None

    return _out(await state.run(work), g.now())


@v1.get(
    "/deployments",
    response_model=s.DeploymentList,
    tags=["video"],
    **op("admin", "operator", "auditor", summary="List deployments"),
)
async def list_deployments(request: Request, caller: Caller) -> dict[str, Any]:
    """Every deployment with its state now (scheduled, active, expired, ended)."""
    state = service(request)
    g = state.gallery
    records = await state.run(g.deployments)
    now = g.now()
    return {"deployments": [_out(r, now) for r in records]}


@v1.post(
    "/deployments",
    response_model=DeploymentWithState,
    status_code=201,
    tags=["video"],
    **op("admin", summary="Authorise a deployment"),
)
async def add_deployment(
    request: Request, body: s.DeploymentIn, caller: Caller, x_purpose: PurposeHeader = None
) -> DeploymentWithState:
    """Record who authorised identification on which sources, where, when, against which watchlist and up to
    which size (an audit entry). Credentials in source URIs are removed before they are stored."""
    state = service(request)
    fields = body.model_dump()
    name = fields.pop("name")
    record = await state.run(
        state.gallery.add_deployment,
        name,
        actor=caller.owner,
        purpose=_why(x_purpose),
        **fields,
    )
    return _out(record, state.gallery.now())


@v1.patch(
    "/deployments/{name}",
    response_model=DeploymentWithState,
    tags=["video"],
    **op("admin", summary="Change a deployment"),
)
async def change_deployment(
    request: Request, name: NamePath, body: s.DeploymentChangeIn, caller: Caller, x_purpose: PurposeHeader = None
) -> DeploymentWithState:
    """Change a deployment's end, sources or watchlist size limit (an audit entry with before and after)."""
    return await _on_existing(request, caller, x_purpose, name, "change_deployment", **body.model_dump())


@v1.post(
    "/deployments/{name}/end",
    response_model=DeploymentWithState,
    tags=["video"],
    **op("admin", summary="End a deployment"),
)
async def end_deployment(
    request: Request, name: NamePath, body: s.DeploymentEndIn, caller: Caller, x_purpose: PurposeHeader = None
) -> DeploymentWithState:
    """End a deployment now: sessions under it stop within a second (an audit entry)."""
    return await _on_existing(request, caller, x_purpose, name, "end_deployment", reason=body.reason)


@v1.get(
    "/sessions",
    response_model=s.SessionList,
    tags=["video"],
    **op("admin", "operator", "auditor", summary="List video sessions"),
)
async def list_sessions(request: Request, caller: Caller, running: bool = False) -> dict[str, Any]:
    """Video sessions (``running=true``: only those not stopped), each ``running``, ``stopped`` or ``lost``."""
    state = service(request)
    return {"sessions": await state.run(state.gallery.video_sessions, running_only=running)}
