"""Run an evaluation: embed every image of a dataset once (cached), then compute every figure of the report.

:func:`embed_dataset` is the only part that runs models; :func:`evaluate_outcomes` is pure numpy on its
output, so the figures can be checked against an independent computation from the same embeddings.

Choices made here (all also stated in the report):

* one face per image: the largest (faces come largest first from the engine); images with several faces are
  listed;
* verification pairs: every pair of labeled images with a face (same identity = genuine, different =
  impostor), or the listed pairs of a pairs file;
* closed-set identification: gallery = first usable image of each identity with at least two, probes = the
  rest;
* open-set identification: identities whose ``sha256("open-set:" + identity)`` starts with 0-3 (about a
  quarter), plus identities with a single image, are held out (never enrolled) and searched as non-mated
  probes; the others are enrolled with their first image and searched with the rest;
* detection: face counts on images whose number of faces is known (no box annotations are needed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.evaluate import metrics as m
from faceledger.evaluate.cache import EmbeddingCache
from faceledger.evaluate.datasets import Dataset
from faceledger.evaluate.embedding import ImageOutcome, embed_dataset
from faceledger.evaluate.fairness import DEFAULT_MAX_RATIO, demographic_differentials
from faceledger.evaluate.openset import OpenSetOptions, open_set_by_size

__all__ = [
    "DEFAULT_FPIR_TARGETS",
    "Evaluation",
    "ImageOutcome",
    "all_pair_scores",
    "dataset_pair_scores",
    "embed_dataset",
    "evaluate_outcomes",
    "is_open_set_held_out",
]

#: FPIR levels at which open-set FNIR is reported.
DEFAULT_FPIR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3)

#: At most this many entries per failure list in the Markdown report (JSON lists all).
MAX_LISTED = 50


def is_open_set_held_out(identity: str) -> bool:
    """True for the identities kept out of the open-set gallery (about a quarter, fixed by the name)."""
    return hashlib.sha256(("open-set:" + identity).encode()).hexdigest()[0] in "0123"


# --------------------------------------------------------------------------------------------- pair scores


@dataclass
class PairScores:
    """Genuine and impostor similarity scores, with the group index of both sides of each pair (-1: none)."""

    genuine: npt.NDArray[np.float32]
    impostor: npt.NDArray[np.float32]
    genuine_groups: npt.NDArray[np.int32] | None = None
    impostor_groups: npt.NDArray[np.int32] | None = None


def all_pair_scores(
    vectors: npt.NDArray[np.float32],
    identity_codes: npt.NDArray[np.int64],
    group_codes: npt.NDArray[np.int32] | None = None,
    block: int = 1024,
) -> PairScores:
    """Scores of every unordered pair ``i < j`` of ``vectors``: genuine when the identity codes agree.

    Computed in row blocks (one matrix product each) so memory stays at ``block x n`` scores plus the output.
    """
    n = len(vectors)
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    cols = np.arange(n)
    gen: list[np.ndarray] = []
    imp: list[np.ndarray] = []
    gg: list[np.ndarray] = []
    ig: list[np.ndarray] = []
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        scores = v[r0:r1] @ v.T
        upper = cols[None, :] > np.arange(r0, r1)[:, None]
        same = identity_codes[r0:r1, None] == identity_codes[None, :]
        gmask, imask = upper & same, upper & ~same
        gen.append(scores[gmask])
        imp.append(scores[imask])
        if group_codes is not None:
            left = np.broadcast_to(group_codes[r0:r1, None], scores.shape)
            right = np.broadcast_to(group_codes[None, :], scores.shape)
            gg.append(np.stack([left[gmask], right[gmask]], axis=1))
            ig.append(np.stack([left[imask], right[imask]], axis=1))
    empty = np.zeros(0, np.float32)
    result = PairScores(
        np.concatenate(gen) if gen else empty,
        np.concatenate(imp) if imp else empty,
    )
    if group_codes is not None:
        none = np.zeros((0, 2), np.int32)
        result.genuine_groups = np.concatenate(gg).astype(np.int32) if gg else none
        result.impostor_groups = np.concatenate(ig).astype(np.int32) if ig else none
    return result


# --------------------------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """The report (JSON-ready dict) and the arrays the plots are drawn from."""

    report: dict[str, Any]
    genuine: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    impostor: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    roc: m.RocCurve | None = None


def _roc_points(roc: m.RocCurve, n_points: int = 200) -> dict[str, list[float | None]]:
    """A few hundred ROC points, log-spaced in FMR, enough to draw the curve (the full ROC stays in
    memory)."""
    levels = np.geomspace(1.0 / max(roc.impostor_pairs, 1), 1.0, n_points)
    idx = np.unique(np.concatenate(([0], np.searchsorted(roc.fmr, levels, side="right") - 1, [roc.fmr.size - 1])))
    idx = idx[idx >= 0]
    thr = roc.thresholds[idx]
    return {
        "fmr": [float(x) for x in roc.fmr[idx]],
        "tar": [float(x) for x in roc.tar[idx]],
        # +inf (nothing accepted) has no JSON form
        "threshold": [None if np.isinf(x) else float(x) for x in thr],
    }


def _verification(
    pairs: PairScores, threshold: float, fmr_targets: Sequence[float], confidence: float
) -> tuple[dict[str, Any], m.RocCurve]:
    roc = m.roc_curve(pairs.genuine, pairs.impostor)
    eer, eer_t = m.eer(roc)
    acc, acc_t = m.best_accuracy(roc)
    bacc, bacc_t = m.best_accuracy(roc, balanced=True)
    return {
        "genuine_pairs": int(pairs.genuine.size),
        "impostor_pairs": int(pairs.impostor.size),
        "auc": m.auc(roc),
        "eer": eer,
        "eer_threshold": eer_t,
        "tar_at_fmr": m.tar_at_fmr(pairs.genuine, pairs.impostor, fmr_targets, confidence),
        "best_accuracy": {"accuracy": acc, "threshold": acc_t},
        "best_balanced_accuracy": {"accuracy": bacc, "threshold": bacc_t},
        "at_threshold": m.error_rates_at(pairs.genuine, pairs.impostor, threshold, confidence).to_dict(),
        "scores": {"genuine": m.score_summary(pairs.genuine), "impostor": m.score_summary(pairs.impostor)},
        "roc": _roc_points(roc),
    }, roc


def _identification(
    dataset: Dataset,
    usable: list[ImageOutcome],
    threshold: float,
    fpir_targets: Sequence[float],
) -> dict[str, Any]:
    by_identity: dict[str, list[ImageOutcome]] = {}
    for o in usable:
        identity = dataset.samples[o.index].identity
        if identity:
            by_identity.setdefault(identity, []).append(o)
    multi = {k: v for k, v in by_identity.items() if len(v) >= 2}
    out: dict[str, Any] = {"closed_set": None, "open_set": None, "notes": []}
    if len(multi) < 2:
        out["notes"].append(
            f"identification needs at least two identities with two usable images each; found {len(multi)}"
        )
        return out

    # closed set: every identity with >= 2 images is enrolled with its first usable image
    names = list(multi)
    gallery = np.stack([multi[k][0].vector for k in names])  # type: ignore[misc]
    probes = [(o, i) for i, k in enumerate(names) for o in multi[k][1:]]
    probe_vecs = np.stack([o.vector for o, _ in probes])  # type: ignore[misc]
    mates = np.array([i for _, i in probes], dtype=np.int64)
    scores = probe_vecs @ gallery.T
    closed = m.closed_set_identification(scores, mates)
    misses = []
    for (o, i), rank, row in zip(probes, closed.ranks, scores, strict=True):
        if rank > 1:
            top = int(np.argmax(row))
            misses.append(
                {
                    "probe": o.name,
                    "identity": names[i],
                    "rank": int(rank),
                    "returned": names[top],
                    "similarity": float(row[top]),
                    "mate_similarity": float(row[i]),
                }
            )
    out["closed_set"] = {
        **closed.to_dict(),
        "gallery_rule": "first usable image of each identity with at least two",
        "rank1_misses": misses,
    }

    # open set: a fixed quarter of identities (and single-image ones) are never enrolled
    enrolled = [k for k in names if not is_open_set_held_out(k)]
    held = [k for k in by_identity if k not in enrolled]
    if len(enrolled) < 2 or not held:
        out["notes"].append(
            f"open-set identification needs enrolled and held-out identities; have {len(enrolled)} and {len(held)}"
        )
        return out
    gal = np.stack([multi[k][0].vector for k in enrolled])  # type: ignore[misc]
    searches: list[np.ndarray] = []
    mate_list: list[int] = []
    for i, k in enumerate(enrolled):
        for o in multi[k][1:]:
            searches.append(o.vector)  # type: ignore[arg-type]
            mate_list.append(i)
    for k in held:
        for o in by_identity[k]:
            searches.append(o.vector)  # type: ignore[arg-type]
            mate_list.append(-1)
    open_scores = np.stack(searches) @ gal.T
    open_set = m.fnir_at_fpir(open_scores, np.array(mate_list), fpir_targets, threshold=threshold)
    out["open_set"] = {
        "enrolled_identities": len(enrolled),
        "held_out_identities": len(held),
        "held_out_rule": "sha256('open-set:' + identity) starts with 0-3, or the identity has one usable image",
        **open_set,
    }
    return out


def _detection(dataset: Dataset, outcomes: list[ImageOutcome]) -> dict[str, Any] | None:
    known = [
        (o, dataset.samples[o.index].n_faces_expected)
        for o in outcomes
        if o.status != "unreadable" and dataset.samples[o.index].n_faces_expected is not None
    ]
    if not known:
        return None
    expected = [int(e) for _, e in known if e is not None]
    detected = [o.n_faces for o, _ in known]
    result = m.detection_metrics(expected, detected).to_dict()
    result["mismatches"] = [{"image": o.name, "expected": e, "detected": o.n_faces} for o, e in known if e != o.n_faces]
    result["method"] = "face counts: found = min(detected, expected) per image; extra detections are false"
    return result


def _failures(dataset: Dataset, outcomes: list[ImageOutcome]) -> dict[str, list[dict[str, Any]]]:
    unreadable = [{"image": o.name, "reason": o.reason} for o in outcomes if o.status == "unreadable"]
    no_face = [
        {"image": o.name, "identity": dataset.samples[o.index].identity}
        for o in outcomes
        if o.status == "no_face" and dataset.samples[o.index].n_faces_expected != 0
    ]
    several = [
        {"image": o.name, "identity": dataset.samples[o.index].identity, "faces": o.n_faces}
        for o in outcomes
        if o.n_faces > 1 and dataset.samples[o.index].identity
    ]
    return {"unreadable": unreadable, "no_face": no_face, "several_faces": several}


def _pairs_from_file(dataset: Dataset, outcomes: list[ImageOutcome]) -> tuple[PairScores, int]:
    assert dataset.pairs is not None
    gen: list[float] = []
    imp: list[float] = []
    skipped = 0
    for p in dataset.pairs:
        va, vb = outcomes[p.a].vector, outcomes[p.b].vector
        if va is None or vb is None:
            skipped += 1
            continue
        (gen if p.same else imp).append(float(np.dot(va, vb)))
    return PairScores(np.asarray(gen, np.float32), np.asarray(imp, np.float32)), skipped


def dataset_pair_scores(
    dataset: Dataset, outcomes: list[ImageOutcome], group_names: Sequence[str] = ()
) -> tuple[PairScores, str, int]:
    """Verification scores of a dataset: ``(scores, how the pairs were formed, pairs skipped)``.

    A pairs file gives its listed pairs (a pair with an image without face is skipped); otherwise every pair
    of labeled images with a face is used, with group indices per side when ``group_names`` is given.
    """
    if dataset.pairs is not None:
        pairs, skipped = _pairs_from_file(dataset, outcomes)
        rule = f"{len(dataset.pairs)} pairs listed in the pairs file; {skipped} skipped (an image without face)"
        return pairs, rule, skipped
    labeled = [o for o in outcomes if o.vector is not None and dataset.samples[o.index].identity]
    ids = [dataset.samples[o.index].identity for o in labeled]
    codes = {k: i for i, k in enumerate(dict.fromkeys(ids))}
    gcodes = None
    if group_names:
        gindex = {g: i for i, g in enumerate(group_names)}
        gcodes = np.array([gindex.get(dataset.samples[o.index].group or "", -1) for o in labeled], dtype=np.int32)
    vectors = np.stack([o.vector for o in labeled if o.vector is not None]) if labeled else np.zeros((0, 1), np.float32)
    pairs = all_pair_scores(vectors, np.array([codes[k] for k in ids], dtype=np.int64), gcodes)
    return pairs, "every pair of labeled images with a face (same identity: genuine, different: impostor)", 0


def evaluate_outcomes(
    dataset: Dataset,
    outcomes: list[ImageOutcome],
    *,
    threshold: float | None = None,
    threshold_source: str = "",
    target_fmr: float = 1e-3,
    fmr_targets: Sequence[float] = m.DEFAULT_FMR_TARGETS,
    fpir_targets: Sequence[float] = DEFAULT_FPIR_TARGETS,
    max_group_ratio: float = DEFAULT_MAX_RATIO,
    confidence: float = 0.95,
    open_set: OpenSetOptions | None = None,
    calibration: Any = None,
) -> Evaluation:
    """Every figure of the evaluation report from the engine's outcomes (pure computation, no models).

    ``threshold`` is the operating threshold (the deployment's); when None, the threshold meeting
    ``target_fmr`` on this dataset's own impostor pairs is used and the report says so. ``open_set`` sets the
    open-set sweep over gallery sizes (:mod:`faceledger.evaluate.openset`), ``calibration`` the model card's
    calibration whose FPIR prediction it shows.
    """
    usable = [o for o in outcomes if o.vector is not None]
    report: dict[str, Any] = {
        "dataset": {
            "name": dataset.name,
            "kind": dataset.kind,
            "images": len(dataset.samples),
            "labeled_images": sum(1 for s in dataset.samples if s.identity),
            "identities": len(dataset.identities),
            "group_column": dataset.group_column if dataset.has_groups else None,
            "groups": sorted({s.group for s in dataset.samples if s.group}),
        },
        "settings": {
            "fmr_targets": list(fmr_targets),
            "fpir_targets": list(fpir_targets),
            "confidence": confidence,
            "max_group_ratio": max_group_ratio,
            "face_selection": "largest face of each image",
            "support_rule": "a rate r is reported only with at least 10 / r comparisons behind it",
            "interval": "Clopper-Pearson (exact binomial)",
        },
        "images": {
            "total": len(outcomes),
            "with_face": len(usable),
            "no_face": sum(1 for o in outcomes if o.status == "no_face"),
            "unreadable": sum(1 for o in outcomes if o.status == "unreadable"),
            "several_faces": sum(1 for o in outcomes if o.n_faces > 1),
            "from_cache": sum(1 for o in outcomes if o.cached),
        },
        "threshold": None,
        "verification": None,
        "identification": None,
        "detection": _detection(dataset, outcomes),
        "failures": _failures(dataset, outcomes),
        "demographics": None,
        "notes": [],
    }
    notes: list[str] = report["notes"]

    # ---- pairs
    group_names = report["dataset"]["groups"]
    pairs, pair_rule, skipped = dataset_pair_scores(dataset, outcomes, group_names)

    evaluation = Evaluation(report, pairs.genuine, pairs.impostor)
    if pairs.impostor.size == 0 or pairs.genuine.size == 0:
        notes.append(
            f"verification needs genuine and impostor pairs; found {pairs.genuine.size} genuine and "
            f"{pairs.impostor.size} impostor pairs"
        )
        if threshold is not None:
            report["threshold"] = {"value": float(threshold), "source": threshold_source, "target_fmr": None}
        return evaluation

    if threshold is None:
        threshold, _ = m.threshold_at_fmr(pairs.impostor, target_fmr)
        threshold_source = (
            f"this dataset's own impostor pairs, for a false-match rate of {target_fmr:g}, because no "
            "calibrated threshold was available"
        )
        if not m.supports_rate(int(pairs.impostor.size), target_fmr):
            notes.append(
                f"The operating threshold comes from only {pairs.impostor.size} impostor pairs, too "
                "few to pin "
                f"an FMR of {target_fmr:g}"
            )
    report["threshold"] = {"value": float(threshold), "source": threshold_source, "target_fmr": target_fmr}

    verification, roc = _verification(pairs, float(threshold), fmr_targets, confidence)
    verification["pairs_rule"] = pair_rule
    verification["pairs_skipped"] = skipped
    report["verification"] = verification
    evaluation.roc = roc

    if dataset.pairs is None:
        report["identification"] = _identification(dataset, usable, float(threshold), fpir_targets)
        labeled = [o for o in usable if dataset.samples[o.index].identity]
        report["identification"]["by_gallery_size"] = open_set_by_size(
            np.stack([o.vector for o in labeled]),  # type: ignore[misc]
            [dataset.samples[o.index].identity for o in labeled],
            open_set,
            impostor=pairs.impostor,
            calibration=calibration,
            operating_threshold=float(threshold),
        )
    else:
        report["identification"] = {
            "closed_set": None,
            "open_set": None,
            "notes": ["a pairs file defines comparisons, not a gallery: identification is not measured"],
        }

    if group_names and pairs.genuine_groups is not None and pairs.impostor_groups is not None:
        report["demographics"] = demographic_differentials(
            pairs.genuine,
            pairs.genuine_groups,
            pairs.impostor,
            pairs.impostor_groups,
            group_names,
            float(threshold),
            max_ratio=max_group_ratio,
            confidence=confidence,
        )
    return evaluation


def model_info(engine: Any) -> dict[str, Any]:
    """Names and checksums of the models behind an evaluation, and the faceledger version."""
    from faceledger import __version__

    recognizer = getattr(engine.recognizer, "card", None)
    detector = getattr(getattr(engine, "detector", None), "card", None)
    return {
        "recognizer": getattr(recognizer, "name", None),
        "recognizer_sha256": getattr(recognizer, "sha256", None),
        "dim": getattr(recognizer, "dim", None),
        "detector": getattr(detector, "name", None),
        "detector_sha256": getattr(detector, "sha256", None),
        "faceledger_version": __version__,
    }


def operating_threshold(engine: Any, threshold: float | None, target_fmr: float) -> tuple[float | None, str]:
    """The threshold to report at, and where it comes from: a given value, else the model card's calibration.

    Returns ``(None, "")`` when neither exists; :func:`evaluate_outcomes` then uses the dataset's own
    threshold.
    """
    if threshold is not None:
        return float(threshold), "the threshold given on the command line"
    calibration = getattr(engine, "calibration", None)
    if calibration is not None:
        name = getattr(engine.recognizer.card, "name", "the recognizer")
        return (
            float(engine.threshold_for_fmr(target_fmr)),
            f"the calibration in the model card of {name}, for a false-match rate of {target_fmr:g}",
        )
    return None, ""


def evaluate_dataset(
    dataset: Dataset,
    engine: Any,
    cache: EmbeddingCache,
    *,
    executor: Any = None,
    threshold: float | None = None,
    target_fmr: float = 1e-3,
    max_group_ratio: float = DEFAULT_MAX_RATIO,
    confidence: float = 0.95,
    progress: bool = True,
    open_set: OpenSetOptions | None = None,
) -> tuple[Evaluation, list[ImageOutcome]]:
    """Embed ``dataset`` with ``engine`` (cached; on ``executor``, see :func:`embed_dataset`) and evaluate it; see
    :func:`evaluate_outcomes`."""
    outcomes = embed_dataset(dataset, engine, cache, progress=progress, executor=executor)
    value, source = operating_threshold(engine, threshold, target_fmr)
    evaluation = evaluate_outcomes(
        dataset,
        outcomes,
        threshold=value,
        threshold_source=source,
        target_fmr=target_fmr,
        max_group_ratio=max_group_ratio,
        confidence=confidence,
        open_set=open_set,
        calibration=getattr(engine, "calibration", None),
    )
    evaluation.report["model"] = model_info(engine)
    return evaluation, outcomes
