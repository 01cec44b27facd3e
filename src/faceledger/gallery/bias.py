"""Bias checked before use: a deployment names the evaluation it relies on, and the policy may refuse one whose error
rates differ too much between groups.

The evaluation is the ``report.json`` of ``faceledger evaluate --group-column COLUMN --threshold T`` on data the
operator says represents the people the deployment will see (groups are the operator's labels; faceledger never
infers them). The deployment records its SHA-256, that statement, the recognizer and threshold it was made at, and
each group's FMR and FNMR with their ratios to the best group. With ``identification.max_group_ratio`` in the policy,
a deployment is refused, when it is recorded and again whenever it would run:

- without an evaluation, or with one that has no per-group figures or compares fewer than two groups;
- with one made with another recognizer, or at a threshold other than the one the deployment runs at when its
  watchlist is full (the strictest it will use);
- with a group whose FMR or FNMR is more than ``max_group_ratio`` times the best group's, naming the figures.

The transparency report lists the evaluation behind each deployment.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from faceledger.ledger.errors import DeploymentError
from faceledger.ledger.records import DeploymentRecord

THRESHOLD_TOLERANCE = 0.005
"""How far the evaluation's threshold may be from the deployment's (similarity units)."""

_GROUP_FIELDS = (
    "group", "fmr", "fnmr", "impostor_pairs", "genuine_pairs", "fmr_ratio_to_best", "fnmr_ratio_to_best",
    "fmr_ratio_is_lower_bound", "fnmr_ratio_is_lower_bound", "fmr_comparable", "fnmr_comparable",
)  # fmt: skip


def read_evaluation(path: str | os.PathLike[str], population: str | None) -> dict[str, Any]:
    """The summary a deployment records of an evaluation report (``report.json`` of ``faceledger evaluate``)."""
    file = Path(path)
    if not population or not population.strip():
        raise ValueError(
            "an evaluation needs --evaluation-population: whom its data represents (the people the deployment "
            "will see, e.g. 'station passengers, photos from the 2026 survey')"
        )
    try:
        data = file.read_bytes()
        report = json.loads(data)
    except OSError as exc:
        raise ValueError(f"{file}: cannot read the evaluation report: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(
            f"{file}: not a JSON evaluation report (give the report.json `faceledger evaluate` wrote)"
        ) from None
    if not isinstance(report, dict) or "threshold" not in report:
        raise ValueError(f"{file}: not an evaluation report of `faceledger evaluate` (no threshold)")
    demographics = report.get("demographics") or {}
    groups = [{k: g.get(k) for k in _GROUP_FIELDS} for g in demographics.get("groups") or []]
    model = report.get("model") or {}
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "file": file.name,
        "population": population.strip(),
        "recognizer": model.get("recognizer"),
        "recognizer_sha256": model.get("recognizer_sha256"),
        "threshold": demographics.get("threshold", (report.get("threshold") or {}).get("value")),
        "group_column": (report.get("dataset") or {}).get("group_column"),
        "groups": groups,
        "worst": worst_ratio(groups),
    }


def worst_ratio(groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The largest ratio of a comparable group's FMR or FNMR to the best group's: ``{group, rate, value, ratio}``."""
    worst: dict[str, Any] | None = None
    for g in groups:
        for rate in ("fmr", "fnmr"):
            ratio = g.get(f"{rate}_ratio_to_best")
            if g.get(f"{rate}_comparable") and ratio is not None and (worst is None or ratio > worst["ratio"]):
                worst = {"group": g["group"], "rate": rate.upper(), "value": g.get(rate), "ratio": float(ratio)}
    return worst


def check_evaluation(
    record: DeploymentRecord,
    limit: float | None,
    *,
    threshold: float | None = None,
    model_sha256: tuple[str, ...] | None = None,
) -> None:
    """Refuse (:class:`DeploymentError`) a deployment whose evaluation the policy's ``max_group_ratio`` (``limit``)
    does not accept (see the module). ``threshold``, when given, must be what it was made at, and the recognizer's
    SHA-256 one of ``model_sha256`` (the file's and those of earlier builds with the same embeddings)."""
    evaluation = record.evaluation
    name = f"deployment {record.name!r}"
    if limit is None:
        return
    rule = f"the policy allows error rates at most {limit:g}x the best group's (identification.max_group_ratio)"
    if evaluation is None:
        raise DeploymentError(
            f"{name} names no evaluation, and {rule}: run `faceledger evaluate --group-column COLUMN --threshold "
            f"{'T' if threshold is None else f'{threshold:.4f}'}` on data representing the people it will see, and "
            "give its report.json with --evaluation and --evaluation-population"
        )
    where = f"evaluation {evaluation.get('file')} ({str(evaluation.get('sha256'))[:12]})"
    if model_sha256 is not None and evaluation.get("recognizer_sha256") not in (None, *model_sha256):
        raise DeploymentError(f"{name}: {where} was made with another recognizer ({evaluation.get('recognizer')})")
    measured = evaluation.get("threshold")
    if threshold is not None and measured is not None and abs(float(measured) - threshold) > THRESHOLD_TOLERANCE:
        raise DeploymentError(
            f"{name}: {where} measured the groups at threshold {float(measured):.4f}, but the deployment runs at "
            f"{threshold:.4f} with its watchlist full: evaluate again with --threshold {threshold:.4f}"
        )
    groups = evaluation.get("groups") or []
    compared = {g["group"] for g in groups if g.get("fmr_comparable") or g.get("fnmr_comparable")}
    if len(compared) < 2:
        raise DeploymentError(
            f"{name}: {where} compares {len(compared)} group(s) (labels from --group-column, with enough pairs each); "
            f"{rule}, which needs at least two"
        )
    worst = evaluation.get("worst")
    if worst is not None and worst["ratio"] > limit:
        raise DeploymentError(
            f"{name}: in {where}, group {worst['group']!r} has {worst['rate']} {worst['value']:.3g}, "
            f"{worst['ratio']:.2f}x that of the best group; {rule}"
        )
