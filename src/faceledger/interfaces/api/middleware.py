"""ASGI middleware of the service: request ids and metrics, the request timeout, the request body limit."""

from __future__ import annotations

import json
import logging
import time
import uuid

import anyio
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceledger.interfaces.api.errors import PayloadTooLarge, error_body
from faceledger.interfaces.api.metrics import Metrics

log = logging.getLogger("faceledger.api")
access = logging.getLogger("faceledger.access")


async def _send_error(send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps(error_body(code, message)).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ServiceMiddleware:
    """Outermost layer: gives each request an id (``X-Request-ID``), times it, counts it, enforces the timeout
    and the body size limit.

    A request still running after ``timeout`` seconds is answered 504 (the work it started may still
    complete, and is then on the ledger). A body larger than ``max_body`` bytes is answered 413, from the
    ``Content-Length`` header before anything is read, or as soon as a streamed body passes the limit.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, timeout: float, max_body: int, access_log: bool = False
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.timeout = timeout
        self.max_body = max_body
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        rid_header = (b"x-request-id", request_id.encode())
        status = 500
        started = False
        begin = time.perf_counter()
        self.metrics.started()

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), rid_header]}
            await send(message)

        try:
            length = _content_length(scope)
            if length is not None and length > self.max_body:
                await _send_error(send_wrapper, 413, "too_large", PayloadTooLarge(self.max_body).detail, [])
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise PayloadTooLarge(self.max_body)
                return message

            with anyio.move_on_after(self.timeout) as timer:
                try:
                    await self.app(scope, limited_receive, send_wrapper)
                except Exception:
                    # Whatever escaped the exception handlers: log it, answer in the one error shape.
                    log.exception("unexpected error (request %s)", request_id)
                    if not started:
                        await _send_error(
                            send_wrapper,
                            500,
                            "internal",
                            f"internal error (request {request_id}); the server log has details",
                            [],
                        )
                    return
            if timer.cancelled_caught and not started:
                await _send_error(
                    send_wrapper,
                    504,
                    "timeout",
                    f"the request took longer than {self.timeout:g} s and was abandoned; the server is busy or "
                    "the image is too large. An enrollment may still have completed: retrying it is safe",
                    [],
                )
        finally:
            label = _route_label(scope)
            elapsed = time.perf_counter() - begin
            self.metrics.finished(scope.get("method", "?"), label, status, elapsed)
            if self.access_log:
                # The route template, never the path or its query string: those can name a subject or carry an
                # erasure's free-text reason, and the log outlives the erasure.
                client = scope.get("client") or ("-", 0)
                access.info(
                    '%s - "%s %s" %d %.1f ms %s', client[0], scope.get("method", "?"), label, status,
                    elapsed * 1000, request_id,
                )  # fmt: skip


def _route_label(scope: Scope) -> str:
    """The route template of a request (``/v1/subjects/{subject}``, never the path with its ids), ``unmatched``
    when no route took it. FastAPI's routes put themselves in the scope; Starlette's (``/docs``, ``/openapi.json``)
    leave only their endpoint, which is looked up among the app's routes. A mount's files (``/assets``) are one
    route, ``/assets/{path}``."""
    path = getattr(scope.get("route"), "path", None)
    endpoint = scope.get("endpoint")
    if path is None and endpoint is not None:
        routes = getattr(scope.get("app"), "routes", ())
        path = next((r.path for r in routes if getattr(r, "endpoint", None) is endpoint), None)
        if path is None:
            mount = next((r for r in routes if isinstance(r, Mount) and r.app is endpoint), None)
            path = mount.path_format if mount is not None else None
    return path or "unmatched"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
