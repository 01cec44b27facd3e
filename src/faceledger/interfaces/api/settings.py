"""Settings of the REST service: where the database is, which models run, and the limits every request obeys.

Settings come from flags of ``faceledger serve`` or from the environment (each worker process of a
multi-worker server reads them from the environment its parent set). :meth:`ServiceSettings.to_env` and
:meth:`ServiceSettings.from_env` convert between the two.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from faceledger import config
from faceledger.config import DB_ENV, DETECTOR_ENV, KEY_FILE_ENV, RECOGNIZER_ENV, THREADS_ENV

ENV_PREFIX = "FACELEDGER_API_"

# Settings that share an environment variable with the rest of faceledger.
_SHARED_ENV = {
    "db": DB_ENV,
    "key_file": KEY_FILE_ENV,
    "detector": DETECTOR_ENV,
    "recognizer": RECOGNIZER_ENV,
    "threads": THREADS_ENV,
}


def _location(value: str | os.PathLike[str] | config.Database) -> Path | str:
    """An SQLite database as its file, a server database as its URL."""
    db = config.database(value)
    return db.path if db.path is not None else db.text


@dataclass(frozen=True)
class ServiceSettings:
    """Everything a service process needs to start.

    Attributes:
        db: the database created by ``faceledger init``: an SQLite file (given as a path or an ``sqlite:///`` URL,
            kept as the file's path) or a ``postgresql://`` URL (kept as given); see :func:`faceledger.config.database`.
        key_file: master key file (default: the SQLite database's path plus ``.key``; required for PostgreSQL;
            ``FACELEDGER_MASTER_KEY`` wins).
        detector, recognizer: ONNX files replacing the bundled models.
        max_upload_bytes: largest request body accepted (413 above it).
        max_pixels: largest image accepted, in pixels (checked from the header, before decoding).
        max_faces: most faces an image may contain (422 above it).
        max_images: most images one enrollment request may carry.
        rate_limit: requests per API key per minute (429 with ``Retry-After`` above it; 0 disables every limit),
            for every role but operator: a person at the web UI or a script of an administrator, enroller,
            reviewer or auditor.
        operator_rate_limit: requests per operator key per minute (0: no limit for operators). Operator keys are
            the automated clients of a deployment (a door camera's gateway sends an identify for each new face
            it tracks, a busy entrance a few a second, several cameras behind one gateway ten times that);
            the default, 50 a second, is about half of what 2 CPUs serve (BENCHMARKS.md), so one key can
            neither be stopped by a crowd at its door nor take the whole service.
        timeout: seconds a request may take before it is answered 504.
        model_concurrency: images processed by the models at once in one process (others queue).
        threads: onnxruntime threads per model and request.
        purge_interval: seconds between scheduled retention runs (0 disables them).
        access_log: log one line per request naming its route template (``/v1/subjects/{subject}``), never the
            path or query string, which can hold subject ids and free-text reasons.
    """

    db: Path | str
    key_file: Path | None = None
    detector: Path | None = None
    recognizer: Path | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_faces: int = 32
    max_images: int = 10
    rate_limit: int = 600
    operator_rate_limit: int = 3000
    timeout: float = 30.0
    model_concurrency: int = max(1, os.cpu_count() or 1)
    threads: int = 1
    purge_interval: float = 24 * 3600.0
    access_log: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", _location(self.db))
        for name in ("key_file", "detector", "recognizer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        positive = ("max_upload_bytes", "max_pixels", "max_faces", "max_images", "model_concurrency", "threads")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("rate_limit", "operator_rate_limit", "purge_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or more, not {getattr(self, name)}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be more than 0 seconds, not {self.timeout}")

    @property
    def resolved_key_file(self) -> Path:
        """The master key file in use: ``key_file``, else the database path plus ``.key``.

        Only these settings count: :meth:`from_env` has already read ``FACELEDGER_KEY_FILE`` into ``key_file``.
        """
        return config.key_file(self.db, self.key_file, environ={})

    @staticmethod
    def env_name(field_name: str) -> str:
        """The environment variable of a setting (``max_faces`` → ``FACELEDGER_API_MAX_FACES``)."""
        return _SHARED_ENV.get(field_name, ENV_PREFIX + field_name.upper())

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables (unset optional paths are left out)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[self.env_name(f.name)] = os.fspath(value) if isinstance(value, Path) else str(value)
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read the settings from the environment; raises :class:`ValueError` naming a malformed variable.

        The database is ``FACELEDGER_DB`` (a path or a URL), else ``faceledger.db`` (see :mod:`faceledger.config`).
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {"db": _location(config.database(environ=env))}
        for f in fields(cls):
            if f.name == "db":
                continue
            name = cls.env_name(f.name)
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            kind = str(f.type)
            try:
                if "Path" in kind:
                    kwargs[f.name] = Path(raw)
                elif "bool" in kind:
                    if raw.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(raw)
                    kwargs[f.name] = raw.lower() in ("true", "1")
                elif "float" in kind:
                    kwargs[f.name] = float(raw)
                else:
                    kwargs[f.name] = int(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {f.name.replace('_', ' ')}") from None
        return cls(**kwargs)  # type: ignore[arg-type]
