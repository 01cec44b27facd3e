"""Threshold calibration: the threshold that meets a target FMR on a dataset, and where it is written.

* :func:`calibrate_pairs` chooses the threshold (with the number of impostor comparisons behind it and a
  Clopper-Pearson interval) and the FMR/FNMR curve around it;
* :func:`card_table` renders the ``[calibration]`` table of a model card (thresholds ascending, FMR
  non-increasing, FNMR), the shape :class:`faceledger.models.cards.Calibration` reads;
* :func:`policy_table` renders a ``[calibration]`` table for a policy file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.evaluate import metrics as m

__all__ = ["CalibrationResult", "calibrate_pairs", "card_table", "policy_table"]


@dataclass
class CalibrationResult:
    """A calibrated threshold plus the curve a model card stores, and what data it came from."""

    calibration: m.Calibration
    curve: dict[str, list[float]]
    curve_ci_high: list[float]
    dataset: str
    method: str
    recognizer: str | None = None
    recognizer_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the curve is left out; it goes into the model card)."""
        return {
            **self.calibration.to_dict(),
            "dataset": self.dataset,
            "method": self.method,
            "recognizer": self.recognizer,
            "recognizer_sha256": self.recognizer_sha256,
        }


def calibrate_pairs(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    target_fmr: float,
    *,
    dataset: str,
    method: str,
    confidence: float = 0.95,
    rule: str = "point",
) -> CalibrationResult:
    """Calibrate a threshold for ``target_fmr`` from genuine and impostor similarity scores.

    The curve holds the lowest threshold for log-spaced FMR levels down to ``1 / impostor pairs`` and,
    exactly, for the target and the standard levels 1e-1 ... 1e-6 that the impostor pairs can show, so looking
    up any of those in the card returns the same threshold as this calibration.
    """
    gen = np.asarray(genuine)
    imp = np.asarray(impostor)
    cal = m.calibrate_threshold(imp, target_fmr, genuine=gen, confidence=confidence, rule=rule)
    curve = m.calibration_curve(gen, imp)
    extra = {cal.threshold}
    for level in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        if level * imp.size >= 1:
            extra.add(m.threshold_at_fmr(imp, level)[0])
    thresholds = np.array(sorted(set(curve["thresholds"]) | extra), dtype=np.float64)
    imp_sorted = np.sort(imp.astype(np.float64))
    gen_sorted = np.sort(gen.astype(np.float64))
    false_matches = imp_sorted.size - np.searchsorted(imp_sorted, thresholds, side="left")
    fmr = false_matches / imp_sorted.size
    fnmr = np.searchsorted(gen_sorted, thresholds, side="left") / gen_sorted.size
    ci_high = [m.clopper_pearson(int(k), int(imp_sorted.size), confidence)[1] for k in false_matches]
    return CalibrationResult(
        calibration=cal,
        curve={
            "thresholds": [float(t) for t in thresholds],
            "fmr": [float(x) for x in fmr],
            "fnmr": [float(x) for x in fnmr],
        },
        curve_ci_high=[float(x) for x in ci_high],
        dataset=dataset,
        method=method,
    )


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def card_table(result: CalibrationResult, default_fmr: float) -> dict[str, Any]:
    """The ``[calibration]`` table of a model card."""
    cal = result.calibration
    return {
        "dataset": result.dataset,
        "method": result.method,
        "genuine_pairs": cal.genuine_pairs,
        "impostor_pairs": cal.impostor_pairs,
        "default_fmr": float(default_fmr),
        "confidence": cal.confidence,
        "created": _now(),
        "thresholds": result.curve["thresholds"],
        "fmr": result.curve["fmr"],
        "fmr_ci_high": result.curve_ci_high,
        "fnmr": result.curve["fnmr"],
    }


def policy_table(result: CalibrationResult) -> dict[str, Any]:
    """A ``[calibration]`` table for a policy file: the threshold and the evidence behind it."""
    cal = result.calibration
    table: dict[str, Any] = {
        "target_fmr": cal.target_fmr,
        "threshold": cal.threshold,
        "fmr": cal.fmr,
        "fmr_ci_low": cal.fmr_ci[0],
        "fmr_ci_high": cal.fmr_ci[1],
        "confidence": cal.confidence,
        "false_matches": cal.false_matches,
        "impostor_pairs": cal.impostor_pairs,
        "genuine_pairs": cal.genuine_pairs,
        "rule": cal.rule,
        "dataset": result.dataset,
        "method": result.method,
        "created": _now(),
    }
    if cal.tar is not None:
        table["tar"] = cal.tar
    if result.recognizer_sha256:
        table["recognizer"] = result.recognizer or ""
        table["recognizer_sha256"] = result.recognizer_sha256
    return table
