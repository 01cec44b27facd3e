"""Deployments: the authorisations live identification runs under. Everyone who may see them sees what is
authorised and what is running; only an administrator creates or ends one."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from faceledger.interfaces.web.render import page
from faceledger.interfaces.web.session import DEPLOYMENT_ADMIN_ROLES, DEPLOYMENT_ROLES, Viewer, form_text, viewer

router = APIRouter()

PURPOSE = "deployment administration"


@router.get("/ui/deployments")
async def deployment_list(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Deployments with their state, and the video sessions running under them."""
    who.require(DEPLOYMENT_ROLES, "see deployments")
    records = await who.call(who.gallery.deployments)
    sessions = await who.call(who.gallery.video_sessions)
    now = who.gallery.now()
    return page(
        request, "deployments.html", who, title="Deployments",
        deployments=[(d, d.state(now)) for d in reversed(records)],
        sessions=[s for s in reversed(sessions)][:50], galleries=list(who.gallery.policy.policy.galleries),
        may_change=who.may(DEPLOYMENT_ADMIN_ROLES), flash=request.query_params.get("done", ""),
    )  # fmt: skip


@router.post("/ui/deployments")
async def add(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Authorise a deployment (an audit entry names who authorised it, where, when and which watchlist)."""
    who.require(DEPLOYMENT_ADMIN_ROLES, "authorise deployments")
    form = await who.check_csrf()
    gallery, _, search_purpose = form_text(form, "gallery_purpose").partition("|")
    name = form_text(form, "name")
    await who.call(
        who.gallery.add_deployment, name, actor=who.actor, purpose=PURPOSE, gallery=gallery or None,
        search_purpose=search_purpose, legal_basis=form_text(form, "legal_basis"), location=form_text(form, "location"),
        sources=[s for s in form_text(form, "sources").splitlines() if s.strip()],
        authorised_by=form_text(form, "authorised_by"), authorisation_ref=form_text(form, "authorisation_ref"),
        valid_from=form_text(form, "valid_from") or None, valid_to=form_text(form, "valid_to"),
        max_watchlist=int(form_text(form, "max_watchlist") or 0), show_candidates=form.get("show_candidates") == "on",
    )  # fmt: skip
    return RedirectResponse("/ui/deployments?done=" + quote(f"Deployment {name} authorised."), status_code=303)


@router.post("/ui/deployments/{name}/end")
async def end(request: Request, name: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """End a deployment now: sessions under it stop within a second."""
    who.require(DEPLOYMENT_ADMIN_ROLES, "end deployments")
    form = await who.check_csrf()
    await who.call(
        who.gallery.end_deployment, name, actor=who.actor, purpose=PURPOSE, reason=form_text(form, "reason") or "ended"
    )
    return RedirectResponse("/ui/deployments?done=" + quote(f"Deployment {name} ended."), status_code=303)
