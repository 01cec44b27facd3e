"""Demographic differentials, reported the way NIST's face recognition evaluations (FRVT/FRTE) report them.

Groups are labels the *user* supplies for each image (a column of the dataset manifest). faceledger never
infers race, gender, age or any other attribute from a face; without a group column there is no differential
report.

At one global threshold (the deployment's threshold, not one per group):

* FMR per group: impostor pairs whose two images are both in the group;
* FNMR per group: genuine pairs whose two images are both in the group;
* each group's ratio to the best (lowest) group, for FMR and FNMR, among groups with enough pairs to measure
  the overall rate (at least ``10 / overall rate``, the rule used for every rate faceledger reports);
* the cross-group impostor FMR matrix: FMR over impostor pairs with one image in group A and one in group B;
* a warning when a ratio exceeds the allowed maximum (``max_ratio``, 2.0 unless the policy sets another).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.evaluate.metrics import clopper_pearson, supports_rate

__all__ = ["DEFAULT_MAX_RATIO", "demographic_differentials"]

#: Ratio of a group's error rate to the best group's above which the report warns.
DEFAULT_MAX_RATIO = 2.0


@dataclass(frozen=True)
class _Ratios:
    """Ratios of each group's rate to the best comparable group's (see :func:`_compare`)."""

    overall: float | None
    ratios: list[float | None]
    lower_bound: list[bool]
    comparable: list[bool]
    best: int | None


def _compare(errors: Sequence[int], counts: Sequence[int], confidence: float) -> _Ratios:
    """Compare groups' error rates to the best group, only among groups with enough comparisons.

    A group is *comparable* when its comparisons can measure the overall rate (at least ``10 / overall rate``,
    the project's support rule); the best group is the comparable one with the lowest rate. When that best
    rate is zero, the other groups' ratios use its upper confidence bound instead, so they are lower bounds.
    """
    total_n, total_e = int(sum(counts)), int(sum(errors))
    overall = total_e / total_n if total_n else None
    k = len(counts)
    comparable = [bool(overall) and counts[g] > 0 and supports_rate(counts[g], overall or 0.0) for g in range(k)]
    rates = [errors[g] / counts[g] if counts[g] else 0.0 for g in range(k)]
    candidates = [g for g in range(k) if comparable[g]]
    if not candidates:
        return _Ratios(overall, [None] * k, [False] * k, comparable, None)
    best = min(candidates, key=lambda g: rates[g])
    denominator = rates[best]
    lower = denominator == 0
    if lower:
        denominator = clopper_pearson(0, counts[best], confidence)[1]
    ratios: list[float | None] = []
    bounds: list[bool] = []
    for g in range(k):
        if not comparable[g]:
            ratios.append(None)
            bounds.append(False)
        elif g == best or (lower and rates[g] == 0):
            ratios.append(1.0)
            bounds.append(False)
        else:
            ratios.append(rates[g] / denominator)
            bounds.append(lower)
    return _Ratios(overall, ratios, bounds, comparable, best)


def demographic_differentials(
    genuine_scores: npt.ArrayLike,
    genuine_groups: npt.ArrayLike,
    impostor_scores: npt.ArrayLike,
    impostor_groups: npt.ArrayLike,
    group_names: Sequence[str],
    threshold: float,
    max_ratio: float = DEFAULT_MAX_RATIO,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Per-group FMR/FNMR at one ``threshold``, ratios to the best group, cross-group FMR matrix and warnings.

    ``genuine_groups`` and ``impostor_groups`` are (pairs, 2) integer arrays: the group index (into
    ``group_names``) of each side of each pair; -1 marks an image without a group label (such pairs are left
    out). Returns a JSON-friendly dict with keys ``threshold``, ``max_ratio``, ``groups`` (one entry per
    group), ``cross_group_fmr`` (``{"groups", "fmr", "false_matches", "impostor_pairs"}`` matrices) and
    ``warnings``.
    """
    gs = np.asarray(genuine_scores, dtype=np.float64).reshape(-1)
    isc = np.asarray(impostor_scores, dtype=np.float64).reshape(-1)
    gg = np.asarray(genuine_groups, dtype=np.int64).reshape(-1, 2)
    ig = np.asarray(impostor_groups, dtype=np.int64).reshape(-1, 2)
    if gg.shape[0] != gs.size or ig.shape[0] != isc.size:
        raise ValueError("each pair needs a score and two group indices")
    if max_ratio <= 1:
        raise ValueError(f"max_ratio must be above 1, got {max_ratio}")
    k = len(group_names)

    # cross-group counts in one pass: pair (a, b) and (b, a) land in the same symmetric cell
    labeled = (ig[:, 0] >= 0) & (ig[:, 1] >= 0)
    a, b = ig[labeled, 0], ig[labeled, 1]
    cell = np.minimum(a, b) * k + np.maximum(a, b)
    accepted = isc[labeled] >= threshold
    pairs_cell = np.bincount(cell, minlength=k * k).reshape(k, k)
    fm_cell = np.bincount(cell[accepted], minlength=k * k).reshape(k, k)
    pairs_mat = pairs_cell + np.triu(pairs_cell, 1).T
    fm_mat = fm_cell + np.triu(fm_cell, 1).T

    same = (gg[:, 0] == gg[:, 1]) & (gg[:, 0] >= 0)
    gen_group = gg[same, 0]
    gen_rejected = gs[same] < threshold
    gen_pairs = np.bincount(gen_group, minlength=k)
    fnm = np.bincount(gen_group[gen_rejected], minlength=k)

    diag_pairs = [int(pairs_mat[g, g]) for g in range(k)]
    diag_fm = [int(fm_mat[g, g]) for g in range(k)]
    gen_n = [int(x) for x in gen_pairs]
    gen_e = [int(x) for x in fnm]
    fmr_cmp = _compare(diag_fm, diag_pairs, confidence)
    fnmr_cmp = _compare(gen_e, gen_n, confidence)

    groups: list[dict[str, Any]] = []
    warnings: list[str] = []
    for g, name in enumerate(group_names):
        notes: list[str] = []
        entry: dict[str, Any] = {"group": name}
        for key, kind, errors, counts, cmp in (
            ("fmr", "impostor", diag_fm, diag_pairs, fmr_cmp),
            ("fnmr", "genuine", gen_e, gen_n, fnmr_cmp),
        ):
            n, e = counts[g], errors[g]
            count_key = "impostor_pairs" if key == "fmr" else "genuine_pairs"
            error_key = "false_matches" if key == "fmr" else "false_non_matches"
            ratio = cmp.ratios[g]
            entry.update(
                {
                    count_key: n,
                    error_key: e,
                    key: e / n if n else None,
                    f"{key}_ci": list(clopper_pearson(e, n, confidence)) if n else None,
                    f"{key}_ratio_to_best": ratio,
                    f"{key}_ratio_is_lower_bound": cmp.lower_bound[g],
                    f"{key}_comparable": cmp.comparable[g],
                }
            )
            what = key.upper()
            if n == 0:
                notes.append(f"no {kind} pairs within this group: {what} not measured")
            elif not cmp.comparable[g]:
                if cmp.overall:
                    need = int(np.ceil(10 / cmp.overall))
                    notes.append(
                        f"{n} {kind} pairs are too few to compare {what} with other groups (the overall "
                        f"{what} {cmp.overall:.3g} needs at least {need})"
                    )
                else:
                    notes.append(f"no {what} errors at this threshold in any group: nothing to compare")
            if ratio is not None and ratio > max_ratio:
                at_least = "at least " if cmp.lower_bound[g] else ""
                best_name = group_names[cmp.best] if cmp.best is not None else "?"
                warnings.append(
                    f"group {name!r}: {what} {e / n:.3g} is {at_least}{ratio:.2f}x that of the best group "
                    f"{best_name!r} (allowed {max_ratio:g})"
                )
        entry["notes"] = notes
        groups.append(entry)

    with np.errstate(invalid="ignore", divide="ignore"):
        fmr_mat = np.where(pairs_mat > 0, fm_mat / np.maximum(pairs_mat, 1), np.nan)
    return {
        "threshold": float(threshold),
        "max_ratio": float(max_ratio),
        "overall_fmr": fmr_cmp.overall,
        "overall_fnmr": fnmr_cmp.overall,
        "best_group": {
            "fmr": group_names[fmr_cmp.best] if fmr_cmp.best is not None else None,
            "fnmr": group_names[fnmr_cmp.best] if fnmr_cmp.best is not None else None,
        },
        "comparability_rule": (
            "a group is compared only when its pairs can measure the overall rate (at least 10 / overall "
            "rate); when the best such group has no errors, ratios use its upper confidence bound and are "
            "lower bounds"
        ),
        "groups": groups,
        "cross_group_fmr": {
            "groups": list(group_names),
            "fmr": [[None if np.isnan(v) else float(v) for v in row] for row in fmr_mat],
            "false_matches": fm_mat.astype(int).tolist(),
            "impostor_pairs": pairs_mat.astype(int).tolist(),
        },
        "warnings": warnings,
    }
