"""Subjects and consent: record a consent, enroll a subject from uploaded photos, see a subject's consents and
enrolled faces, withdraw consent, erase a subject (the receipt is shown). No enrollment without a consent: the
gallery refuses it, and the page says why."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from faceledger.interfaces.web.render import page
from faceledger.interfaces.web.session import SUBJECT_ROLES, UiError, Viewer, form_text, viewer

router = APIRouter()

ADMIN_PURPOSE = "consent administration"
MAX_PHOTOS = 20
MAX_PHOTO_BYTES = 20 * 1024 * 1024


def _galleries(who: Viewer) -> list[Any]:
    return list(who.gallery.policy.policy.galleries)


@router.get("/ui/subjects")
async def subject_list(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Enrolled subjects, and the form that records a consent."""
    who.require(SUBJECT_ROLES, "see subjects and consents")
    subjects = await who.call(who.gallery.subjects, actor=who.actor, purpose=ADMIN_PURPOSE)
    return page(
        request, "subjects.html", who, title="Subjects & consent", subjects=subjects, galleries=_galleries(who),
        flash=request.query_params.get("done", ""),
    )  # fmt: skip


@router.post("/ui/consents")
async def add_consent(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Record a consent (who gave it, for which gallery and purpose, on which legal basis, until when)."""
    who.require(SUBJECT_ROLES, "record consents")
    form = await who.check_csrf()
    subject = form_text(form, "subject")
    gallery, _, purpose = form_text(form, "gallery_purpose").partition("|")
    await who.call(
        who.gallery.add_consent, subject, actor=who.actor, collected_by=form_text(form, "collected_by") or who.actor,
        legal_basis=form_text(form, "legal_basis"), purpose=purpose, evidence_ref=form_text(form, "evidence_ref"),
        expires_at=form_text(form, "expires_at") or None, gallery=gallery or None,
        category=form_text(form, "category") or None,
    )  # fmt: skip
    return RedirectResponse(f"/ui/subjects/{subject}?done=consent", status_code=303)


async def _subject_page(request: Request, who: Viewer, subject: str, **extra: Any) -> Response:
    consents = await who.call(who.gallery.consents, subject, actor=who.actor, purpose=ADMIN_PURPOSE)
    enrolled = [s for s in await who.call(who.gallery.subjects, actor=who.actor, purpose=ADMIN_PURPOSE)
                if s.id == subject]  # fmt: skip
    if not consents and not enrolled and "receipt" not in extra:
        raise UiError(404, f"No subject {subject!r}: no consent was recorded for it, or it was erased.")
    references = await who.call(who.gallery.reference_faces, subject, actor=who.actor, purpose=ADMIN_PURPOSE) \
        if enrolled else []  # fmt: skip
    now = who.gallery.now()
    return page(
        request, "subject.html", who, title=f"Subject {subject}", subject=subject,
        info=enrolled[0] if enrolled else None, consents=[(c, c.state(now)) for c in consents],
        references=references, galleries=_galleries(who), **extra,
    )  # fmt: skip


@router.get("/ui/subjects/{subject}")
async def subject_page(request: Request, subject: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """A subject's consents, enrolled faces, and the forms to enroll, withdraw and erase."""
    who.require(SUBJECT_ROLES, "see subjects and consents")
    done = request.query_params.get("done")
    flash = {"consent": "Consent recorded. You can enroll photos now."}.get(done or "", "")
    return await _subject_page(request, who, subject, flash=flash)


@router.post("/ui/subjects/{subject}/enroll")
async def enroll(request: Request, subject: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Enroll uploaded photos (each must show one usable face) under the subject's valid consent."""
    who.require(SUBJECT_ROLES, "enroll subjects")
    await who.check_csrf()
    form = await request.form()
    uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile) and f.filename]
    if not uploads:
        raise UiError(400, "Choose at least one photo to enroll.")
    if len(uploads) > MAX_PHOTOS:
        raise UiError(400, f"At most {MAX_PHOTOS} photos at once.")
    images = []
    for upload in uploads:
        data = await upload.read(MAX_PHOTO_BYTES + 1)
        if len(data) > MAX_PHOTO_BYTES:
            raise UiError(413, f"{upload.filename} is larger than {MAX_PHOTO_BYTES // 2**20} MB.")
        images.append(data)
    gallery, _, purpose = str(form.get("gallery_purpose", "")).partition("|")
    result = await who.call(
        who.gallery.enroll, subject, images, actor=who.actor, purpose=purpose, gallery=gallery or None, model=True
    )
    names = [u.filename or f"photo {i + 1}" for i, u in enumerate(uploads)]
    outcomes = list(zip(names, result.outcomes, strict=True))
    return await _subject_page(request, who, subject, enrollment=result, outcomes=outcomes)


@router.post("/ui/subjects/{subject}/withdraw")
async def withdraw(request: Request, subject: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Withdraw the subject's consent; with no valid consent left, the subject is erased at once."""
    who.require(SUBJECT_ROLES, "withdraw consent")
    form = await who.check_csrf()
    result = await who.call(
        who.gallery.withdraw_consent, subject, actor=who.actor, purpose=ADMIN_PURPOSE,
        reason=form_text(form, "reason") or "consent withdrawn",
    )  # fmt: skip
    return await _subject_page(request, who, subject, withdrawal=result, receipt=result.erasure)


@router.post("/ui/subjects/{subject}/erase")
async def erase(request: Request, subject: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Erase the subject: templates, enrolled faces, key and candidates destroyed; the receipt is shown."""
    who.require(SUBJECT_ROLES, "erase subjects")
    form = await who.check_csrf()
    if form_text(form, "confirm") != subject:
        raise UiError(400, f"Type the subject id ({subject}) to confirm the erasure.")
    receipt = await who.call(
        who.gallery.erase, subject, actor=who.actor, purpose="erasure request",
        reason=form_text(form, "reason") or "erasure request",
    )  # fmt: skip
    return page(request, "erased.html", who, title=f"Erased {subject}", receipt=receipt)
