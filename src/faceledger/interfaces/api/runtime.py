"""What one service process holds while it runs: the gallery, the limits, and the helpers that run blocking
work off the event loop.

Each worker process opens its own :class:`~faceledger.gallery.Gallery` (its own SQLite connection); SQLite in
WAL mode with ``BEGIN IMMEDIATE`` writers lets several processes share the database safely.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np

from faceledger.engine import Engine
from faceledger.gallery import Gallery
from faceledger.interfaces.api.errors import ApiError, TooManyFaces, from_domain
from faceledger.interfaces.api.metrics import Metrics
from faceledger.interfaces.api.settings import ServiceSettings
from faceledger.vision.detection import Detections

T = TypeVar("T")


class LimitedEngine(Engine):
    """The engine, refusing images with more than ``max_faces`` faces (raises :class:`TooManyFaces`)."""

    def __init__(self, *args: Any, max_faces: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_faces = max_faces

    def detect(self, image: Any) -> Detections:
        """Faces in ``image`` (see :meth:`Engine.detect`), refused above the face limit."""
        found = super().detect(image)
        if len(found) > self.max_faces:
            raise TooManyFaces(
                f"image has {len(found)} faces, more than the limit of {self.max_faces} per request; "
                "crop it, or ask the operator to raise --max-faces"
            )
        return found


class RateLimiter:
    """Requests per key per minute, as a token bucket: ``per_minute`` requests at once, refilled evenly.

    Operator keys (identify and verify: the camera gateways and door clients of a deployment) have their own limit,
    ``operator_per_minute``; every other role has ``per_minute``. ``per_minute`` 0 turns every limit off,
    ``operator_per_minute`` 0 only the operators'.

    With ``shared`` (the PostgreSQL store's ``take_request``), the buckets are rows of the database, so every
    process on every host holds one limit together. Without it (SQLite) the count is kept in this process: with
    several workers each allows the limit on its own.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        shared: Callable[[str, int, float], float | None] | None = None,
        operator_per_minute: int | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.operator_per_minute = per_minute if operator_per_minute is None else operator_per_minute
        self.shared = shared is not None
        self._clock = clock
        self._shared = shared
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def limit(self, role: str | None = None) -> int:
        """Requests a minute allowed to a key of ``role`` (0: no limit)."""
        if self.per_minute <= 0:
            return 0
        return self.operator_per_minute if role == "operator" else self.per_minute

    def acquire(self, key: str, role: str | None = None) -> float | None:
        """Take one request for ``key`` (of ``role``): None when allowed, else the seconds to wait before retrying."""
        per_minute = self.limit(role)
        if per_minute <= 0:
            return None
        if self._shared is not None:
            return self._shared(key, per_minute, time.time())
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


@dataclass
class ServiceState:
    """The gallery and the limits of one service process."""

    settings: ServiceSettings
    gallery: Gallery
    metrics: Metrics
    rate_limiter: RateLimiter
    model_limiter: anyio.CapacityLimiter
    db_limiter: anyio.CapacityLimiter
    started_at: float = field(default_factory=time.time)

    @classmethod
    def open(
        cls, settings: ServiceSettings, metrics: Metrics | None = None, *, engine: LimitedEngine | None = None
    ) -> ServiceState:
        """Load the models and open the database (each worker process calls this once)."""
        if engine is None:
            recognizer: str | Path | None = settings.recognizer
            if recognizer is None:  # a gallery keeps the bundled recognizer its templates were made with
                with Gallery.open(settings.db, key_file=settings.resolved_key_file) as existing:
                    recognizer = existing.templates_recognizer()
            # This process runs at most model_concurrency images at once: Engine.map and the OpenVINO runtime's
            # streams are sized by it (an unset variable means the CPUs, too many for a worker among several)
            os.environ.setdefault("FACELEDGER_WORKERS", str(settings.model_concurrency))
            engine = LimitedEngine(
                settings.detector,
                recognizer,
                threads=settings.threads,
                max_pixels=settings.max_pixels,
                max_faces=settings.max_faces,
            )
            # Run the models once so the first request does not pay for their initialisation.
            engine.embed(np.zeros((64, 64, 3), np.uint8))
        else:
            engine.max_faces, engine.max_pixels = settings.max_faces, settings.max_pixels
        gallery = Gallery.open(settings.db, key_file=settings.resolved_key_file, engine=engine)
        return cls(
            settings=settings,
            gallery=gallery,
            metrics=metrics or Metrics(),
            rate_limiter=RateLimiter(
                settings.rate_limit,
                shared=gallery.shared_rate_limit(),
                operator_per_minute=settings.operator_rate_limit,
            ),
            model_limiter=anyio.CapacityLimiter(settings.model_concurrency),
            db_limiter=anyio.CapacityLimiter(8),
        )

    def close(self) -> None:
        """Close the database."""
        self.gallery.close()

    async def run(self, func: Callable[..., T], *args: Any, model: bool = False, **kwargs: Any) -> T:
        """Run blocking ``func`` in a worker thread and translate faceledger's errors into :class:`ApiError`.

        ``model=True`` for calls that run the face models: at most ``model_concurrency`` of those run at
        once. A request that times out stops waiting, but a call already started finishes in its thread (its
        effect, if any, is on the ledger).
        """
        limiter = self.model_limiter if model else self.db_limiter
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(func, *args, **kwargs), abandon_on_cancel=True, limiter=limiter
            )
        except ApiError:
            raise
        except Exception as exc:
            mapped = from_domain(exc)
            if mapped is None:
                raise
            raise mapped from None


def retry_after(seconds: float) -> str:
    """``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
