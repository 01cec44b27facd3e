"""Demographic differentials, reported the way NIST's face recognition evaluations (FRVT/FRTE) report them.

Groups are labels the *user* supplies for each image (a column of the dataset manifest). faceledger never
infers race, gender, age or any other attribute from a face; without a group column there is no differential
report.

At one global threshold (the deployment's threshold, not one per group):

* FMR per group: impostor pairs whose two images are both in the group;
* FNMR per group: genuine pairs whose two images are both in the group;
* each group's ratio to the best (lowest) group, for FMR and FNMR;
* the cross-group impostor FMR matrix: FMR over impostor pairs with one image in group A and one in group B;
* a warning when a ratio exceeds the allowed maximum (``max_ratio``, 2.0 unless the policy sets another).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.evaluate.metrics import clopper_pearson, supports_rate

__all__ = ["DEFAULT_MAX_RATIO", "demographic_differentials"]

#: Ratio of a group's error rate to the best group's above which the report warns.
DEFAULT_MAX_RATIO = 2.0


def _ratios(rates: list[float | None]) -> tuple[list[float | None], float | None]:
    """Each rate divided by the lowest rate; None where undefined (no data, or 0 / 0); inf when x / 0."""
    known = [r for r in rates if r is not None]
    if not known:
        return [None] * len(rates), None
    best = min(known)
    out: list[float | None] = []
    for r in rates:
        if r is None:
            out.append(None)
        elif best > 0:
            out.append(r / best)
        else:
            out.append(1.0 if r == 0 else float("inf"))
    return out, best


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

    fmr_rates: list[float | None] = []
    fnmr_rates: list[float | None] = []
    for g in range(k):
        n_i = int(pairs_mat[g, g])
        fmr_rates.append(int(fm_mat[g, g]) / n_i if n_i else None)
        n_g = int(gen_pairs[g])
        fnmr_rates.append(int(fnm[g]) / n_g if n_g else None)
    fmr_ratio, best_fmr = _ratios(fmr_rates)
    fnmr_ratio, best_fnmr = _ratios(fnmr_rates)

    groups: list[dict[str, Any]] = []
    warnings: list[str] = []
    for g, name in enumerate(group_names):
        n_i, n_g = int(pairs_mat[g, g]), int(gen_pairs[g])
        notes: list[str] = []
        entry: dict[str, Any] = {
            "group": name,
            "impostor_pairs": n_i,
            "false_matches": int(fm_mat[g, g]),
            "fmr": fmr_rates[g],
            "fmr_ci": list(clopper_pearson(int(fm_mat[g, g]), n_i, confidence)) if n_i else None,
            "fmr_ratio_to_best": fmr_ratio[g],
            "genuine_pairs": n_g,
            "false_non_matches": int(fnm[g]),
            "fnmr": fnmr_rates[g],
            "fnmr_ci": list(clopper_pearson(int(fnm[g]), n_g, confidence)) if n_g else None,
            "fnmr_ratio_to_best": fnmr_ratio[g],
            "notes": notes,
        }
        for what, ratio, n, rate, best in (
            ("FMR", fmr_ratio[g], n_i, fmr_rates[g], best_fmr),
            ("FNMR", fnmr_ratio[g], n_g, fnmr_rates[g], best_fnmr),
        ):
            kind = "impostor" if what == "FMR" else "genuine"
            if n == 0:
                notes.append(f"no {kind} pairs within this group: {what} not measured")
                continue
            if rate is not None and rate > 0 and not supports_rate(n, rate):
                notes.append(f"{what} rests on few errors ({n} {kind} pairs): wide interval")
            if ratio is not None and ratio > max_ratio:
                if best == 0:
                    text = (
                        f"group {name!r}: {what} {rate:.3g} while the best group has no errors at this "
                        f"threshold (ratio unbounded, allowed {max_ratio:g})"
                    )
                else:
                    text = f"group {name!r}: {what} is {ratio:.2f}x the best group's (allowed {max_ratio:g})"
                warnings.append(text)
            if ratio is not None and np.isinf(ratio):
                notes.append(f"{what} ratio to best unbounded: the best group has no errors")
                entry[f"{what.lower()}_ratio_to_best"] = None
        groups.append(entry)

    with np.errstate(invalid="ignore", divide="ignore"):
        fmr_mat = np.where(pairs_mat > 0, fm_mat / np.maximum(pairs_mat, 1), np.nan)
    return {
        "threshold": float(threshold),
        "max_ratio": float(max_ratio),
        "groups": groups,
        "cross_group_fmr": {
            "groups": list(group_names),
            "fmr": [[None if np.isnan(v) else float(v) for v in row] for row in fmr_mat],
            "false_matches": fm_mat.astype(int).tolist(),
            "impostor_pairs": pairs_mat.astype(int).tolist(),
        },
        "warnings": warnings,
    }
