"""The results that exist only on the command line: what ``init`` made, a policy change, an API key with its
one-time token, a file written, an image processed by the engine, an evaluation and its files...

Each carries what its ``--json`` form prints, in that order (``to_dict``); :mod:`.render` prints it for a
person.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceledger.gallery.report import TransparencyReport
from faceledger.ledger.records import ApiKey


class _Fields:
    """``to_dict``: the dataclass fields, in order."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Initialised(_Fields):
    """What ``init`` created."""

    db: str
    master_key: str
    signing_key: str
    policy_hash: str
    galleries: list[str]
    audit_head: dict[str, Any]


@dataclass(frozen=True)
class PolicyChange(_Fields):
    """A policy put in force, and the one it replaced."""

    previous_hash: str
    hash: str


@dataclass(frozen=True)
class PolicyValid(_Fields):
    """A policy file that validates (``policy check``)."""

    file: str
    valid: bool
    hash: str


@dataclass(frozen=True)
class FileWritten(_Fields):
    """Entries written to a file (``audit export -o``)."""

    file: str
    entries: int


@dataclass(frozen=True)
class Anonymized(_Fields):
    """An anonymized copy written (``anonymize``)."""

    image: str
    output: str
    faces: int
    hidden: int
    error: None = None


@dataclass(frozen=True)
class NewApiKey:
    """An API key just created, with its token (shown this once)."""

    record: ApiKey
    token: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the key's fields and ``token``."""
        return {**self.record.to_dict(), "token": self.token}


@dataclass(frozen=True)
class RevokedApiKey:
    """An API key after its revocation."""

    record: ApiKey

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the key's fields."""
        return self.record.to_dict()


@dataclass(frozen=True)
class MasterKeyRotation:
    """What ``keys rotate-master`` did (the gallery's own summary)."""

    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the gallery's summary."""
        return self.info


@dataclass(frozen=True)
class ReportFile:
    """A transparency report written to a file as Markdown (``--json`` still prints the report)."""

    report: TransparencyReport
    path: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the report's."""
        return self.report.to_dict()


@dataclass(frozen=True)
class Detected:
    """The faces found in one image (``detect``)."""

    image: str
    faces: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"image": self.image, "faces": self.faces.to_dicts(), "error": None}


@dataclass(frozen=True)
class Compared:
    """A 1:1 comparison of two images' largest faces (``verify``)."""

    verification: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the engine's."""
        return dict(self.verification.to_dict())


@dataclass(frozen=True)
class Evaluated:
    """An evaluation report and the files written (``evaluate``)."""

    report: dict[str, Any]
    outputs: dict[str, Path]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the report and where its files are."""
        from faceledger.evaluate.report import clean_json

        return dict(clean_json({**self.report, "outputs": {k: str(v) for k, v in self.outputs.items()}}))


@dataclass(frozen=True)
class Calibrated:
    """A calibration and the files it was written to (``calibrate``)."""

    result: Any
    target_fmr: float
    written: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the calibration and the files written."""
        from faceledger.evaluate.report import clean_json

        return dict(clean_json({**self.result.to_dict(), "written": self.written}))
