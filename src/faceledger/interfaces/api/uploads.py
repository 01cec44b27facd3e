"""Images in requests: multipart file uploads or base64 strings in JSON, read into memory only.

Nothing uploaded is written anywhere: multipart parts stay in memory (the request body is already bounded by
the service's upload limit), and the bytes are dropped when the request ends. Only an enrollment keeps
something: the template made from the face, encrypted, and the SHA-256 of the image.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from faceledger.interfaces.api.errors import ApiError

M = TypeVar("M", bound=BaseModel)
_PART_LIMIT = 1 << 40


class _InMemoryMultiPartParser(MultiPartParser):
    """Starlette's parser with file parts kept in memory (never spooled to a temporary file)."""

    spool_max_size = _PART_LIMIT


class NamedBytes(io.BytesIO):
    """Bytes of one upload with the name it is reported under (``image``, ``images[1]``, a file name)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


@dataclass
class Upload:
    """One uploaded image."""

    name: str
    data: bytes

    def stream(self) -> NamedBytes:
        """A fresh file object over the bytes (the gallery reads it once)."""
        return NamedBytes(self.data, self.name)


def _validation(exc: ValidationError, prefix: str = "body") -> RequestValidationError:
    errors = [{"loc": (prefix, *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return RequestValidationError(errors)


def _decode_base64(value: str, name: str) -> bytes:
    text = value.strip()
    if text.startswith("data:") and "," in text:  # data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    text = text.replace("-", "+").replace("_", "/")  # accept the URL-safe alphabet too
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            422, "bad_base64", f"{name}: not valid base64; send the image file's bytes base64-encoded"
        ) from None
    if not data:
        raise ApiError(422, "bad_image", f"{name}: the image is empty")
    return data


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_images(
    request: Request,
    json_model: type[BaseModel],
    fields_model: type[M],
    image_fields: dict[str, bool],
    *,
    max_images: int,
) -> tuple[M, dict[str, list[Upload]]]:
    """Parse an image request: its non-image fields as ``fields_model``, its images by field name.

    ``image_fields`` maps each image field to whether it takes several images. JSON bodies are validated with
    ``json_model`` (images as base64 strings); multipart bodies carry the images as file parts and the other
    fields as text parts. Raises 415 for other content types and 422 naming the field for anything malformed.
    """
    kind = _content_type(request)
    if kind == "application/json" or kind.endswith("+json"):
        return await _read_json(request, json_model, fields_model, image_fields, max_images)
    if kind == "multipart/form-data":
        return await _read_multipart(request, fields_model, image_fields, max_images)
    names = ", ".join(f"'{n}'" for n in image_fields)
    raise ApiError(
        415,
        "unsupported_media_type",
        f"send the image(s) as multipart/form-data file fields ({names}) or as application/json with "
        f"base64 strings; got content type {kind or 'none'!r}",
    )


async def _read_json(
    request: Request,
    json_model: type[BaseModel],
    fields_model: type[M],
    image_fields: dict[str, bool],
    max_images: int,
) -> tuple[M, dict[str, list[Upload]]]:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(422, "validation_error", "request body is empty: send a JSON object with the image(s)")
    try:
        payload: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(422, "validation_error", f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # '[' * 100000: Python's parser gives up on the depth, which no image request needs
        raise ApiError(422, "validation_error", "request body is nested too deeply to be a JSON request") from None
    if not isinstance(payload, dict):
        raise ApiError(422, "validation_error", "request body must be a JSON object")
    try:
        parsed = json_model.model_validate(payload)
    except ValidationError as exc:
        raise _validation(exc) from None
    images: dict[str, list[Upload]] = {}
    for field, many in image_fields.items():
        value = getattr(parsed, field)
        values = list(value) if many else [value]
        if len(values) > max_images:
            raise ApiError(
                422, "too_many_images", f"{field}: {len(values)} images, more than the limit of {max_images}"
            )
        names = [f"{field}[{i}]" if many else field for i in range(len(values))]
        images[field] = [Upload(n, _decode_base64(v, n)) for n, v in zip(names, values, strict=True)]
    fields = fields_model.model_validate(parsed.model_dump(include=set(fields_model.model_fields)))
    return fields, images


async def _read_multipart(
    request: Request, fields_model: type[M], image_fields: dict[str, bool], max_images: int
) -> tuple[M, dict[str, list[Upload]]]:
    parser = _InMemoryMultiPartParser(
        request.headers,
        request.stream(),
        max_files=max_images + len(image_fields),
        max_fields=len(fields_model.model_fields) + 5,
        max_part_size=64 * 1024,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(422, "validation_error", f"malformed multipart body: {exc.message}") from None
    try:
        texts: dict[str, str] = {}
        images: dict[str, list[Upload]] = {name: [] for name in image_fields}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in image_fields:
                    raise ApiError(
                        422,
                        "validation_error",
                        f"{key}: unexpected file field; images go in {', '.join(repr(n) for n in image_fields)}",
                    )
                data = await value.read()
                position = len(images[key])
                label = value.filename or (f"{key}[{position}]" if image_fields[key] else key)
                if not data:
                    raise ApiError(422, "bad_image", f"{label}: the uploaded file is empty")
                images[key].append(Upload(label, data))
            elif key in image_fields:
                raise ApiError(
                    422, "validation_error", f"{key}: must be a file part (multipart upload), not a text field"
                )
            elif key in texts:
                raise ApiError(422, "validation_error", f"{key}: given more than once")
            else:
                texts[key] = value
    finally:
        await form.close()
    for key, many in image_fields.items():
        found = images[key]
        if not found:
            raise ApiError(422, "validation_error", f"{key}: an image file is required")
        if not many and len(found) > 1:
            raise ApiError(422, "validation_error", f"{key}: send one image, not {len(found)}")
        if len(found) > max_images:
            raise ApiError(422, "too_many_images", f"{key}: {len(found)} images, more than the limit of {max_images}")
    try:
        fields = fields_model.model_validate({k: v for k, v in texts.items() if v != ""})
    except ValidationError as exc:
        raise _validation(exc) from None
    return fields, images


def image_request_body(
    json_model: type[BaseModel], fields_model: type[BaseModel], image_fields: dict[str, bool]
) -> dict[str, Any]:
    """``openapi_extra`` describing a body that is either JSON (base64 images) or multipart (file parts)."""
    json_schema = json_model.model_json_schema()
    for field in image_fields:
        prop = json_schema["properties"][field]
        target = prop.get("items", prop) if image_fields[field] else prop
        target["contentEncoding"] = "base64"
    form_props: dict[str, Any] = {}
    required = [name for name in image_fields]
    for name, info in fields_model.model_fields.items():
        schema = _form_scalar(fields_model.model_json_schema()["properties"][name])
        form_props[name] = schema
        if info.is_required():
            required.append(name)
    for field, many in image_fields.items():
        binary = {"type": "string", "format": "binary"}
        form_props[field] = {"type": "array", "items": binary, "minItems": 1} if many else binary
    form_schema = {"type": "object", "properties": form_props, "required": required}
    encoding = {field: {"contentType": "image/*, application/octet-stream"} for field in image_fields}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_schema},
                "multipart/form-data": {"schema": form_schema, "encoding": encoding},
            },
        }
    }


def _form_scalar(schema: dict[str, Any]) -> dict[str, Any]:
    """A form field's schema: the non-null alternative of an optional field (forms cannot send null)."""
    out = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            out.update(option)
    return out
