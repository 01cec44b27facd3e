"""Open-set identification against gallery size (faceledger.evaluate.openset), on synthetic embeddings whose
answers are known: a hand-built case for the rank and threshold conventions, independent impostors for the
1 - (1 - FMR)^N formula, and the laws FPIR and FNIR must obey."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from faceledger.evaluate.openset import (
    OpenSetOptions,
    default_sizes,
    fpir_upper_bound,
    open_set_by_size,
    per_comparison_fmr,
    predicted_fpir,
    split_identities,
)


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def _population(
    n_ids: int, images: int, dim: int = 64, noise: float = 0.35, seed: int = 3
) -> tuple[np.ndarray, list[str]]:
    """Identities with a random centre each and images scattered around it (unit vectors)."""
    rng = np.random.default_rng(seed)
    vectors, ids = [], []
    for i in range(n_ids):
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        for _ in range(images):
            v = centre + noise * rng.normal(size=dim) / math.sqrt(dim)
            vectors.append(v / np.linalg.norm(v))
            ids.append(f"id{i:04d}")
    return np.asarray(vectors, np.float32), ids


def _impostor_scores(vectors: np.ndarray, ids: list[str]) -> np.ndarray:
    labels = np.array(ids)
    iu = np.triu_indices(len(labels), 1)
    return (vectors @ vectors.T)[iu][labels[iu[0]] != labels[iu[1]]]


def _curve(result: dict[str, Any], size: int) -> dict[str, Any]:
    return next(c for c in result["curves"]["by_size"] if c["size"] == size)


def test_hand_built_gallery_follows_the_rank_and_threshold_conventions() -> None:
    names = ["a", "b", "c", "d"]
    enrollable, held = split_identities([k for k in names for _ in range(2)])
    assert len(enrollable) == 2 and len(held) == 2 and set(enrollable) | set(held) == set(names)
    e1, e2 = enrollable
    h1, h2 = held
    u1 = _unit(1, 0, 0)
    # e2's two photos are each closer to e1 than to each other: its mated search is always at rank 2
    photos = {e1: [u1, u1], e2: [_unit(1, 1, 0), _unit(1, -1, 0)], h1: [_unit(0, 0, 1)] * 2, h2: [_unit(1, 0, 1)] * 2}
    ids = [k for k in names for _ in range(2)]
    vectors = np.stack([photos[k][i % 2] for i, k in enumerate(ids)])
    result = open_set_by_size(vectors, ids, OpenSetOptions(sizes=(2,), draws=4), operating_threshold=0.6)
    (size,) = result["sizes"]
    assert (size["non_mated_searches"], size["mated_searches_per_draw"], size["templates"]) == (4, 2, 2)
    at = size["at_operating_threshold"]
    # h2 scores 0.707 with e1 (a candidate at 0.6), h1 scores 0 with everyone; e1 is found, e2 never at rank 1
    assert (at["fpir"], at["false_positives"], at["non_mated_searches_pooled"]) == (0.5, 8, 16)
    assert (at["fnir"], at["misses"]) == (0.5, 4)
    curve = _curve(result, 2)
    t = np.array(result["curves"]["threshold"])
    assert np.all(np.array(curve["fnir"])[t < 0.99] == 0.5)  # a rank-2 mate is a miss at every threshold
    ranked2 = open_set_by_size(vectors, ids, OpenSetOptions(sizes=(2,), draws=4, rank=2), operating_threshold=-0.01)
    assert ranked2["sizes"][0]["at_operating_threshold"]["fnir"] == 0.0  # at rank 2, e2 (similarity 0) is found
    assert ranked2["sizes"][0]["at_operating_threshold"]["fpir"] == 1.0


def test_fpir_grows_with_gallery_size_and_fnir_falls_with_the_threshold() -> None:
    vectors, ids = _population(160, 3)
    result = open_set_by_size(vectors, ids, OpenSetOptions(sizes=(5, 20, 80), draws=5), operating_threshold=0.25)
    sizes = result["sizes"]
    assert [s["size"] for s in sizes] == [5, 20, 80]
    fpir = [s["at_operating_threshold"]["fpir"] for s in sizes]
    assert 0 < fpir[0] < fpir[1] < fpir[2] < 1, fpir
    t = np.array(result["curves"]["threshold"])
    assert np.all(np.diff(t) > 0)
    for curve in result["curves"]["by_size"]:
        fnir, fp = np.array(curve["fnir"]), np.array(curve["fpir"])
        assert np.all(np.diff(fnir) >= 0) and np.all(np.diff(fp) <= 0)  # lowering t: fewer misses, more candidates
        assert fnir[-1] > 0.4 and fp[-1] == 0.0 and fp[0] > 0.4  # the grid spans both ends
    # the same threshold misses more enrolled people in a larger gallery (someone else comes first more often)
    assert sizes[0]["at_operating_threshold"]["fnir"] <= sizes[2]["at_operating_threshold"]["fnir"]


def test_formula_predicts_fpir_on_independent_impostors() -> None:
    # one image per non-enrolled identity and random centres in 32 dimensions: impostor scores of one search
    # against different subjects are (nearly) independent, which is what the formula assumes
    vectors, ids = _population(1200, 2, dim=32, noise=0.3, seed=11)
    imp = _impostor_scores(vectors, ids)
    threshold = float(np.quantile(imp, 1 - 0.004))  # per-comparison FMR 0.004
    result = open_set_by_size(
        vectors, ids, OpenSetOptions(sizes=(10, 50, 200), draws=4), impostor=imp, operating_threshold=threshold
    )
    for size in result["sizes"]:
        at = size["at_operating_threshold"]
        expected = 1 - (1 - 0.004) ** size["templates"]
        assert at["predicted_fpir_dataset"] == pytest.approx(expected, rel=0.02)
        sigma = math.sqrt(expected * (1 - expected) / size["non_mated_searches"])  # each image counted once
        assert abs(at["fpir"] - at["predicted_fpir_dataset"]) < 4 * sigma, (size["size"], at)


def test_threshold_for_the_target_is_the_lowest_that_meets_it() -> None:
    vectors, ids = _population(400, 2, noise=0.3)
    imp = _impostor_scores(vectors, ids)
    result = open_set_by_size(vectors, ids, OpenSetOptions(target_fpir=0.02, sizes=(10, 100), draws=3), impostor=imp)
    for size in result["sizes"]:
        target = size["target"]
        point = target["measured"]
        assert point["fpir"] <= 0.02
        # just below it, more searches than the target allows get a candidate
        below = open_set_by_size(
            vectors,
            ids,
            OpenSetOptions(target_fpir=0.02, sizes=(size["size"],), draws=3),
            operating_threshold=float(np.nextafter(np.float32(point["threshold"]), np.float32(-1))),
        )
        assert below["sizes"][0]["at_operating_threshold"]["fpir"] > 0.02
        # 400 searches can show 2% with 95% confidence only with at most a few of them false
        confirmed = target["confirmed"]
        assert confirmed is not None and confirmed["threshold"] >= point["threshold"]
        assert confirmed["fpir_upper_95"] <= 0.02 and confirmed["fnir"] >= point["fnir"]
        formula = target["formula_dataset"]
        assert formula["per_comparison_fmr"] == pytest.approx(1 - 0.98 ** (1 / size["templates"]))
        assert formula["threshold"] is not None and "measured" in formula


def test_too_few_non_mated_searches_are_named_not_reported_as_met() -> None:
    vectors, ids = _population(40, 3)  # 20 people not enrolled, 60 searches: 3 / 60 = 5% > 1%
    result = open_set_by_size(vectors, ids, OpenSetOptions(target_fpir=0.01, sizes=(5,), draws=2))
    target = result["sizes"][0]["target"]
    assert target["confirmed"] is None
    assert "60 non-mated searches cannot show an FPIR of 0.01" in target["confirmed_reason"]
    assert "at least 299 are needed" in target["confirmed_reason"]
    assert fpir_upper_bound(0, 60) == pytest.approx(1 - 0.05 ** (1 / 60))


def test_model_card_calibration_gives_the_formula_threshold() -> None:
    class Card:
        dataset = "synthetic"
        impostor_pairs = 10_000

        def fmr_at(self, t: float) -> float:
            return float(np.interp(t, [0.0, 1.0], [0.1, 0.0]))

        def threshold_for_fmr(self, fmr: float) -> float:
            if fmr < 1e-4:
                raise ValueError("below what this calibration can measure")
            return 1.0 - fmr / 0.1

    vectors, ids = _population(80, 3)
    result = open_set_by_size(vectors, ids, OpenSetOptions(sizes=(5, 40)), calibration=Card(), operating_threshold=0.5)
    small, large = result["sizes"]
    assert small["target"]["formula_card"]["threshold"] == pytest.approx(1 - per_comparison_fmr(0.01, 5) / 0.1)
    assert small["at_operating_threshold"]["predicted_fpir_card"] == pytest.approx(1 - 0.95**5)
    assert large["target"]["formula_card"]["threshold"] > small["target"]["formula_card"]["threshold"]
    tiny = open_set_by_size(vectors, ids, OpenSetOptions(target_fpir=1e-4, sizes=(40,)), calibration=Card())
    card = tiny["sizes"][0]["target"]["formula_card"]
    assert card["threshold"] is None and "below what this calibration can measure" in card["reason"]
    assert "synthetic" in result["settings"]["calibration"]


def test_sizes_and_split() -> None:
    assert default_sizes(40) == [5, 10, 20, 40]
    assert default_sizes(5) == [5]
    assert predicted_fpir([0.0, 1e-3], 1000).tolist() == pytest.approx([0.0, 1 - 0.999**1000])
    ids = ["solo"] + [k for k in ("p", "q", "r") for _ in range(2)] + ["", ""]
    enrollable, held = split_identities(ids)
    assert "solo" in held and "" not in held + enrollable and len(enrollable) == 1
    vectors, labels = _population(12, 2)
    result = open_set_by_size(vectors, labels, OpenSetOptions(sizes=(3, 50)))
    assert [s["size"] for s in result["sizes"]] == [3]
    assert "left out: 50" in result["notes"][0]


def test_cli_rejects_bad_gallery_sizes(tmp_path: Any) -> None:
    from faceledger.interfaces.cli.evaluate import evaluate_command

    result = CliRunner().invoke(evaluate_command, [str(tmp_path), "--out", str(tmp_path / "o"), "--gallery-sizes", "0"])
    assert result.exit_code == 2 and "gallery sizes must be at least 1" in result.output


# ------------------------------------------------------------------------------------- the command, real photos


@pytest.fixture(scope="module")
def open_set_run(manifest: list[Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`faceledger evaluate` on 20 identities x 3 photos of the evaluation half, gallery sizes 3 and 6."""
    import csv
    import json

    from faceledger.evaluate.splits import is_calibration_identity
    from faceledger.interfaces.cli.evaluate import evaluate_command

    by_id: dict[str, list[Any]] = {}
    for row in manifest:
        if row.identity and not is_calibration_identity(row.identity):
            by_id.setdefault(row.identity, []).append(row)
    chosen = sorted(k for k, rows in by_id.items() if len(rows) >= 3)[:20]
    work = tmp_path_factory.mktemp("openset")
    with open(work / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity"])
        writer.writerows((str(r.path), k) for k in chosen for r in by_id[k][:3])
    common = [str(work / "manifest.csv"), "--cache-dir", str(work / "cache"), "--quiet", "--gallery-sizes", "3,6,50"]
    args = [*common, "--out", str(work / "report"), "--json", "--draws", "3", "--target-fpir", "0.05"]
    result = CliRunner().invoke(evaluate_command, args)
    assert result.exit_code == 0, result.output
    text = CliRunner().invoke(evaluate_command, [*common, "--out", str(work / "text"), "--no-plots"])
    assert text.exit_code == 0, text.output
    return {"report": json.loads(result.stdout), "out": work / "report", "text": text.stdout, "chosen": chosen}


@pytest.mark.shared_data
def test_evaluate_writes_the_open_set_section(open_set_run: dict[str, Any]) -> None:
    report, out = open_set_run["report"], open_set_run["out"]
    sweep = report["identification"]["by_gallery_size"]
    settings = sweep["settings"]
    assert (settings["draws"], settings["target_fpir"], settings["enroll_images"], settings["rank"]) == (3, 0.05, 1, 1)
    assert settings["enrollable_identities"] == 10 and settings["not_enrolled_identities"] == 10
    assert [s["size"] for s in sweep["sizes"]] == [3, 6]
    assert "above the 10 enrollable identities were left out: 50" in sweep["notes"][0]
    labels = [k for k in open_set_run["chosen"] for _ in range(3)]
    _, held = split_identities(labels)
    with_face = report["images"]["with_face"]
    assert with_face == 60
    thr = report["threshold"]["value"]
    fmr = report["verification"]["at_threshold"]["fmr"]
    for size in sweep["sizes"]:
        assert size["non_mated_searches"] == 3 * len(held) == 30
        at = size["at_operating_threshold"]
        assert at["threshold"] == thr and at["non_mated_searches_pooled"] == 90
        assert at["predicted_fpir_dataset"] == pytest.approx(1 - (1 - fmr) ** size["size"], rel=1e-6)
        assert "predicted_fpir_card" in at  # the bundled card has a calibration
        point = size["target"]["measured"]
        assert point["fpir"] <= 0.05 and point["false_positives"] <= 4  # floor(0.05 x 90)
        assert size["target"]["confirmed"] is None  # 30 searches cannot show 5 %
    md = (out / "report.md").read_text()
    section = md[md.index("## Open-set identification by gallery size") :]
    assert "For a target FPIR of **0.05**" in section and "| 3 | 30 |" in section and "| 6 | 30 |" in section
    assert "![open_set_rates](openset_rates.png)" in md and "![open_set_det](openset_det.png)" in md
    for name in ("openset_rates.png", "openset_det.png"):
        assert (out / name).stat().st_size > 5000, name
    assert any("with 6 enrolled, the threshold must be at least" in line for line in report["summary"])
    assert "with 6 enrolled, the threshold must be at least" in open_set_run["text"]
