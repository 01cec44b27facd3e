"""Bias checked before use: a deployment names the evaluation it relies on; with ``max_group_ratio`` in the policy,
one without an evaluation, with one made at another threshold or recognizer, or with one whose groups differ more
than allowed, is refused with the figures named, and the transparency report lists the evaluation behind each."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import GalleryLocation
from faceledger.evaluate.fairness import demographic_differentials
from faceledger.gallery import Gallery
from faceledger.ledger import EXAMPLE_POLICY, parse_policy
from faceledger.ledger.errors import DeploymentError

PURPOSE = "access-control"
LIMITED = EXAMPLE_POLICY.replace("target_fpir = 1e-2\n", "target_fpir = 1e-2\nmax_group_ratio = 1.5\n")
assert "max_group_ratio = 1.5" in LIMITED


def _report(tmp_path: Path, g: Gallery, *, threshold: float, fnmr_b: float, name: str = "report.json") -> Path:
    """An evaluation report as `faceledger evaluate` writes it, with its per-group figures computed by the evaluation's
    own function from synthetic scores: group A misses 5 % of genuine pairs, group B ``fnmr_b``."""
    rng = np.random.default_rng(1)
    n = 4000
    gen = np.concatenate([np.where(rng.random(n) < 0.05, threshold - 0.1, threshold + 0.2),
                          np.where(rng.random(n) < fnmr_b, threshold - 0.1, threshold + 0.2)])  # fmt: skip
    gen_groups = np.repeat([[0, 0], [1, 1]], n, axis=0)
    imp = rng.normal(0.0, 0.1, 20000)
    imp_groups = rng.integers(0, 2, (20000, 1)).repeat(2, axis=1)
    card = g.engine.recognizer.card
    report = {
        "threshold": {"value": threshold, "source": "given", "target_fmr": None},
        "model": {"recognizer": card.name, "recognizer_sha256": card.sha256},
        "dataset": {"group_column": "region", "groups": ["A", "B"]},
        "demographics": demographic_differentials(gen, gen_groups, imp, imp_groups, ["A", "B"], threshold),
    }
    path = tmp_path / name
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


@pytest.fixture
def gallery(gallery_location: GalleryLocation) -> Gallery:
    """A gallery whose policy limits the spread of error rates, on SQLite and on PostgreSQL in turn."""
    where = gallery_location
    g = Gallery.init(where.location, actor="admin", policy=parse_policy(LIMITED), key_file=where.key_file)
    yield g
    g.close()


def _fields(g: Gallery, **over: object) -> dict[str, object]:
    fields: dict[str, object] = dict(
        actor="chief", purpose="administration", gallery=None, search_purpose=PURPOSE, legal_basis="consent",
        location="front door", sources=["/footage/*.mp4"], authorised_by="A. Example", authorisation_ref="AUTH-1",
        valid_to=g.now() + timedelta(hours=1), max_watchlist=50,
    )  # fmt: skip
    fields.update(over)
    return fields


def _full_threshold(g: Gallery) -> float:
    from faceledger.gallery.thresholds import threshold_for_size

    with g.context.store.read() as tx:
        return threshold_for_size(g.context, tx, "staff", subjects=50, comparisons=50).threshold


def test_without_an_evaluation_a_deployment_is_refused_saying_what_to_run(gallery: Gallery) -> None:
    threshold = _full_threshold(gallery)
    with pytest.raises(DeploymentError, match=rf"names no evaluation.*1.5x.*--threshold {threshold:.4f}"):
        gallery.add_deployment("door", **_fields(gallery))


def test_groups_within_the_limit_are_accepted_and_listed_in_the_transparency_report(
    gallery: Gallery, tmp_path: Path
) -> None:
    report = _report(tmp_path, gallery, threshold=_full_threshold(gallery), fnmr_b=0.06)
    record = gallery.add_deployment(
        "door", **_fields(gallery, evaluation=report, evaluation_population="staff of the Leeds office")
    )
    assert record.evaluation is not None and record.evaluation["worst"]["ratio"] <= 1.5
    assert record.evaluation["sha256"] == __import__("hashlib").sha256(report.read_bytes()).hexdigest()
    entry = gallery.audit_entries(action="deployment.add")[-1].data
    assert entry["details"]["evaluation"]["sha256"] == record.evaluation["sha256"]  # on the ledger
    shown = gallery.report(actor="dpo", purpose="transparency report")
    text = shown.to_markdown()
    assert "## Video deployments and the evaluations they rely on" in text
    assert record.evaluation["sha256"][:16] in text and "staff of the Leeds office" in text
    assert gallery.audit_verify().ok


def test_groups_beyond_the_limit_are_refused_with_the_figures(gallery: Gallery, tmp_path: Path) -> None:
    report = _report(tmp_path, gallery, threshold=_full_threshold(gallery), fnmr_b=0.15)
    with pytest.raises(DeploymentError, match=r"group 'B' has FNMR 0\.1\d*, [23]\.\d\dx that of the best group"):
        gallery.add_deployment("door", **_fields(gallery, evaluation=report, evaluation_population="staff"))


def test_an_evaluation_at_another_threshold_or_without_a_population_is_refused(
    gallery: Gallery, tmp_path: Path
) -> None:
    full = _full_threshold(gallery)
    report = _report(tmp_path, gallery, threshold=full - 0.05, fnmr_b=0.05)
    with pytest.raises(DeploymentError, match=rf"at threshold {full - 0.05:.4f}.*evaluate again with --threshold"):
        gallery.add_deployment("door", **_fields(gallery, evaluation=report, evaluation_population="staff"))
    with pytest.raises(ValueError, match="evaluation-population"):
        gallery.add_deployment("door", **_fields(gallery, evaluation=report))


def test_a_policy_that_sets_the_limit_later_stops_a_deployment_without_an_evaluation(tmp_path: Path) -> None:
    from faceledger.gallery.deployments import authorise

    g = Gallery.init(tmp_path / "g.db", actor="admin")
    g.add_deployment("door", **_fields(g))  # no limit in this policy: recorded without an evaluation
    ctx = g.context
    with ctx.store.read() as tx:
        assert authorise(ctx, tx, "door", "/footage/a.mp4", g.now())[0].name == "door"
    policy = tmp_path / "limited.toml"
    policy.write_text(LIMITED, encoding="utf-8")
    g.set_policy(policy, actor="admin")
    with ctx.store.read() as tx, pytest.raises(DeploymentError, match="names no evaluation"):
        authorise(ctx, tx, "door", "/footage/a.mp4", g.now())
    g.close()
