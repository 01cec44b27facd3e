"""Model cards: what a model is, where it came from, and how its scores translate into error rates."""

from __future__ import annotations

import hashlib
import math
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


class CalibrationRangeError(ModelError, ValueError):
    """A target false-match rate outside what the calibration measured."""


def _wilson(rate: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``rate`` observed on ``n`` trials (hand-written: five lines,
    and scipy is not a dependency). With no event observed the upper end is about 3.8 / n."""
    if n <= 0:
        return (rate, rate)
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class FmrEstimate:
    """What a calibration says of the false-match rate at one threshold.

    ``state`` is ``measured`` (``fmr`` with its 95 % interval ``low``..``high``), ``below_measurable`` (no
    impostor pair of the calibration scored this high: ``fmr`` is None and the rate is below ``high``) or
    ``above_table`` (below the calibration's lowest threshold: at least ``low``).
    """

    fmr: float | None
    low: float
    high: float
    impostor_pairs: int
    state: str

    def describe(self) -> str:
        """One phrase for people, never more precise than the measurement."""
        pairs = f", from {self.impostor_pairs:,} impostor pairs" if self.impostor_pairs else ""
        if self.state == "below_measurable":
            return f"below what the calibration can measure (under {self.high:.1e} at 95 % confidence{pairs})"
        if self.state == "above_table":
            return f"at least {self.low:.2g} (below the calibration's lowest threshold)"
        assert self.fmr is not None
        return f"{self.fmr:.1e} (95 % interval {self.low:.1e} to {self.high:.1e}{pairs})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"fmr": self.fmr, "low": self.low, "high": self.high, "state": self.state,
                "impostor_pairs": self.impostor_pairs}  # fmt: skip


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
        """False-match rate measured at ``threshold`` (linear interpolation on the calibration grid; clamped at its
        ends: use :meth:`estimate` to know whether the value was measured or is only a bound)."""
        return float(np.interp(threshold, self.thresholds, self.fmr))

    @property
    def smallest_fmr(self) -> float:
        """The smallest false-match rate this calibration can tell from zero: one impostor pair in all of them
        (the table's smallest non-zero rate when the number of pairs is not recorded)."""
        if self.impostor_pairs > 0:
            return 1.0 / self.impostor_pairs
        nonzero = self.fmr[self.fmr > 0]
        return float(nonzero.min()) if nonzero.size else 0.0

    def estimate(self, threshold: float) -> FmrEstimate:
        """The false-match rate at ``threshold`` as measured, with its 95 % interval, or the bound that is all the
        calibration can say beyond its ends (above its highest impostor score; below its lowest threshold)."""
        n = self.impostor_pairs
        if threshold < float(self.thresholds[0]):
            low = _wilson(float(self.fmr[0]), n)[0] if n else float(self.fmr[0])
            return FmrEstimate(None, low, 1.0, n, "above_table")
        rate = self.fmr_at(threshold)
        if threshold > float(self.thresholds[-1]):
            high = _wilson(float(self.fmr[-1]) if round(float(self.fmr[-1]) * n) > 1 else 0.0, n)[1] if n else rate
            return FmrEstimate(None, 0.0, high, n, "below_measurable")
        low, high = _wilson(rate, n) if n else (rate, rate)
        return FmrEstimate(rate, low, high, n, "measured")

    def check_target(self, target_fmr: float) -> None:
        """Refuse a target false-match rate this calibration cannot measure (:class:`CalibrationRangeError`)."""
        floor = self.smallest_fmr
        if 0.0 < target_fmr < floor:
            pairs = f"{self.impostor_pairs:,} impostor pairs" if self.impostor_pairs else "its pairs"
            needed = math.ceil(3.0 / target_fmr)
            raise CalibrationRangeError(
                f"a false-match rate of {target_fmr:g} is below what this calibration can measure: {pairs} "
                f"measure rates down to {floor:.1e} (one false match among them); showing {target_fmr:g} with "
                f"95 % confidence takes at least {needed:,} impostor pairs with no false match. Choose a target "
                f"of at least {floor:.1e}, or calibrate on more data (`faceledger calibrate`)"
            )

    def threshold_for_fmr(self, target_fmr: float) -> float:
        """Lowest similarity threshold whose measured FMR is at most ``target_fmr``; a target below what the
        calibration can measure is refused (:meth:`check_target`)."""
        if not 0.0 < target_fmr < 1.0:
            raise ValueError(f"target FMR must be between 0 and 1, got {target_fmr}")
        self.check_target(target_fmr)
        ok = np.nonzero(self.fmr <= target_fmr)[0]
        if len(ok) == 0:
            return float(self.thresholds[-1])
        return float(self.thresholds[ok[0]])


@dataclass(frozen=True)
class ModelCard:
    """Identity and provenance of one model file.

    ``kind`` is ``"detector"`` or ``"recognizer"``; ``input`` is the input specification (channels, mean, std, ...);
    ``calibration`` is present when the recognizer's scores have been mapped to error rates on real data.
    ``runtime`` is what runs the file (``"onnxruntime"``, or ``"openvino"`` at ``precision``, see
    :mod:`faceledger.models.openvino_session`); the calibration holds for that runtime and precision.
    ``same_embeddings_as`` lists the SHA-256 of earlier builds of the file that compute the same embeddings (a
    faster graph of the same arithmetic): templates a gallery recorded with one of them are this model's.
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
    runtime: str = "onnxruntime"
    precision: str = ""
    same_embeddings_as: tuple[str, ...] = ()

    def model_ids(self) -> tuple[str, ...]:
        """The ids templates made with this model are recorded under (``name:<first 16 hex digits of the
        SHA-256>``): this file's first, then those of the earlier builds in ``same_embeddings_as``."""
        return tuple(f"{self.name}:{str(sha)[:16]}" for sha in (self.sha256, *self.same_embeddings_as))

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
            runtime=str(data.get("runtime", "onnxruntime")),
            precision=str(data.get("precision", "")),
            same_embeddings_as=tuple(str(sha) for sha in data.get("same_embeddings_as", ())),
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
