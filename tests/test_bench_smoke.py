"""The comparison benchmark: its pair building and metrics, and a two-image run of its faceledger half."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_pipeline.py"


bench = load_benchmark("bench_pipeline")


def test_auc_matches_pairwise_count() -> None:
    genuine = [0.9, 0.8, 0.5, 0.5, 0.2]
    impostor = [0.1, 0.5, 0.3, 0.6]
    wins = sum(1.0 if g > i else 0.5 if g == i else 0.0 for g in genuine for i in impostor)
    assert bench.auc(genuine, impostor) == pytest.approx(wins / (len(genuine) * len(impostor)))
    assert bench.auc([1.0, 2.0], [0.0]) == 1.0
    assert bench.auc([0.0], [1.0, 2.0]) == 0.0
    assert bench.auc([], [1.0]) is None


def test_best_accuracy_tries_every_threshold() -> None:
    genuine = [0.9, 0.8, 0.4]
    impostor = [0.1, 0.5, 0.3]
    # threshold 0.8 accepts 0.9 and 0.8 and rejects the three impostors: 5 of 6 right; no threshold gets all 6
    assert bench.best_accuracy(genuine, impostor) == pytest.approx(5 / 6)
    assert bench.best_accuracy([1.0], [0.0]) == 1.0
    # pairs without a face (infinite scores) are errors at every threshold
    assert bench.best_accuracy([-float("inf"), 0.9], [float("inf"), 0.1]) == 0.5


def test_missing_faces_are_non_matches_for_the_match_rates() -> None:
    inf = float("inf")
    genuine = [0.9, 0.8, 0.7, -inf]
    impostor = [0.1, 0.2, 0.3, inf] * 25  # 100 impostor pairs, 25 of them without a face
    # FMR 1%: one impostor may pass; the face-less ones never do, so the threshold is the second real score, 0.3
    assert bench.tar_at_fmr(genuine, impostor, 0.01) == pytest.approx(3 / 4)
    embeddings = [[1.0, 0.0], [1.0, 0.0], None, [0.0, 1.0]]
    result = bench.verification(embeddings, [(0, 1), (0, 2)], [(0, 3), (1, 2)], bench._dot, lambda s: s >= 0.5)
    assert result["true_match_rate"] == 0.5 and result["false_match_rate"] == 0.0


def test_no_default_threshold_means_no_accuracy() -> None:
    result = bench.verification([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [(0, 1)], [(0, 2)], bench._dot, None)
    assert result["accuracy"] is None and result["true_match_rate"] is None
    assert result["auc"] == 1.0 and result["best_accuracy"] == 1.0


def test_missing_faces_count_as_errors_and_worst_scores() -> None:
    embeddings = [[1.0, 0.0], [1.0, 0.0], None, [0.0, 1.0]]
    genuine = [(0, 1), (0, 2)]
    impostor = [(0, 3), (1, 2)]
    result = bench.verification(embeddings, genuine, impostor, bench._dot, lambda s: s >= 0.5)
    assert result["pairs"] == 4
    assert result["pairs_without_face"] == 2
    assert result["accuracy"] == 0.5  # the two pairs with a face are right, the two without are errors
    # genuine scores 1.0 and -inf (no face), impostor scores 0.0 and +inf (no face): 1.0 beats 0.0 only
    assert result["auc"] == pytest.approx(0.25)


def test_pairs_cover_all_genuine_and_sample_impostors_within_source() -> None:
    rows = [
        bench.Row(f"{s}/{who}{k}.png", f"{s}:{who}", s, 1)
        for s in ("a", "b")
        for who in ("x", "y", "z")
        for k in range(3)
    ]
    rows.append(bench.Row("a/group.png", "", "a", 4))
    genuine, impostor = bench.build_pairs(rows)
    assert len(genuine) == 2 * 3 * 3  # three pairs for each of six identities
    assert all(rows[a].identity == rows[b].identity for a, b in genuine)
    assert len(impostor) == len(genuine)
    assert all(rows[a].identity != rows[b].identity and rows[a].source == rows[b].source for a, b in impostor)
    assert all(rows[a].identity and rows[b].identity for a, b in impostor)
    assert len(set(impostor)) == len(impostor)
    assert bench.build_pairs(rows) == (genuine, impostor)  # deterministic


def test_held_out_pairs_avoid_the_calibration_identities() -> None:
    from faceledger.evaluate.splits import is_calibration_identity

    rows = [bench.Row(f"s/{who}{k}.png", f"s:{who}", "s", 1) for who in "abcdefghij" for k in range(3)]
    held_out = bench.held_out_pairs(rows)
    assert held_out is not None
    genuine, impostor = held_out
    used = {rows[i].identity for pair in genuine + impostor for i in pair}
    outside = {r.identity for r in rows if not is_calibration_identity(r.identity)}
    assert used == outside and genuine and impostor  # this set of ten names has identities in both halves
    assert len(genuine) == 3 * len(outside)


def test_limit_spreads_over_the_manifest() -> None:
    rows = [bench.Row(str(i), "", "s", 1) for i in range(10)]
    assert [r.path for r in bench.select_rows(rows, 3)] == ["0", "4", "9"]
    assert bench.select_rows(rows, None) == rows
    assert bench.select_rows(rows, 50) == rows


@pytest.mark.shared_data
def test_faceledger_half_runs_on_two_images(faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, FACELEDGER_FACES=str(faces_dir))
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--limit",
            "2",
            "--skip-baseline",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "images/s" in completed.stdout and "peak RSS MiB" in completed.stdout
    report = json.loads(out.read_text())
    summary = report["systems"]["faceledger"]
    assert summary["images"] == 2
    assert summary["errors"] == {}
    assert summary["faces"] >= 2  # both images of the spread hold a face
    assert summary["images_per_s"] > 0 and summary["detect_ms"] > 0 and summary["embed_ms"] > 0
    assert summary["peak_rss_mb"] >= summary["rss_after_load_mb"] > 0
    assert "face_recognition" not in report["systems"]
