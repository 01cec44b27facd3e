"""Model cards: what a model is, where it came from, and how its scores translate into error rates."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.errors import ModelError


def bundled_dir() -> Path:
    """Folder holding the bundled ONNX files, their cards and licence notices."""
    return Path(str(resources.files("faceledger.models") / "bundled"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Calibration:
    """Measured false-match rate (FMR) and false non-match rate (FNMR) at a grid of similarity thresholds.

    ``thresholds`` ascend, ``fmr`` does not increase. :meth:`threshold_for_fmr` and :meth:`fmr_at` interpolate on
    that grid; outside it they clamp, so an FMR below the smallest measured one maps to the highest threshold measured.
    """

    thresholds: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray
    dataset: str
    method: str
    genuine_pairs: int
    impostor_pairs: int
    default_fmr: float

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str) -> Calibration:
        """Build from the ``[calibration]`` table of a card; ``where`` names the file in errors."""
        try:
            thresholds = np.asarray(table["thresholds"], dtype=np.float64)
            fmr = np.asarray(table["fmr"], dtype=np.float64)
            fnmr = np.asarray(table.get("fnmr", [np.nan] * len(thresholds)), dtype=np.float64)
            calibration = cls(
                thresholds=thresholds,
                fmr=fmr,
                fnmr=fnmr,
                dataset=str(table.get("dataset", "")),
                method=str(table.get("method", "")),
                genuine_pairs=int(table.get("genuine_pairs", 0)),
                impostor_pairs=int(table.get("impostor_pairs", 0)),
                default_fmr=float(table.get("default_fmr", 1e-3)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: [calibration] is malformed ({exc}); it needs thresholds and fmr lists") from exc
        if thresholds.ndim != 1 or len(thresholds) < 2 or fmr.shape != thresholds.shape:
            raise ModelError(f"{where}: [calibration] thresholds and fmr must be lists of the same length >= 2")
        if np.any(np.diff(thresholds) <= 0) or np.any(np.diff(fmr) > 0):
            raise ModelError(f"{where}: [calibration] thresholds must ascend and fmr must not increase")
        return calibration

    def fmr_at(self, threshold: float) -> float:
        """False-match rate measured at ``threshold`` (linear interpolation on the calibration grid)."""
        return float(np.interp(threshold, self.thresholds, self.fmr))

    def threshold_for_fmr(self, target_fmr: float) -> float:
        """Lowest similarity threshold whose measured FMR is at most ``target_fmr``."""
        if not 0.0 < target_fmr < 1.0:
            raise ValueError(f"target FMR must be between 0 and 1, got {target_fmr}")
        ok = np.nonzero(self.fmr <= target_fmr)[0]
        if len(ok) == 0:
            return float(self.thresholds[-1])
        return float(self.thresholds[ok[0]])


@dataclass(frozen=True)
class ModelCard:
    """Identity and provenance of one model file.

    ``kind`` is ``"detector"`` or ``"recognizer"``; ``input`` is the input specification (channels, mean, std, ...);
    ``calibration`` is present when the recognizer's scores have been mapped to error rates on real data.
    """

    name: str
    kind: str
    path: Path
    sha256: str
    license: str = "unknown"
    source: str = "user-supplied file"
    dim: int | None = None
    input: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None

    @classmethod
    def from_toml(cls, card_path: Path, model_path: Path | None = None, verify: bool = True) -> ModelCard:
        """Read a card; with ``verify`` the model file's SHA-256 must match the card's."""
        try:
            data = tomllib.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ModelError(f"{card_path}: cannot read model card ({exc})") from exc
        path = model_path or card_path.with_name(str(data.get("file", card_path.stem + ".onnx")))
        if not path.is_file():
            raise ModelError(f"{path}: model file named by card {card_path.name} is missing; reinstall faceledger")
        sha = str(data.get("sha256", ""))
        if verify:
            actual = file_sha256(path)
            if sha and actual != sha:
                raise ModelError(
                    f"{path}: SHA-256 {actual} does not match its card ({sha}); the file is damaged or replaced"
                )
        calibration = data.get("calibration")
        return cls(
            name=str(data.get("name", path.stem)),
            kind=str(data.get("kind", "")),
            path=path,
            sha256=sha or file_sha256(path),
            license=str(data.get("license", "unknown")),
            source=str(data.get("source", "")),
            dim=int(data["dim"]) if "dim" in data else None,
            input=dict(data.get("input", {})),
            published=dict(data.get("published", {})),
            calibration=Calibration.from_table(calibration, str(card_path)) if calibration else None,
        )

    @classmethod
    def for_user_file(cls, path: Path, kind: str) -> ModelCard:
        """A card for a user-supplied model: reads ``<file>.toml`` beside it when present, else a minimal card."""
        sidecar = path.with_suffix(".toml")
        if sidecar.is_file():
            return cls.from_toml(sidecar, model_path=path)
        return cls(name=path.stem, kind=kind, path=path, sha256=file_sha256(path))


def bundled_card(name: str) -> ModelCard:
    """Card of a bundled model (``"yunet_2023mar"`` or ``"sface_2021dec"``), its file's checksum verified."""
    card = bundled_dir() / f"{name}.toml"
    if not card.is_file():
        raise ModelError(f"no bundled model named {name!r}; the package may be damaged, reinstall faceledger")
    return ModelCard.from_toml(card)
