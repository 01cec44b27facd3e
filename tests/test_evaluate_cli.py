"""End to end: `faceledger evaluate` and `faceledger calibrate` on real photos from the shared face set.

The figures in report.json are checked against an independent numpy computation from embeddings made directly
with the Engine (not through the evaluation cache or runner).
"""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner

from faceledger.evaluate.splits import is_calibration_identity
from faceledger.interfaces.cli.evaluate import register

pytestmark = pytest.mark.shared_data


def cli() -> click.Group:
    try:
        from faceledger.interfaces.cli import main
    except ImportError:
        main = None
    if isinstance(main, click.Group) and "evaluate" in main.commands:
        return main
    group = click.Group("faceledger")
    register(group)
    return group


@pytest.fixture(scope="module")
def subset(manifest: list[Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """10 identities x 3 photos from the evaluation half, a group label per identity, and one corrupt file."""
    by_id: dict[str, list[Any]] = {}
    for row in manifest:
        if row.identity and not is_calibration_identity(row.identity):
            by_id.setdefault(row.identity, []).append(row)
    eligible = sorted(k for k, rows in by_id.items() if len(rows) >= 3)
    chosen = [eligible[int(i)] for i in np.linspace(0, len(eligible) - 1, 10)]
    work = tmp_path_factory.mktemp("evalset")
    corrupt = work / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rows = [(str(r.path), k, "A" if i % 2 else "B") for i, k in enumerate(chosen) for r in by_id[k][:3]]
    csv_path = work / "manifest.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "cohort"])
        writer.writerows(rows)
        writer.writerow([str(corrupt), "someone", "A"])
    return {"csv": csv_path, "rows": rows, "cache": work / "cache", "work": work, "corrupt": corrupt}


@pytest.fixture(scope="module")
def direct_embeddings(subset: dict[str, Any]) -> np.ndarray:
    from faceledger import Engine

    engine = Engine()
    vectors = []
    for path, _, _ in subset["rows"]:
        emb = engine.embed(path)
        assert len(emb) >= 1, f"{path}: expected a face"
        vectors.append(emb.vectors[0])  # faces come largest first
    return np.stack(vectors).astype(np.float64)


@pytest.fixture(scope="module")
def evaluated(subset: dict[str, Any]) -> dict[str, Any]:
    out = subset["work"] / "report"
    result = CliRunner().invoke(
        cli(),
        [
            "evaluate",
            str(subset["csv"]),
            "--out",
            str(out),
            "--json",
            "--group-column",
            "cohort",
            "--cache-dir",
            str(subset["cache"]),
            "--quiet",
        ],
    )
    return {"result": result, "out": out}


def test_evaluate_reports_failures_and_writes_outputs(subset: dict[str, Any], evaluated: dict[str, Any]) -> None:
    result, out = evaluated["result"], evaluated["out"]
    assert result.exit_code == 1, result.output  # one unreadable image: named, the rest evaluated
    assert "corrupt.jpg" in result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report == json.loads((out / "report.json").read_text()) | {"outputs": report["outputs"]}
    assert [f["image"].endswith("corrupt.jpg") for f in report["failures"]["unreadable"]] == [True]
    for name in ("report.md", "roc.png", "scores.png", "groups.png"):
        assert (out / name).stat().st_size > 1000, name
    md = (out / "report.md").read_text()
    assert md.index("## In short") < md.index("![roc](roc.png)") < md.index("## Verification")
    assert "comparisons of different people" in md
    assert report["model"]["recognizer"] == "sface_2021dec_int8"  # the default


def test_evaluate_figures_match_independent_computation(
    evaluated: dict[str, Any], direct_embeddings: np.ndarray, subset: dict[str, Any]
) -> None:
    report = json.loads((evaluated["out"] / "report.json").read_text())
    ids = np.array([k for _, k, _ in subset["rows"]])
    sim = direct_embeddings @ direct_embeddings.T
    iu = np.triu_indices(len(ids), 1)
    same = ids[iu[0]] == ids[iu[1]]
    gen, imp = sim[iu][same], sim[iu][~same]
    ver = report["verification"]
    assert (ver["genuine_pairs"], ver["impostor_pairs"]) == (gen.size, imp.size) == (30, 405)
    # AUC as P(genuine > impostor) + 0.5 P(tie), from all genuine x impostor combinations
    diff = gen[:, None] - imp[None, :]
    auc = np.mean(diff > 1e-6) + 0.5 * np.mean(np.abs(diff) <= 1e-6)
    assert ver["auc"] == pytest.approx(auc, abs=1e-4)
    # TAR at FMR 0.1: accept at most floor(0.1 * 405) = 40 impostors
    entry = next(e for e in ver["tar_at_fmr"] if e["fmr_target"] == 0.1)
    cut = np.sort(imp)[::-1][40]
    assert entry["supported"] and entry["tar"] == pytest.approx(np.mean(gen > cut + 1e-6), abs=1 / 30 + 1e-9)
    assert not next(e for e in ver["tar_at_fmr"] if e["fmr_target"] == 0.01)["supported"]
    # the operating threshold comes from the model card; its error counts agree with a direct count
    thr = report["threshold"]["value"]
    at = ver["at_threshold"]
    assert abs(at["false_matches"] - int(np.sum(imp >= thr))) <= 1
    assert abs(at["false_non_matches"] - int(np.sum(gen < thr))) <= 1
    # closed-set rank-1 with the first photo of each person enrolled
    first = np.array([i % 3 == 0 for i in range(len(ids))])
    scores = direct_embeddings[~first] @ direct_embeddings[first].T
    rank1 = np.mean(ids[first][np.argmax(scores, axis=1)] == ids[~first])
    closed = report["identification"]["closed_set"]
    assert closed["probes"] == 20 and closed["gallery"] == 10
    assert closed["rank1"] == pytest.approx(rank1)
    assert closed["rank1"] >= 0.8  # evaluation-half identities; SFace separates most of them
    # groups: per-group FMR counts impostor pairs within the group
    g = np.array([c for _, _, c in subset["rows"]])
    in_a = (g[iu[0]] == "A") & (g[iu[1]] == "A") & ~same
    group_a = next(x for x in report["demographics"]["groups"] if x["group"] == "A")
    assert group_a["impostor_pairs"] == int(in_a.sum())
    assert abs(group_a["false_matches"] - int(np.sum(sim[iu][in_a] >= thr))) <= 1


def test_second_run_uses_cache(subset: dict[str, Any], evaluated: dict[str, Any]) -> None:
    out = subset["work"] / "report2"
    result = CliRunner().invoke(
        cli(),
        [
            "evaluate",
            str(subset["csv"]),
            "--out",
            str(out),
            "--cache-dir",
            str(subset["cache"]),
            "--quiet",
            "--no-plots",
        ],
    )
    assert result.exit_code == 1
    report = json.loads((out / "report.json").read_text())
    assert report["images"]["from_cache"] == 30
    first = json.loads((evaluated["out"] / "report.json").read_text())
    assert report["verification"]["auc"] == first["verification"]["auc"]
    assert "comparisons of different people" in result.stdout


def test_calibrate_writes_card(
    subset: dict[str, Any], evaluated: dict[str, Any], direct_embeddings: np.ndarray
) -> None:
    from faceledger.models.cards import Calibration

    card = subset["work"] / "model.toml"
    result = CliRunner().invoke(
        cli(),
        [
            "calibrate",
            str(subset["csv"]),
            "--target-fmr",
            "0.05",
            "--card",
            str(card),
            "--json",
            "--cache-dir",
            str(subset["cache"]),
            "--quiet",
        ],
    )
    assert result.exit_code == 1, result.output  # the corrupt file is still named
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["impostor_pairs"] == 405 and out["false_matches"] <= 20
    assert out["fmr_ci"][0] <= out["fmr"] <= out["fmr_ci"][1]
    ids = np.array([k for _, k, _ in subset["rows"]])
    sim = direct_embeddings @ direct_embeddings.T
    iu = np.triu_indices(len(ids), 1)
    imp = sim[iu][ids[iu[0]] != ids[iu[1]]]
    assert np.sort(imp)[::-1][20] < out["threshold"] + 1e-6  # the 21st highest impostor is rejected
    data = tomllib.loads(card.read_text())
    assert data["kind"] == "recognizer" and data["name"] == "sface_2021dec_int8"  # the default's card, copied
    loaded = Calibration.from_table(data["calibration"], str(card))
    assert loaded.threshold_for_fmr(0.05) == out["threshold"]
    assert data["calibration"]["default_fmr"] == 0.05


def test_calibrate_policy_and_card_together(subset: dict[str, Any], evaluated: dict[str, Any]) -> None:
    policy_mod = pytest.importorskip("faceledger.ledger.policy")
    policy = subset["work"] / "policy.toml"
    policy.write_text(policy_mod.EXAMPLE_POLICY)
    card = subset["work"] / "card2.toml"
    result = CliRunner().invoke(
        cli(),
        [
            "calibrate",
            str(subset["csv"]),
            "--target-fmr",
            "0.05",
            "--policy",
            str(policy),
            "--card",
            str(card),
            "--cache-dir",
            str(subset["cache"]),
            "--quiet",
            "--json",
        ],
    )
    assert result.exit_code == 1  # the corrupt image
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["written"] == [str(card), str(policy)]
    text = policy.read_text()
    assert tomllib.loads(text)["identification"]["target_fmr"] == 0.05
    policy_mod.parse_policy(text, str(policy))
    # only that value changed: every comment of the example is still there
    assert text.replace("target_fmr = 0.05", "target_fmr = 1e-3") == policy_mod.EXAMPLE_POLICY
    assert "policy set" in result.stderr
    # a target the policy schema refuses leaves the file untouched
    result = CliRunner().invoke(
        cli(),
        [
            "calibrate",
            str(subset["csv"]),
            "--target-fmr",
            "0.2",
            "--policy",
            str(policy),
            "--cache-dir",
            str(subset["cache"]),
            "--quiet",
        ],
    )
    assert result.exit_code == 1 and "not changed" in result.stderr
    assert policy.read_text() == text


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,who\n")
    result = CliRunner().invoke(cli(), ["evaluate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "missing column 'path'" in result.output
    result = CliRunner().invoke(cli(), ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "--out" in result.output
    result = CliRunner().invoke(cli(), ["calibrate", "--help"])
    assert result.exit_code == 0 and "--target-fmr" in result.output


def test_no_progress_bar_in_a_redirected_log(subset: dict[str, Any], evaluated: dict[str, Any]) -> None:
    import subprocess
    import sys

    log = subset["work"] / "evaluate.log"
    command = [sys.executable, "-m", "faceledger.interfaces.cli", "evaluate", str(subset["csv"])]
    command += ["--out", str(subset["work"] / "logged"), "--no-plots", "--cache-dir", str(subset["cache"])]
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=handle, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 1, "the corrupt image"
    text = log.read_text()
    assert "embedding" not in text and "img/s" not in text and "\r" not in text, f"a bar in the log: {text!r}"
    assert next(line for line in text.splitlines() if "corrupt.jpg" in line).startswith("faceledger: ")


def test_no_embedding_is_kept_unless_the_cache_is_asked_for(subset: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(home), "FACELEDGER_CACHE": ""}
    base = ["evaluate", str(subset["csv"]), "--quiet", "--no-plots"]
    plain = CliRunner().invoke(cli(), [*base, "--out", str(tmp_path / "a")], env=env)
    assert plain.exit_code == 1 and json.loads((tmp_path / "a" / "report.json").read_text())["images"]
    assert not (home / "faceledger").exists(), "an evaluation without --cache stored embeddings"
    cached = CliRunner().invoke(cli(), [*base, "--out", str(tmp_path / "b"), "--cache"], env=env)
    assert cached.exit_code == 1 and list((home / "faceledger" / "embeddings").glob("*.npz"))
