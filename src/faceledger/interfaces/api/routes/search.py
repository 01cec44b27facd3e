"""Search routes: identification (1:N, matches become candidates) and verification against a subject."""

from __future__ import annotations

from fastapi import Request

from faceledger.gallery.results import (
    Identification,
    SubjectVerification,
)
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.routes.common import (
    PurposeHeader,
    SubjectPath,
    op,
    v1,
)
from faceledger.interfaces.api.security import Caller, purpose_of, service
from faceledger.interfaces.api.uploads import image_request_body, read_images


@v1.post(
    "/subjects/{subject}/verify",
    response_model=SubjectVerification,
    tags=["identify"],
    **op(
        "admin",
        "operator",
        summary="Verify a face against an enrolled subject (1:1)",
        body=image_request_body(s.SubjectVerifyJSON, s.SubjectVerifyFields, {"image": False}),
    ),
)
async def verify_subject(
    request: Request, subject: SubjectPath, caller: Caller, x_purpose: PurposeHeader = None
) -> SubjectVerification:
    """Is the largest face of the image the enrolled ``subject``, at the policy's target false-match rate?
    Needs the subject's consent valid now for the purpose; the check is an audit entry."""
    state = service(request)
    fields, images = await read_images(
        request, s.SubjectVerifyJSON, s.SubjectVerifyFields, {"image": False}, max_images=1
    )
    purpose = purpose_of(x_purpose, fields.purpose)
    result = await state.run(
        state.gallery.verify_subject,
        subject,
        images["image"][0].stream(),
        actor=caller.owner,
        purpose=purpose,
        gallery=fields.gallery,
        model=True,
    )
    state.metrics.count("verifications", match=str(result.match).lower(), kind="subject")
    return result


# ------------------------------------------------------------------------------------------------ identify
@v1.post(
    "/identify",
    response_model=Identification,
    tags=["identify"],
    **op(
        "admin",
        "operator",
        summary="Identify faces (1:N)",
        body=image_request_body(s.IdentifyJSON, s.IdentifyFields, {"image": False}),
    ),
)
async def identify(request: Request, caller: Caller, x_purpose: PurposeHeader = None) -> Identification:
    """Search every face of the image against the gallery. Per face: its box and the candidates at or above
    the policy threshold, each pending human review. Faces that match no one leave no trace."""
    state = service(request)
    fields, images = await read_images(request, s.IdentifyJSON, s.IdentifyFields, {"image": False}, max_images=1)
    purpose = purpose_of(x_purpose, fields.purpose)
    result = await state.run(
        state.gallery.identify,
        images["image"][0].stream(),
        actor=caller.owner,
        purpose=purpose,
        gallery=fields.gallery,
        top_k=fields.top_k,
        model=True,
    )
    state.metrics.count("identifications")
    state.metrics.count("faces_searched", len(result.faces))
    state.metrics.count("candidates", sum(len(f.candidates) for f in result.faces))
    return result
