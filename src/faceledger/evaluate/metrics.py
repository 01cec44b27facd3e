"""Error-rate metrics for face verification, identification and detection (numpy only, no models).

Conventions used throughout:

* A *score* is a similarity: higher means "more likely the same person".
* A comparison is called a match when ``score >= threshold``.
* ``FMR(t)`` (false match rate) is the fraction of *impostor* scores (pairs of different people) ``>= t``;
  ``FNMR(t)`` (false non-match rate) the fraction of *genuine* scores (pairs of the same person) ``< t``;
  ``TAR = 1 - FNMR``.
* An error rate measured on ``n`` comparisons cannot be trusted below about ``10 / n``: figures at a target
  rate ``r`` are reported only when there are at least ``10 / r`` comparisons behind them
  (:func:`supports_rate`), otherwise the result says ``"not supported: N impostor pairs"``.
* Confidence intervals on an error rate are Clopper-Pearson (exact binomial) intervals, computed by inverting
  the binomial distribution function in log space (:func:`clopper_pearson`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.evaluate.detection import DetectionResult, detection_metrics  # re-exported: callers use m.

__all__ = [
    "DEFAULT_FMR_TARGETS",
    "MIN_ERRORS_FOR_SUPPORT",
    "Calibration",
    "ClosedSetResult",
    "DetectionResult",
    "OpenSetPoint",
    "OperatingPoint",
    "RocCurve",
    "auc",
    "best_accuracy",
    "binomial_cdf",
    "calibrate_threshold",
    "calibration_curve",
    "clopper_pearson",
    "closed_set_identification",
    "detection_metrics",
    "eer",
    "error_rates_at",
    "fnir_at_fpir",
    "roc_curve",
    "score_summary",
    "supports_rate",
    "tar_at_fmr",
    "threshold_at_fmr",
]

#: Target false-match rates reported by default.
DEFAULT_FMR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)

#: A rate ``r`` is reported only with at least ``MIN_ERRORS_FOR_SUPPORT / r`` comparisons behind it.
MIN_ERRORS_FOR_SUPPORT = 10.0

FloatArray = npt.NDArray[np.floating[Any]]


def _scores(values: npt.ArrayLike, name: str) -> FloatArray:
    """A 1-d finite float array (float32 kept as float32, anything else as float64)."""
    arr = np.asarray(values)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    arr = arr.reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: scores must be finite numbers (found NaN or infinity)")
    return arr


def _need(arr: FloatArray, name: str) -> None:
    if arr.size == 0:
        raise ValueError(f"{name}: no scores; the dataset needs at least one such pair for this metric")


def _next_up(value: float, dtype: np.dtype[Any]) -> float:
    """The smallest number of ``dtype`` strictly greater than ``value`` (so ``>=`` excludes ``value``)."""
    if dtype == np.float32:
        return float(np.nextafter(np.float32(value), np.float32(np.inf)))
    return float(np.nextafter(np.float64(value), np.inf))


def supports_rate(n_comparisons: int, rate: float) -> bool:
    """True when ``n_comparisons`` suffices to measure a rate as small as ``rate``: ``n >= 10 / rate``."""
    return n_comparisons * rate >= MIN_ERRORS_FOR_SUPPORT * (1 - 1e-9)


def _unsupported(n: int, rate: float, what: str = "impostor pairs") -> str:
    need = math.ceil(MIN_ERRORS_FOR_SUPPORT / rate - 1e-6)
    return f"not supported: {n} {what} (at least {need} needed to measure a rate of {rate:g})"


# -------------------------------------------------------------------------------------------------- intervals


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed in log space (exact up to floating-point rounding)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(1, k + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - i + 1) - np.log(i))))
    j = np.arange(k + 1, dtype=np.float64)
    log_pmf = log_comb + j * math.log(p) + (n - j) * math.log1p(-p)
    top = float(log_pmf.max())
    return float(min(1.0, math.exp(top) * float(np.exp(log_pmf - top).sum())))


def _solve_decreasing(func: Any, target: float) -> float:
    """The ``p`` in [0, 1] where the decreasing function ``func(p)`` equals ``target`` (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if func(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(hi, 1e-300):
            break
    return 0.5 * (lo + hi)


def clopper_pearson(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) confidence interval for a rate measured as ``errors / n``.

    Returns ``(low, high)``. The bounds solve ``P(X >= errors; p=low) = alpha/2`` and ``P(X <= errors; p=high)
    = alpha/2`` with ``alpha = 1 - confidence``; with ``n = 0`` the interval is ``(0, 1)``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n < 0 or errors < 0 or errors > n:
        raise ValueError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if errors == 0 else _solve_decreasing(lambda p: binomial_cdf(errors - 1, n, p), 1 - alpha / 2)
    high = 1.0 if errors == n else _solve_decreasing(lambda p: binomial_cdf(errors, n, p), alpha / 2)
    return low, high


# ----------------------------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class RocCurve:
    """Receiver operating characteristic: one point per distinct score, thresholds from high to low.

    ``thresholds[0]`` is ``+inf`` (nothing accepted); at ``thresholds[i]`` a comparison is a match when
    ``score >= thresholds[i]``, giving false-match rate ``fmr[i]`` and true-accept rate ``tar[i]``.
    """

    thresholds: FloatArray
    fmr: FloatArray
    tar: FloatArray
    genuine_pairs: int
    impostor_pairs: int

    @property
    def fnmr(self) -> FloatArray:
        """False non-match rate at each threshold (``1 - tar``)."""
        return 1.0 - self.tar


def _count_at_least(sorted_values: FloatArray, thresholds: FloatArray) -> npt.NDArray[np.int64]:
    return (sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")).astype(np.int64)


def roc_curve(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> RocCurve:
    """The full ROC of genuine and impostor score arrays (exact, no binning)."""
    gen = np.sort(_scores(genuine, "genuine"))
    imp = np.sort(_scores(impostor, "impostor"))
    _need(gen, "genuine")
    _need(imp, "impostor")
    distinct = np.unique(np.concatenate((gen.astype(np.float64), imp.astype(np.float64))))[::-1]
    thresholds = np.concatenate(([np.inf], distinct))
    tar = _count_at_least(gen, thresholds) / gen.size
    fmr = _count_at_least(imp, thresholds) / imp.size
    return RocCurve(thresholds, fmr, tar, int(gen.size), int(imp.size))


def auc(curve: RocCurve) -> float:
    """Area under the ROC (trapezoids; equals the probability that a genuine score beats an impostor score,
    ties counting one half)."""
    return float(np.trapezoid(curve.tar, curve.fmr))


def eer(curve: RocCurve) -> tuple[float, float]:
    """Equal error rate and the threshold where it occurs: ``(eer, threshold)``.

    Linear interpolation between the two operating points whose FMR - FNMR changes sign; the threshold
    returned is the lower of the two (the first one at which FMR >= FNMR).
    """
    diff = curve.fmr - curve.fnmr
    j = int(np.argmax(diff >= 0))  # diff[0] = -1 and diff[-1] = +1, so 1 <= j
    d0, d1 = diff[j - 1], diff[j]
    frac = 0.0 if d1 == d0 else float(-d0 / (d1 - d0))
    rate = float(curve.fmr[j - 1] + frac * (curve.fmr[j] - curve.fmr[j - 1]))
    return rate, float(curve.thresholds[j])


def best_accuracy(curve: RocCurve, balanced: bool = False) -> tuple[float, float]:
    """Highest accuracy over all thresholds and the threshold that gives it: ``(accuracy, threshold)``.

    Plain accuracy weighs every pair equally (so it is dominated by impostor pairs when they are many);
    ``balanced=True`` averages TAR and ``1 - FMR`` instead.
    """
    n_g, n_i = curve.genuine_pairs, curve.impostor_pairs
    acc = 0.5 * (curve.tar + 1.0 - curve.fmr) if balanced else (curve.tar * n_g + (1.0 - curve.fmr) * n_i) / (n_g + n_i)
    acc = acc[1:]  # skip +inf, which accepts nothing; that case is equal to a threshold above the top score
    j = int(np.argmax(acc))
    return float(acc[j]), float(curve.thresholds[j + 1])


@dataclass(frozen=True)
class OperatingPoint:
    """Error rates at one threshold, with Clopper-Pearson intervals and the counts behind them."""

    threshold: float
    fmr: float
    fnmr: float
    false_matches: int
    impostor_pairs: int
    false_non_matches: int
    genuine_pairs: int
    fmr_ci: tuple[float, float]
    fnmr_ci: tuple[float, float]

    @property
    def tar(self) -> float:
        """True accept rate, ``1 - fnmr``."""
        return 1.0 - self.fnmr

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form with stable keys."""
        return {
            "threshold": self.threshold,
            "fmr": self.fmr,
            "fnmr": self.fnmr,
            "tar": self.tar,
            "false_matches": self.false_matches,
            "impostor_pairs": self.impostor_pairs,
            "false_non_matches": self.false_non_matches,
            "genuine_pairs": self.genuine_pairs,
            "fmr_ci": list(self.fmr_ci),
            "fnmr_ci": list(self.fnmr_ci),
        }


def error_rates_at(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, threshold: float, confidence: float = 0.95
) -> OperatingPoint:
    """FMR and FNMR at ``threshold`` (match when ``score >= threshold``), with confidence intervals."""
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor")
    fm = int(np.count_nonzero(imp >= threshold))
    fnm = int(np.count_nonzero(gen < threshold))
    return OperatingPoint(
        threshold=float(threshold),
        fmr=fm / imp.size if imp.size else float("nan"),
        fnmr=fnm / gen.size if gen.size else float("nan"),
        false_matches=fm,
        impostor_pairs=int(imp.size),
        false_non_matches=fnm,
        genuine_pairs=int(gen.size),
        fmr_ci=clopper_pearson(fm, int(imp.size), confidence),
        fnmr_ci=clopper_pearson(fnm, int(gen.size), confidence),
    )


def threshold_at_fmr(impostor: npt.ArrayLike, target_fmr: float) -> tuple[float, int]:
    """The lowest threshold whose empirical FMR is at most ``target_fmr``: ``(threshold, false_matches)``.

    With ``n`` impostor scores, at most ``k = floor(target_fmr * n)`` of them may be accepted. The threshold
    is the smallest representable number above the ``(k+1)``-th highest impostor score (in the scores' own
    precision), so ``score >= threshold`` accepts exactly the impostors strictly above it (``k`` or fewer when
    scores tie).
    """
    imp = _scores(impostor, "impostor")
    _need(imp, "impostor")
    if not 0 <= target_fmr <= 1:
        raise ValueError(f"target FMR must be between 0 and 1, got {target_fmr}")
    n = imp.size
    k = math.floor(target_fmr * n + 1e-9)
    if k >= n:
        low = float(imp.min())
        return low, n
    # the (k+1)-th highest value = index n-1-k of the ascending order
    kth = float(np.partition(imp, n - 1 - k)[n - 1 - k])
    threshold = _next_up(kth, imp.dtype)
    return threshold, int(np.count_nonzero(imp >= threshold))


def tar_at_fmr(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    targets: Sequence[float] = DEFAULT_FMR_TARGETS,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """TAR at each target FMR, reported only where the number of impostor pairs supports the target.

    Each entry: ``{"fmr_target", "supported", "reason"}`` plus, when supported, ``"threshold"``, ``"tar"``,
    ``"fmr"`` (achieved), ``"false_matches"``, ``"impostor_pairs"`` and ``"fmr_ci"``. TAR is the fraction of
    genuine scores at or above the lowest threshold whose empirical FMR is at most the target (equivalently,
    the highest TAR on the ROC among points with FMR <= target).
    """
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor")
    _need(gen, "genuine")
    _need(imp, "impostor")
    out: list[dict[str, Any]] = []
    for target in targets:
        entry: dict[str, Any] = {"fmr_target": float(target), "impostor_pairs": int(imp.size)}
        if not supports_rate(imp.size, target):
            entry.update(supported=False, reason=_unsupported(int(imp.size), target))
            out.append(entry)
            continue
        threshold, fm = threshold_at_fmr(imp, target)
        entry.update(
            supported=True,
            reason=None,
            threshold=threshold,
            tar=float(np.count_nonzero(gen >= threshold) / gen.size),
            fmr=fm / imp.size,
            false_matches=fm,
            fmr_ci=list(clopper_pearson(fm, int(imp.size), confidence)),
        )
        out.append(entry)
    return out


def score_summary(scores: npt.ArrayLike) -> dict[str, Any]:
    """Count, mean, standard deviation, min, max and the 1/5/25/50/75/95/99th percentiles of a score array."""
    arr = _scores(scores, "scores").astype(np.float64)
    if arr.size == 0:
        return {"count": 0}
    qs = (1, 5, 25, 50, 75, 95, 99)
    values = np.percentile(arr, qs)
    return {
        "count": int(arr.size),
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "percentiles": {f"p{q}": float(v) for q, v in zip(qs, values, strict=True)},
    }


# ------------------------------------------------------------------------------------------------ calibration


@dataclass(frozen=True)
class Calibration:
    """A threshold chosen for a target FMR, with the evidence behind it.

    ``fmr`` is the empirical FMR at ``threshold`` on the calibration impostor pairs, ``fmr_ci`` its
    Clopper-Pearson interval at ``confidence``: the true FMR at this threshold lies in the interval with that
    confidence. ``rule`` is ``"point"`` (lowest threshold whose empirical FMR is <= target) or ``"upper"``
    (lowest threshold whose *upper* confidence bound is <= target: stricter, costs true accepts).
    ``supported`` is False when the impostor pairs are too few for the target (fewer than ``10 / target``, or,
    with ``"upper"``, when even zero false matches would leave the upper bound above the target).
    """

    target_fmr: float
    threshold: float
    fmr: float
    fmr_ci: tuple[float, float]
    false_matches: int
    impostor_pairs: int
    confidence: float
    rule: str
    supported: bool
    reason: str | None
    genuine_pairs: int
    tar: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form with stable keys."""
        return {
            "target_fmr": self.target_fmr,
            "threshold": self.threshold,
            "fmr": self.fmr,
            "fmr_ci": list(self.fmr_ci),
            "confidence": self.confidence,
            "false_matches": self.false_matches,
            "impostor_pairs": self.impostor_pairs,
            "genuine_pairs": self.genuine_pairs,
            "tar": self.tar,
            "rule": self.rule,
            "supported": self.supported,
            "reason": self.reason,
        }


def calibrate_threshold(
    impostor: npt.ArrayLike,
    target_fmr: float,
    genuine: npt.ArrayLike | None = None,
    confidence: float = 0.95,
    rule: str = "point",
) -> Calibration:
    """Choose the threshold that meets ``target_fmr`` on these impostor scores (see :class:`Calibration`)."""
    if rule not in ("point", "upper"):
        raise ValueError(f"rule must be 'point' or 'upper', got {rule!r}")
    imp = _scores(impostor, "impostor")
    _need(imp, "impostor")
    gen = _scores(genuine, "genuine") if genuine is not None else None
    n = int(imp.size)
    supported = supports_rate(n, target_fmr)
    reason = None if supported else _unsupported(n, target_fmr)
    if rule == "point":
        threshold, fm = threshold_at_fmr(imp, target_fmr)
    else:
        # largest k whose upper confidence bound is still <= target (the bound grows with k)
        lo, hi = -1, math.floor(target_fmr * n + 1e-9)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if clopper_pearson(mid, n, confidence)[1] <= target_fmr:
                lo = mid
            else:
                hi = mid - 1
        if lo < 0:
            supported = False
            reason = (
                f"not supported: {n} impostor pairs; even with no false match the upper "
                f"{confidence:.0%} bound on FMR would exceed {target_fmr:g}"
            )
            lo = 0
        threshold, fm = threshold_at_fmr(imp, lo / n)
    return Calibration(
        target_fmr=float(target_fmr),
        threshold=threshold,
        fmr=fm / n,
        fmr_ci=clopper_pearson(fm, n, confidence),
        false_matches=fm,
        impostor_pairs=n,
        confidence=confidence,
        rule=rule,
        supported=supported,
        reason=reason,
        genuine_pairs=0 if gen is None else int(gen.size),
        tar=None if gen is None or gen.size == 0 else float(np.count_nonzero(gen >= threshold) / gen.size),
    )


def calibration_curve(genuine: npt.ArrayLike, impostor: npt.ArrayLike, n_points: int = 40) -> dict[str, list[float]]:
    """A compact FMR/FNMR curve for a model card: ascending ``thresholds``, non-increasing ``fmr``, ``fnmr``.

    Thresholds are taken at log-spaced FMR levels from 0.5 down to the smallest rate the impostor pairs can
    show (``1 / n``), each the lowest threshold meeting that level, so the curve is dense where thresholds are
    set.
    """
    gen = np.sort(_scores(genuine, "genuine"))
    imp = _scores(impostor, "impostor")
    _need(gen, "genuine")
    _need(imp, "impostor")
    n = imp.size
    lowest = 1.0 / n
    levels = np.geomspace(0.5, lowest, max(2, n_points)) if lowest < 0.5 else np.array([0.5])
    thresholds = sorted({threshold_at_fmr(imp, float(level))[0] for level in levels})
    imp_sorted = np.sort(imp)
    t = np.asarray(thresholds, dtype=np.float64)
    fmr = _count_at_least(imp_sorted, t) / n
    fnmr = 1.0 - _count_at_least(gen, t) / gen.size
    return {
        "thresholds": [float(x) for x in t],
        "fmr": [float(x) for x in fmr],
        "fnmr": [float(x) for x in fnmr],
    }


# --------------------------------------------------------------------------------------------- identification


@dataclass(frozen=True)
class ClosedSetResult:
    """Closed-set identification: the rank of each probe's mate in the gallery (1 = best)."""

    ranks: npt.NDArray[np.int64]
    gallery_size: int

    def rank_rate(self, k: int) -> float:
        """Fraction of probes whose mate is among the top ``k`` gallery entries."""
        return float(np.mean(self.ranks <= k)) if self.ranks.size else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form with stable keys."""
        return {
            "gallery": self.gallery_size,
            "probes": int(self.ranks.size),
            "rank1": self.rank_rate(1),
            "rank5": self.rank_rate(5),
        }


def closed_set_identification(scores: npt.ArrayLike, mate: npt.ArrayLike) -> ClosedSetResult:
    """Ranks of mates for probes whose mate is enrolled.

    ``scores`` is the (probes x gallery) similarity matrix, ``mate[i]`` the gallery column of probe ``i``'s
    identity. Rank = 1 + number of gallery entries scoring strictly higher than the mate.
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(mate, dtype=np.int64)
    if s.ndim != 2 or m.shape != (s.shape[0],):
        raise ValueError("scores must be (probes, gallery) and mate must have one entry per probe")
    if np.any(m < 0) or np.any(m >= s.shape[1]):
        raise ValueError("every probe needs a mate in the gallery for closed-set identification")
    mate_scores = s[np.arange(s.shape[0]), m]
    ranks = 1 + np.count_nonzero(s > mate_scores[:, None], axis=1)
    return ClosedSetResult(ranks.astype(np.int64), int(s.shape[1]))


@dataclass(frozen=True)
class OpenSetPoint:
    """FNIR at one FPIR target (or not supported)."""

    fpir_target: float
    supported: bool
    reason: str | None
    threshold: float | None = None
    fpir: float | None = None
    fnir: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form with stable keys."""
        return {
            "fpir_target": self.fpir_target,
            "supported": self.supported,
            "reason": self.reason,
            "threshold": self.threshold,
            "fpir": self.fpir,
            "fnir": self.fnir,
        }


def _open_set_split(s: FloatArray, m: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray, FloatArray]:
    mated = m >= 0
    top_nonmated = s[~mated].max(axis=1) if s.shape[1] else np.full(int((~mated).sum()), -np.inf)
    sm = s[mated]
    mate_scores = sm[np.arange(sm.shape[0]), m[mated]]
    top_mated = sm.max(axis=1) if sm.size else np.zeros(0)
    return top_nonmated, mate_scores, top_mated


def fnir_at_fpir(
    scores: npt.ArrayLike,
    mate: npt.ArrayLike,
    targets: Sequence[float] = (1e-1, 1e-2, 1e-3),
    threshold: float | None = None,
) -> dict[str, Any]:
    """Open-set identification: FNIR at each FPIR target, and both rates at an optional fixed ``threshold``.

    ``scores`` (searches x gallery); ``mate[i]`` the gallery column of search ``i``'s identity, or -1 for a
    search of someone not enrolled (non-mated). FPIR(t): fraction of non-mated searches whose top score is >=
    t. FNIR(t): fraction of mated searches where the mate is not returned at rank 1 with a score >= t. A
    target FPIR is reported only with at least ``10 / target`` non-mated searches.
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(mate, dtype=np.int64)
    if s.ndim != 2 or m.shape != (s.shape[0],):
        raise ValueError("scores must be (searches, gallery) and mate must have one entry per search")
    top_nonmated, mate_scores, top_mated = _open_set_split(s, m)
    n_non, n_mated = int(top_nonmated.size), int(mate_scores.size)
    # a mated search succeeds at t when its mate is at rank 1 (no other entry strictly higher) and >= t
    rank1 = mate_scores >= top_mated
    points: list[OpenSetPoint] = []
    for target in targets:
        if n_non == 0 or n_mated == 0 or not supports_rate(n_non, target):
            reason = (
                _unsupported(n_non, target, "non-mated searches") if n_mated else "not supported: no mated searches"
            )
            points.append(OpenSetPoint(float(target), False, reason))
            continue
        t, fp = threshold_at_fmr(top_nonmated, target)
        fnir = float(1.0 - np.count_nonzero(rank1 & (mate_scores >= t)) / n_mated)
        points.append(OpenSetPoint(float(target), True, None, t, fp / n_non, fnir))
    result: dict[str, Any] = {
        "mated_searches": n_mated,
        "non_mated_searches": n_non,
        "fnir_at_fpir": [p.to_dict() for p in points],
    }
    if threshold is not None:
        result["at_threshold"] = {
            "threshold": float(threshold),
            "fpir": float(np.mean(top_nonmated >= threshold)) if n_non else None,
            "fnir": float(1.0 - np.mean(rank1 & (mate_scores >= threshold))) if n_mated else None,
        }
    return result
