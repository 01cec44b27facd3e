"""Open-set 1:N identification against gallery size, measured as NIST FRVT 1:N does (NISTIR 8271).

The identities of a dataset are split once into *enrolled* ones (the gallery population) and *not enrolled*
ones: every image of a person not enrolled is a **non-mated search**. For each gallery size N and each of several
random draws, N enrolled identities are enrolled with ``enroll_images`` images each (chosen at random) and
the rest of their images are **mated searches**; every search is compared with every template, and a subject's
score is its best template's.

* ``FPIR(N, t)``: share of non-mated searches returning any candidate at similarity >= t;
* ``FNIR(N, t)``: share of mated searches whose mate is not returned at rank <= ``rank`` (default 1: no other
  subject scores strictly higher; ties go to the mate) with similarity >= t.

Design choices (also written into the report): the split is a seeded permutation of the identities with at
least ``enroll_images + 1`` usable images (half of them, rounded up, are not enrolled; identities with fewer
images are never enrolled); galleries are nested within a draw (the size-5 gallery is part of the size-10 one),
so every size of a draw faces the same non-mated searches; the counts of all draws are pooled. The draws reuse
the same non-mated images, so intervals and bounds on FPIR count each non-mated image once (n, not n x draws).

Next to each measured FPIR stands the one the 1:1 false-match rate predicts, ``1 - (1 - FMR(t))^M`` with M the
number of templates in the gallery, from this dataset's own impostor pairs and from the recognizer's model-card
calibration; for a target FPIR the report gives, per size, the lowest threshold whose measured FPIR meets it,
the FNIR there, and the threshold the formula gives (and what it measures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import ModelError
from faceledger.evaluate import metrics as m

__all__ = [
    "DEFAULT_TARGET_FPIR",
    "OpenSetOptions",
    "default_sizes",
    "open_set_by_size",
    "per_comparison_fmr",
    "predicted_fpir",
    "split_identities",
]

#: FPIR per searched face the report finds thresholds for, unless told otherwise.
DEFAULT_TARGET_FPIR = 0.01

#: Default gallery sizes (those below the number of enrollable identities, and that number itself).
STANDARD_SIZES: tuple[int, ...] = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

#: One-sided confidence of the FPIR upper bounds: with n non-mated searches and none false, FPIR < ~3 / n.
BOUND_CONFIDENCE = 0.95


@dataclass(frozen=True)
class OpenSetOptions:
    """How the open-set sweep is run: target FPIR, gallery sizes (None: :func:`default_sizes`), draws, seed,
    images enrolled per subject, and the rank a mate must reach."""

    target_fpir: float = DEFAULT_TARGET_FPIR
    sizes: tuple[int, ...] | None = None
    draws: int = 10
    seed: int = 0
    enroll_images: int = 1
    rank: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "target_fpir": self.target_fpir,
            "sizes": None if self.sizes is None else list(self.sizes),
            "draws": self.draws,
            "seed": self.seed,
            "enroll_images": self.enroll_images,
            "rank": self.rank,
        }


def default_sizes(enrollable: int) -> list[int]:
    """5, 10, 20, 50, 100, ... below ``enrollable``, then ``enrollable`` itself."""
    return [s for s in STANDARD_SIZES if s < enrollable] + ([enrollable] if enrollable >= 1 else [])


def predicted_fpir(fmr: npt.ArrayLike, templates: int) -> npt.NDArray[np.float64]:
    """FPIR that independent comparisons at false-match rate ``fmr`` give against ``templates`` templates."""
    f = np.clip(np.asarray(fmr, dtype=np.float64), 0.0, 1.0)
    return -np.expm1(templates * np.log1p(-np.minimum(f, 1 - 1e-16)))


def per_comparison_fmr(target_fpir: float, templates: int) -> float:
    """The per-comparison FMR at which ``templates`` independent comparisons give ``target_fpir``."""
    return float(-np.expm1(np.log1p(-target_fpir) / max(templates, 1)))


def fpir_upper_bound(false_positives: int, searches: int) -> float:
    """One-sided 95 % upper bound on FPIR from ``false_positives`` of ``searches`` (none: about 3 / n)."""
    if searches <= 0:
        return 1.0
    return m.clopper_pearson(false_positives, searches, 1 - 2 * (1 - BOUND_CONFIDENCE))[1]


def _largest_confirmable(target: float, searches: int) -> int:
    """The largest number of false positives among ``searches`` whose upper bound is still <= target (-1: none)."""
    lo, hi = -1, min(searches, math.floor(target * searches + 1e-9))  # the bound grows with k and exceeds k / n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fpir_upper_bound(mid, searches) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


# ----------------------------------------------------------------------------------------------- the sweep


@dataclass
class _Pooled:
    """One gallery size, all draws pooled: each non-mated search's top score, each mated search's success
    score (the mate's score when it reaches the rank, else -inf)."""

    size: int
    templates: int
    nonmated_top: npt.NDArray[np.float64]
    mated_success: npt.NDArray[np.float64]
    non_mated: int  # distinct non-mated searches (the same in every draw)
    draws: int

    def fpir(self, t: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return _share_at_least(self.nonmated_top, t)

    def fnir(self, t: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return 1.0 - _share_at_least(self.mated_success, t)

    def at(self, t: float) -> dict[str, Any]:
        """Both rates at ``t`` with the counts behind them and the FPIR bound."""
        pooled_fp = int(np.count_nonzero(self.nonmated_top >= t))
        fpir = pooled_fp / self.nonmated_top.size
        per_image = math.ceil(fpir * self.non_mated - 1e-9)  # counting each non-mated image once
        misses = int(np.count_nonzero(self.mated_success < t))
        return {
            "threshold": float(t),
            "fpir": fpir,
            "false_positives": pooled_fp,
            "non_mated_searches_pooled": int(self.nonmated_top.size),
            "fpir_upper_95": fpir_upper_bound(per_image, self.non_mated),
            "fnir": misses / self.mated_success.size,
            "misses": misses,
            "mated_searches_pooled": int(self.mated_success.size),
        }


def _share_at_least(values: npt.NDArray[np.float64], t: npt.ArrayLike) -> npt.NDArray[np.float64]:
    s = np.sort(values)
    return (s.size - np.searchsorted(s, np.asarray(t, dtype=np.float64), side="left")) / max(s.size, 1)


def split_identities(identities: Sequence[str], enroll_images: int = 1, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(enrollable, not_enrolled)``: a seeded half of the identities with enough images is never enrolled."""
    counts: dict[str, int] = {}
    for k in identities:
        if k:
            counts[k] = counts.get(k, 0) + 1
    eligible = sorted(k for k, c in counts.items() if c >= enroll_images + 1)
    order = np.random.default_rng(seed).permutation(len(eligible))
    held = math.ceil(len(eligible) / 2)
    not_enrolled = sorted([eligible[i] for i in order[:held]] + [k for k, c in counts.items() if c < enroll_images + 1])
    return sorted(eligible[i] for i in order[held:]), not_enrolled


def _sweep(
    vectors: npt.NDArray[np.float32],
    identities: Sequence[str],
    enrollable: list[str],
    not_enrolled: list[str],
    sizes: list[int],
    options: OpenSetOptions,
) -> list[_Pooled]:
    rows: dict[str, list[int]] = {}
    for i, k in enumerate(identities):
        if k:
            rows.setdefault(k, []).append(i)
    nonmated_rows = np.array([i for k in not_enrolled for i in rows[k]], dtype=np.int64)
    # similarities of every search (non-mated, then each enrollable image) with every enrollable image: the
    # column (and row, after the non-mated ones) of image i is ``at[i]``
    enrollable_rows = np.array([i for k in enrollable for i in rows[k]], dtype=np.int64)
    at = np.full(len(identities), -1, dtype=np.int64)
    at[enrollable_rows] = np.arange(len(enrollable_rows))
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    cols = v[enrollable_rows]
    sim_nm = (v[nonmated_rows] @ cols.T).astype(np.float64)
    sim_m = (cols @ cols.T).astype(np.float64)
    rng = np.random.default_rng(options.seed + 1)
    k_enroll, rank = options.enroll_images, options.rank
    top_nm: dict[int, list[np.ndarray]] = {n: [] for n in sizes}
    success: dict[int, list[np.ndarray]] = {n: [] for n in sizes}
    for _ in range(options.draws):
        order = [enrollable[i] for i in rng.permutation(len(enrollable))]
        chosen = {k: at[rng.permutation(rows[k])] for k in order}
        for n in sizes:
            gallery = order[:n]
            templates = np.array([i for k in gallery for i in chosen[k][:k_enroll]], dtype=np.int64)
            mated = [(i, s) for s, k in enumerate(gallery) for i in chosen[k][k_enroll:]]
            mated_rows = np.array([i for i, _ in mated], dtype=np.int64)
            mate_col = np.array([s for _, s in mated], dtype=np.int64)
            # a subject's score is its best template's
            top_nm[n].append(sim_nm[:, templates].reshape(len(nonmated_rows), n, k_enroll).max(axis=(1, 2)))
            subject_m = sim_m[np.ix_(mated_rows, templates)].reshape(len(mated_rows), n, k_enroll).max(axis=2)
            mate_scores = subject_m[np.arange(len(mated_rows)), mate_col]
            ranks = 1 + np.count_nonzero(subject_m > mate_scores[:, None], axis=1)
            success[n].append(np.where(ranks <= rank, mate_scores, -np.inf))
    return [
        _Pooled(
            n, n * k_enroll, np.concatenate(top_nm[n]), np.concatenate(success[n]), len(nonmated_rows), options.draws
        )
        for n in sizes
    ]


def _grid(pooled: list[_Pooled]) -> npt.NDArray[np.float64]:
    """Thresholds every 0.005 from where half the non-mated searches of the smallest gallery (or all but 1% of
    the mated ones) pass to above the highest non-mated score and where half the mated searches are missed."""
    tops = np.concatenate([p.nonmated_top for p in pooled])
    mates = np.concatenate([p.mated_success[np.isfinite(p.mated_success)] for p in pooled])
    low = min(float(np.quantile(mates, 0.01)) if mates.size else 0.0, float(np.quantile(pooled[0].nonmated_top, 0.5)))
    high = max(float(tops.max()) + 0.02, float(np.quantile(mates, 0.5)) if mates.size else 0.0)
    low, high = math.floor(low * 200) / 200, math.ceil(high * 200) / 200
    return np.round(np.arange(low, high + 1e-9, 0.005), 6)


def _formula(
    pooled: _Pooled, target: float, fmr_needed: float, threshold: float | None, reason: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"per_comparison_fmr": fmr_needed, "threshold": threshold, "reason": reason}
    if threshold is not None:
        measured = pooled.at(threshold)
        out.update(measured=measured, meets_target=measured["fpir"] <= target)
    return out


def _card_formula(calibration: Any, pooled: _Pooled, target: float) -> dict[str, Any] | None:
    if calibration is None:
        return None
    needed = per_comparison_fmr(target, pooled.templates)
    try:
        threshold: float | None = float(calibration.threshold_for_fmr(needed))
        reason = None
    except (ValueError, ModelError) as exc:  # below what the calibration measured: named, not extrapolated
        threshold, reason = None, str(exc)
    return _formula(pooled, target, needed, threshold, reason)


def _data_formula(impostor: npt.NDArray[np.float64] | None, pooled: _Pooled, target: float) -> dict[str, Any] | None:
    if impostor is None or impostor.size == 0:
        return None
    needed = per_comparison_fmr(target, pooled.templates)
    if not m.supports_rate(int(impostor.size), needed):
        return _formula(pooled, target, needed, None, m._unsupported(int(impostor.size), needed))
    return _formula(pooled, target, needed, m.threshold_at_fmr(impostor, needed)[0], None)


def _target(pooled: _Pooled, target: float) -> dict[str, Any]:
    """The lowest thresholds meeting ``target``: measured (pooled FPIR <= target) and confirmed (its upper bound
    <= target)."""
    point_t, _ = m.threshold_at_fmr(pooled.nonmated_top, target)
    out: dict[str, Any] = {"measured": pooled.at(point_t)}
    k = _largest_confirmable(target, pooled.non_mated)
    if k < 0:
        out["confirmed"] = None
        out["confirmed_reason"] = (
            f"{pooled.non_mated} non-mated searches cannot show an FPIR of {target:g}: with none false the upper "
            f"95% bound is {fpir_upper_bound(0, pooled.non_mated):.3g} (at least "
            f"{math.ceil(-math.log(1 - BOUND_CONFIDENCE) / -math.log1p(-target))} are needed)"
        )
    else:
        out["confirmed"] = pooled.at(m.threshold_at_fmr(pooled.nonmated_top, k / pooled.non_mated)[0])
        out["confirmed_reason"] = None
    return out


def open_set_by_size(
    vectors: npt.ArrayLike,
    identities: Sequence[str],
    options: OpenSetOptions | None = None,
    *,
    impostor: npt.ArrayLike | None = None,
    calibration: Any = None,
    operating_threshold: float | None = None,
) -> dict[str, Any]:
    """FPIR and FNIR against gallery size and threshold (see the module docstring); JSON-ready.

    ``vectors`` are unit embeddings (one per image), ``identities`` their labels (``""``: unlabeled, left out).
    ``impostor`` holds this dataset's 1:1 impostor scores and ``calibration`` the model card's calibration
    (``fmr_at``, ``threshold_for_fmr``) for the formula; ``operating_threshold`` adds both rates at that
    threshold.
    """
    opts = options or OpenSetOptions()
    if opts.enroll_images < 1 or opts.draws < 1 or opts.rank < 1:
        raise ValueError("enroll_images, draws and rank must be at least 1")
    if not 0 < opts.target_fpir < 1:
        raise ValueError(f"target FPIR must be between 0 and 1, got {opts.target_fpir}")
    vecs = np.asarray(vectors, dtype=np.float32)
    ids = list(identities)
    if vecs.ndim != 2 or vecs.shape[0] != len(ids):
        raise ValueError("vectors must be (images, dim) with one identity per image")
    enrollable, not_enrolled = split_identities(ids, opts.enroll_images, opts.seed)
    wanted = list(opts.sizes) if opts.sizes else default_sizes(len(enrollable))
    sizes = sorted({n for n in wanted if 1 <= n <= len(enrollable)})
    result: dict[str, Any] = {
        "settings": {
            **opts.to_dict(),
            "sizes": sizes,
            "enrollable_identities": len(enrollable),
            "not_enrolled_identities": len(not_enrolled),
            "split_rule": (
                f"identities with at least {opts.enroll_images + 1} usable images, permuted with seed "
                f"{opts.seed}: half (rounded up) never enrolled; identities with fewer images never enrolled"
            ),
            "gallery_rule": (
                f"{opts.draws} draws (seed {opts.seed + 1}): a random order of the enrollable identities, the "
                f"first N enrolled (nested galleries), each with {opts.enroll_images} random image(s); their "
                "other images are the mated searches"
            ),
            "rank_rule": (
                f"a mated search is found when its mate is at rank <= {opts.rank} (1 + subjects scoring strictly "
                "higher) with similarity >= t; a non-mated search is a false positive when any subject scores >= t"
            ),
            "bound_rule": (
                "the draws reuse the non-mated images, so FPIR bounds count each image once: one-sided 95% "
                "Clopper-Pearson upper bound on ceil(FPIR x n) of n non-mated searches (none: about 3 / n)"
            ),
            "formula": "predicted FPIR = 1 - (1 - FMR(t))^M, M = templates in the gallery",
            "calibration": None
            if calibration is None
            else (
                f"model card calibration on {getattr(calibration, 'dataset', '') or 'an unnamed dataset'} "
                f"({getattr(calibration, 'impostor_pairs', 0):,} impostor pairs)"
            ),
        },
        "sizes": [],
        "curves": None,
        "notes": [],
    }
    if not sizes or not not_enrolled:
        result["notes"].append(
            "open-set identification by gallery size needs enrollable identities (with at least "
            f"{opts.enroll_images + 1} images) and identities not enrolled; have {len(enrollable)} and "
            f"{len(not_enrolled)}"
        )
        return result
    if opts.sizes and sizes != sorted(set(opts.sizes)):
        result["notes"].append(
            f"gallery sizes above the {len(enrollable)} enrollable identities were left out: "
            + ", ".join(str(n) for n in sorted(set(opts.sizes) - set(sizes)))
        )
    imp = None if impostor is None else np.sort(np.asarray(impostor, dtype=np.float64).reshape(-1))
    pooled = _sweep(vecs, ids, enrollable, not_enrolled, sizes, opts)
    grid = _grid(pooled)
    data_fmr = None if imp is None or imp.size == 0 else _share_at_least(imp, grid)
    card_fmr = None if calibration is None else np.array([float(calibration.fmr_at(float(t))) for t in grid])
    curves: dict[str, Any] = {"threshold": [float(t) for t in grid], "by_size": []}
    for p in pooled:
        entry: dict[str, Any] = {
            "size": p.size,
            "templates": p.templates,
            "draws": p.draws,
            "non_mated_searches": p.non_mated,
            "mated_searches_per_draw": p.mated_success.size / p.draws,
            "target": {"fpir_target": opts.target_fpir, **_target(p, opts.target_fpir)},
        }
        entry["target"]["formula_dataset"] = _data_formula(imp, p, opts.target_fpir)
        entry["target"]["formula_card"] = _card_formula(calibration, p, opts.target_fpir)
        if operating_threshold is not None:
            entry["at_operating_threshold"] = _at_operating(p, operating_threshold, imp, calibration)
        result["sizes"].append(entry)
        curve = {"size": p.size, "fpir": p.fpir(grid).tolist(), "fnir": p.fnir(grid).tolist()}
        if data_fmr is not None:
            curve["predicted_fpir_dataset"] = predicted_fpir(data_fmr, p.templates).tolist()
        if card_fmr is not None:
            curve["predicted_fpir_card"] = predicted_fpir(card_fmr, p.templates).tolist()
        curves["by_size"].append(curve)
    result["curves"] = curves
    return result


def _at_operating(pooled: _Pooled, t: float, imp: npt.NDArray[np.float64] | None, calibration: Any) -> dict[str, Any]:
    out = pooled.at(t)
    if imp is not None and imp.size:
        out["predicted_fpir_dataset"] = float(predicted_fpir(_share_at_least(imp, t), pooled.templates))
    if calibration is not None:
        out["predicted_fpir_card"] = float(predicted_fpir(float(calibration.fmr_at(t)), pooled.templates))
    return out
