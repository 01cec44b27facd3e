"""Enrollment routes: enroll a subject from uploaded photos, list the enrolled subjects."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import Request

from faceledger.gallery.results import (
    EnrollmentResult,
)
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.routes.common import (
    _UNNAMED,
    GalleryQuery,
    PurposeHeader,
    PurposeQuery,
    op,
    v1,
)
from faceledger.interfaces.api.security import Caller, purpose_of, service
from faceledger.interfaces.api.uploads import image_request_body, read_images


# ------------------------------------------------------------------------------------------------ enroll
@v1.post(
    "/enroll",
    response_model=EnrollmentResult,
    tags=["subjects"],
    **op(
        "admin",
        "enroller",
        summary="Enroll a subject",
        body=image_request_body(s.EnrollJSON, s.EnrollFields, {"images": True}),
    ),
)
async def enroll(request: Request, caller: Caller, x_purpose: PurposeHeader = None) -> EnrollmentResult:
    """Enroll ``subject`` from one or more images (one face each), in one transaction. Needs a valid consent
    for the gallery and purpose. Images already enrolled for the subject are skipped, so retrying is safe.
    Answers 422 when no image could be used (each named with its reason)."""
    state = service(request)
    fields, images = await read_images(
        request, s.EnrollJSON, s.EnrollFields, {"images": True}, max_images=state.settings.max_images
    )
    purpose = purpose_of(x_purpose, fields.purpose)
    result = await state.run(
        state.gallery.enroll,
        fields.subject,
        [u.stream() for u in images["images"]],
        actor=caller.owner,
        purpose=purpose,
        gallery=fields.gallery,
        consent_id=fields.consent_id,
        face_index=fields.face_index,
        model=True,
    )
    state.metrics.count("enrollments")
    state.metrics.count("templates_enrolled", len(result.enrolled))
    # Outcomes come in the order of the images; name unreadable ones by their upload, not "<image>".
    uploads = images["images"]
    result = replace(
        result,
        outcomes=[
            replace(o, source=uploads[i].name) if i < len(uploads) and o.source in _UNNAMED else o
            for i, o in enumerate(result.outcomes)
        ],
    )
    if not result.enrolled and not result.skipped:
        reasons = "; ".join(f"{o.source}: {o.reason}" for o in result.rejected)
        raise ApiError(
            422,
            "no_usable_image",
            f"nothing enrolled for {result.subject!r}: {reasons} (recorded as audit entry {result.audit_seq})",
        )
    return result


@v1.get(
    "/subjects", response_model=s.SubjectList, tags=["subjects"], **op("admin", "enroller", summary="List subjects")
)
async def list_subjects(
    request: Request,
    caller: Caller,
    gallery: GalleryQuery = None,
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> dict[str, Any]:
    """Enrolled subjects with their template count and consent state (the look-up is recorded)."""
    state = service(request)
    why = purpose_of(x_purpose, purpose)
    subjects = await state.run(state.gallery.subjects, actor=caller.owner, purpose=why, gallery=gallery)
    return {"subjects": subjects}
