"""Engine routes: detection and the 1:1 check of two images (on the ledger, nothing kept)."""

from __future__ import annotations

import io
from typing import Any

from fastapi import Request

from faceledger.errors import ImageError, NoFaceError
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.routes.common import (
    NoFields,
    PurposeHeader,
    op,
    v1,
)
from faceledger.interfaces.api.security import Caller, purpose_of, service
from faceledger.interfaces.api.uploads import image_request_body, read_images


# ------------------------------------------------------------------------------------------------ engine
@v1.post(
    "/detect",
    response_model=s.DetectOut,
    tags=["vision"],
    **op(
        "admin",
        "enroller",
        "operator",
        summary="Detect faces",
        body=image_request_body(s.DetectJSON, NoFields, {"image": False}),
    ),
)
async def detect(request: Request, caller: Caller) -> dict[str, Any]:
    """Faces in one image (boxes, landmarks, quality), largest first. Nothing is stored or recorded."""
    state = service(request)
    _, images = await read_images(request, s.DetectJSON, NoFields, {"image": False}, max_images=1)
    upload = images["image"][0]

    def work() -> dict[str, Any]:
        engine = state.gallery.engine
        try:
            array = engine.load(upload.data)
        except ImageError as exc:
            raise ImageError(upload.name, exc.reason) from None
        faces = engine.detect(array)
        return {"width": int(array.shape[1]), "height": int(array.shape[0]), "faces": faces.to_dicts()}

    return await state.run(work, model=True)


@v1.post(
    "/verify",
    response_model=s.VerifyOut,
    tags=["vision"],
    **op(
        "admin",
        "operator",
        summary="Verify two faces (1:1)",
        body=image_request_body(s.VerifyJSON, s.VerifyFields, {"image_a": False, "image_b": False}),
    ),
)
async def verify(request: Request, caller: Caller, x_purpose: PurposeHeader = None) -> dict[str, Any]:
    """Compare the largest face of ``image_a`` with that of ``image_b`` at the policy's target false-match
    rate. Needs a purpose. Recorded on the ledger (both images' SHA-256, similarity, decision); nothing else is
    stored."""
    state = service(request)
    fields, images = await read_images(
        request, s.VerifyJSON, s.VerifyFields, {"image_a": False, "image_b": False}, max_images=1
    )
    purpose = purpose_of(x_purpose, fields.purpose)

    def work() -> dict[str, Any]:
        streams = []
        for field in ("image_a", "image_b"):
            upload = images[field][0]
            stream = io.BytesIO(upload.data)
            stream.name = upload.name  # named in errors and in the result
            streams.append(stream)
        try:
            result = state.gallery.verify_images(streams[0], streams[1], actor=caller.owner, purpose=purpose)
        except NoFaceError as exc:
            raise NoFaceError(f"{exc}; send an image with a visible face") from None
        out = result.to_dict()
        return {
            "similarity": out["similarity"],
            "match": out["match"],
            "threshold": out["threshold"],
            "fmr": out["fmr"],
            "fmr_interval": out.get("fmr_interval"),
            "fmr_state": out.get("fmr_state"),
            "purpose": purpose,
            "audit_seq": out["audit_seq"],
        }

    out = await state.run(work, model=True)
    state.metrics.count("verifications", match=str(out["match"]).lower(), kind="images")
    return out
