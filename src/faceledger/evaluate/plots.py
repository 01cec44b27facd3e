"""PNG plots of an evaluation: ROC (log FMR axis), score histograms with the threshold, per-group error bars.

Drawn with matplotlib's object API on the Agg canvas, so no display and no global pyplot state is involved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from faceledger.evaluate.metrics import RocCurve

__all__ = ["plot_groups", "plot_open_set_det", "plot_open_set_rates", "plot_roc", "plot_scores"]

GENUINE_COLOUR = "#1b7837"
IMPOSTOR_COLOUR = "#b2182b"
THRESHOLD_COLOUR = "#333333"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_roc(roc: RocCurve, path: Path, threshold: float | None = None, title: str = "") -> Path:
    """ROC curve: share of same-person pairs accepted against share of different-person pairs accepted
    (log)."""
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    floor = 1.0 / max(roc.impostor_pairs, 1)
    keep = roc.fmr > 0
    fmr = np.concatenate(([floor], roc.fmr[keep]))
    tar = np.concatenate(([roc.tar[~keep].max() if np.any(~keep) else 0.0], roc.tar[keep]))
    ax.step(fmr, tar, where="post", color=GENUINE_COLOUR, lw=2, label="this dataset")
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 1.0)
    ax.set_ylim(max(0.0, float(tar.min()) - 0.05), 1.005)
    ax.set_xlabel("false match rate (different people wrongly matched), log scale")
    ax.set_ylabel("true accept rate (same person correctly matched)")
    if threshold is not None:
        # last ROC point whose threshold is >= the operating threshold: the rates at the operating threshold
        idx = int(np.searchsorted(-roc.thresholds, -threshold, side="right")) - 1
        op_fmr, op_tar = float(roc.fmr[idx]), float(roc.tar[idx])
        ax.plot(
            [max(op_fmr, floor)],
            [op_tar],
            "o",
            color=THRESHOLD_COLOUR,
            ms=8,
            label=f"threshold {threshold:.3f}: FMR {op_fmr:.2g}, TAR {op_tar:.3f}",
        )
    ax.axvline(floor * 10, color="#999999", ls=":", lw=1)
    ax.text(
        floor * 10,
        ax.get_ylim()[1],
        "  left of this line: rates resting\n  on fewer than 10 errors",
        fontsize=7,
        color="#666666",
        va="top",
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(title or "How often the same person is accepted, for each false-match rate")
    return _save(fig, path)


def plot_scores(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    path: Path,
    threshold: float | None = None,
    title: str = "",
) -> Path:
    """Histograms of similarity for same-person and different-person pairs (each scaled to its own total)."""
    gen = np.asarray(genuine, dtype=np.float64)
    imp = np.asarray(impostor, dtype=np.float64)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    low = float(min(gen.min(initial=0.0), imp.min(initial=0.0)))
    high = float(max(gen.max(initial=1.0), imp.max(initial=0.0)))
    bins = [float(b) for b in np.linspace(low, high, 81)]
    ax.hist(
        imp,
        bins=bins,
        density=True,
        alpha=0.55,
        color=IMPOSTOR_COLOUR,
        label=f"different people ({imp.size:,} pairs)",
    )
    ax.hist(
        gen,
        bins=bins,
        density=True,
        alpha=0.55,
        color=GENUINE_COLOUR,
        label=f"same person ({gen.size:,} pairs)",
    )
    if threshold is not None:
        ax.axvline(threshold, color=THRESHOLD_COLOUR, lw=2, ls="--")
        ax.text(
            threshold,
            ax.get_ylim()[1] * 0.95,
            f"  threshold {threshold:.3f}\n  right of it: a match",
            fontsize=8,
            va="top",
        )
    ax.set_xlabel("similarity score")
    ax.set_ylabel("share of pairs (density)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "Similarity of same-person and different-person pairs")
    return _save(fig, path)


def plot_groups(demographics: dict[str, Any], path: Path) -> Path:
    """Per-group FMR and FNMR at the global threshold, with 95% intervals and the allowed ratio to the
    best."""
    groups = demographics["groups"]
    names = [g["group"] for g in groups]
    fig = Figure(figsize=(max(7.5, 1.1 * len(names) + 2), 4.4), layout="constrained")
    max_ratio = demographics["max_ratio"]
    for col, (key, label, colour) in enumerate(
        (("fmr", "false match rate", IMPOSTOR_COLOUR), ("fnmr", "false non-match rate", GENUINE_COLOUR))
    ):
        ax = fig.add_subplot(1, 2, col + 1)
        values = np.array([np.nan if g[key] is None else g[key] for g in groups], dtype=np.float64)
        ci = [g[f"{key}_ci"] or [np.nan, np.nan] for g in groups]
        lower = np.clip(values - np.array([c[0] for c in ci]), 0, None)
        upper = np.clip(np.array([c[1] for c in ci]) - values, 0, None)
        x = np.arange(len(names))
        ax.bar(x, np.nan_to_num(values), color=colour, alpha=0.75)
        ax.errorbar(
            x,
            np.nan_to_num(values),
            yerr=[np.nan_to_num(lower), np.nan_to_num(upper)],
            fmt="none",
            ecolor="#333333",
            capsize=3,
            lw=1,
        )
        comparable = np.array([bool(g[f"{key}_comparable"]) for g in groups])
        for i in np.nonzero(~comparable)[0]:
            ax.text(x[i], 0, "too few\npairs", ha="center", va="bottom", fontsize=6, color="#666666")
        best = (demographics.get("best_group") or {}).get(key)
        if best is not None:
            best_rate = values[names.index(best)]
            if best_rate > 0:
                ax.axhline(
                    best_rate * max_ratio,
                    color="#333333",
                    ls=":",
                    lw=1,
                    label=f"{max_ratio:g}x the best group ({best})",
                )
                ax.legend(fontsize=7, loc="upper right")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{label} per group", fontsize=10)
        ax.grid(True, axis="y", alpha=0.25)
    fig.suptitle(
        f"Error rates per group at one threshold ({demographics['threshold']:.3f}); bars: 95% intervals",
        fontsize=10,
    )
    return _save(fig, path)


def _size_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def _zero_line(ax: Any, floor: float, what: str) -> None:
    """Zero cannot be drawn on a log axis: zeros sit on a dotted line at ``floor``, labelled."""
    ax.axhline(floor, color="#999999", lw=0.8, ls=":")
    ax.text(ax.get_xlim()[1], floor, f"{what} = 0 (none) ", fontsize=7, color="#666666", ha="right", va="bottom")


def plot_open_set_rates(section: dict[str, Any], path: Path, threshold: float | None = None) -> Path:
    """Open-set FPIR (left) and FNIR (right) against threshold, one colour per gallery size; dashed: the FPIR
    that this dataset's 1:1 false-match rate predicts for that size."""
    curves = section["curves"]
    t = np.asarray(curves["threshold"], dtype=np.float64)
    sizes = section["sizes"]
    target = sizes[0]["target"]["fpir_target"]
    n_non = sizes[0]["non_mated_searches"]
    fig = Figure(figsize=(11.5, 4.6), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    fpir_floor = 0.5 / (n_non * sizes[0]["draws"])
    fnir_floor = 0.5 / max(min(s["mated_searches_per_draw"] * s["draws"] for s in sizes), 1)
    for colour, size, curve in zip(_size_colours(len(sizes)), sizes, curves["by_size"], strict=True):
        label = f"N = {size['size']}"
        left.plot(t, np.maximum(curve["fpir"], fpir_floor), color=colour, lw=2, label=f"{label}: measured")
        if "predicted_fpir_dataset" in curve:
            left.plot(t, np.maximum(curve["predicted_fpir_dataset"], fpir_floor), color=colour, lw=1.2, ls="--")
        right.plot(t, np.maximum(curve["fnir"], fnir_floor), color=colour, lw=2, label=label)
    left.plot([], [], color="#555555", lw=1.2, ls="--", label="predicted: 1 - (1 - FMR)^N, FMR from the 1:1 pairs")
    # the operating threshold's label goes where the curves are not: low on the FPIR side, high on the FNIR side
    for ax, floor, what, label_y in ((left, fpir_floor, "FPIR", fpir_floor * 1.3), (right, fnir_floor, "FNIR", 1.0)):
        ax.set_yscale("log")
        ax.set_ylim(floor * 0.7, 1.2)
        ax.set_xlim(float(t[0]), float(t[-1]))
        ax.set_xlabel("similarity threshold")
        ax.grid(True, which="major", alpha=0.3)
        _zero_line(ax, floor, what)
        if threshold is not None and t[0] <= threshold <= t[-1]:
            ax.axvline(threshold, color=THRESHOLD_COLOUR, lw=1.2, ls="-.")
            ax.text(threshold, label_y, f"operating \nthreshold \n{threshold:.3f} ", fontsize=7, ha="right",
                    va="bottom" if label_y < 0.5 else "top")  # fmt: skip
    left.axhline(target, color=IMPOSTOR_COLOUR, lw=1, ls=":")
    left.text(t[-1], target, f"target FPIR {target:g} ", color=IMPOSTOR_COLOUR, fontsize=8, ha="right", va="bottom")
    bound = 3.0 / n_non
    left.axhspan(fpir_floor * 0.7, bound, color="#dddddd", alpha=0.5, lw=0)
    grey = f"grey: below ~3/n = {bound:.2g} (n = {n_non} unknown faces):\ntoo few searches to confirm rates this low "
    left.text(t[-1], bound, grey, fontsize=7, color="#666666", ha="right", va="top")
    left.set_ylabel("FPIR: unknown faces that get a candidate (log)")
    left.set_title("False positives of people not enrolled", fontsize=10)
    right.set_ylabel(f"FNIR: enrolled faces not found at rank {section['settings']['rank']} (log)")
    right.set_title("Misses of enrolled people", fontsize=10)
    left.legend(fontsize=7, loc="upper right", framealpha=0.9)
    right.legend(fontsize=7, loc="upper left", framealpha=0.9)
    fig.suptitle(
        f"Open-set identification against threshold, per gallery size N ({sizes[0]['draws']} draws pooled)",
        fontsize=11,
    )
    return _save(fig, path)


def plot_open_set_det(section: dict[str, Any], path: Path) -> Path:
    """DET of open-set identification: FNIR against FPIR (both log), one curve per gallery size."""
    curves = section["curves"]
    sizes = section["sizes"]
    target = sizes[0]["target"]["fpir_target"]
    n_non = sizes[0]["non_mated_searches"]
    fnir_floor = 0.5 / max(min(s["mated_searches_per_draw"] * s["draws"] for s in sizes), 1)
    fig = Figure(figsize=(6.6, 4.8))
    ax = fig.add_subplot()
    for colour, size, curve in zip(_size_colours(len(sizes)), sizes, curves["by_size"], strict=True):
        fpir = np.asarray(curve["fpir"], dtype=np.float64)
        fnir = np.maximum(np.asarray(curve["fnir"], dtype=np.float64), fnir_floor)
        keep = fpir > 0
        ax.plot(fpir[keep], fnir[keep], color=colour, lw=2, drawstyle="steps-post", label=f"N = {size['size']}")
        point = size["target"]["measured"]
        if point["fpir"] > 0:
            ax.plot([point["fpir"]], [max(point["fnir"], fnir_floor)], "o", color=colour, ms=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(fnir_floor * 0.7, 1.2)
    ax.axvline(target, color=IMPOSTOR_COLOUR, lw=1, ls=":", label=f"target FPIR {target:g} (dots: where it is met)")
    ax.axvspan(ax.get_xlim()[0], 3.0 / n_non, color="#dddddd", alpha=0.5, lw=0, label=f"FPIR < 3/n, n = {n_non}")
    _zero_line(ax, fnir_floor, "FNIR")
    ax.set_xlabel("FPIR: unknown faces that get a candidate (log)")
    ax.set_ylabel(f"FNIR: enrolled faces not found at rank {section['settings']['rank']} (log)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    ax.set_title("Misses against false positives, per gallery size (lower left is better)", fontsize=10)
    return _save(fig, path)
