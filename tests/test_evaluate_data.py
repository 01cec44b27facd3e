"""Dataset loaders, the embedding cache, TOML table writing, calibration tables and the pure runner."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from faceledger.evaluate import metrics as m
from faceledger.evaluate.cache import CachedFaces, EmbeddingCache, pipeline_id
from faceledger.evaluate.calibration import calibrate_pairs, card_table, policy_table
from faceledger.evaluate.datasets import Dataset, DatasetError, Sample, load_dataset
from faceledger.evaluate.runner import ImageOutcome, all_pair_scores, embed_dataset, evaluate_outcomes
from faceledger.evaluate.splits import is_calibration_identity, split_indices
from faceledger.evaluate.tomlfile import TomlEditError, render_table, replace_table
from faceledger.models.cards import Calibration

# --------------------------------------------------------------------------------------------- datasets


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_dataset(tmp_path: Path) -> None:
    touch(tmp_path / "bob" / "2.jpg")
    touch(tmp_path / "bob" / "1.png")
    touch(tmp_path / "alice" / "sub" / "a.JPG")
    touch(tmp_path / "alice" / "notes.txt")
    touch(tmp_path / "crowd.jpg")
    ds = load_dataset(tmp_path)
    assert ds.kind == "folder"
    assert [(s.path.relative_to(tmp_path).as_posix(), s.identity) for s in ds.samples] == [
        ("alice/sub/a.JPG", "alice"),
        ("bob/1.png", "bob"),
        ("bob/2.jpg", "bob"),
        ("crowd.jpg", ""),
    ]
    assert ds.identities == ["alice", "bob"]
    with pytest.raises(DatasetError, match="group"):
        load_dataset(tmp_path, group_column="group")


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nobody").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(tmp_path)


def test_manifest_dataset(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "path,identity,cohort,n_faces_expected\na/1.jpg,p1,x,1\na/2.jpg,p1,x,\ng.jpg,,,-1\nc.jpg,,y,0\n"
    )
    ds = load_dataset(tmp_path / "m.csv", group_column="cohort")
    assert ds.kind == "manifest" and ds.group_column == "cohort"
    assert ds.samples[0].path == tmp_path / "a/1.jpg"
    assert [s.identity for s in ds.samples] == ["p1", "p1", "", ""]
    assert [s.group for s in ds.samples] == ["x", "x", None, "y"]
    assert [s.n_faces_expected for s in ds.samples] == [1, None, None, 0]
    # a folder holding manifest.csv is read through it
    (tmp_path / "manifest.csv").write_text("path,identity,group\nz.jpg,q,g1\n")
    ds = load_dataset(tmp_path)
    assert ds.kind == "manifest" and ds.samples[0].group == "g1"


def test_manifest_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("file,person\nx.jpg,a\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: missing column 'path'"):
        load_dataset(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("path,identity,n_faces_expected\nx.jpg,a,many\n")
    with pytest.raises(DatasetError, match=r"bad2\.csv:2: n_faces_expected"):
        load_dataset(tmp_path / "bad2.csv")
    (tmp_path / "ok.csv").write_text("path,identity\nx.jpg,a\n")
    with pytest.raises(DatasetError, match="no column 'sex'"):
        load_dataset(tmp_path / "ok.csv", group_column="sex")


def test_lfw_pairs_file(tmp_path: Path) -> None:
    for name, n in (("Ann_A", 2), ("Bo_B", 1)):
        for i in range(1, n + 1):
            touch(tmp_path / "lfw" / name / f"{name}_{i:04d}.jpg")
    (tmp_path / "pairs.txt").write_text("1\t2\nAnn_A\t1\t2\nAnn_A\t1\tBo_B\t1\n")
    ds = load_dataset(tmp_path / "pairs.txt")
    assert ds.kind == "pairs"
    assert [s.path.relative_to(tmp_path).as_posix() for s in ds.samples] == [
        "lfw/Ann_A/Ann_A_0001.jpg",
        "lfw/Ann_A/Ann_A_0002.jpg",
        "lfw/Bo_B/Bo_B_0001.jpg",
    ]
    assert ds.pairs is not None
    assert [(p.a, p.b, p.same) for p in ds.pairs] == [(0, 1, True), (0, 2, False)]
    (tmp_path / "paths.txt").write_text("x/a.jpg y/b.jpg 1\nx/a.jpg z.png 0\n")
    ds = load_dataset(tmp_path / "paths.txt")
    assert ds.pairs is not None and [(p.a, p.b, p.same) for p in ds.pairs] == [(0, 1, True), (0, 2, False)]
    (tmp_path / "broken.txt").write_text("only two\n")
    with pytest.raises(DatasetError, match=r"broken\.txt:1"):
        load_dataset(tmp_path / "broken.txt")


def test_splits_partition_identities() -> None:
    ids = [f"person{i}" for i in range(50)] + ["", ""]
    cal = split_indices(ids, "calibration")
    ev = split_indices(ids, "evaluation")
    assert sorted(cal + ev) == list(range(len(ids)))
    assert all(is_calibration_identity(ids[i]) for i in cal)
    assert {50, 51} <= set(ev)


# --------------------------------------------------------------------------------------------- cache


def test_cache_round_trip_and_damage(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "p1")
    faces = CachedFaces(
        np.ones((2, 4), np.float32),
        np.array([0.9, 0.8], np.float32),
        np.array([1, 0.5], np.float32),
        np.eye(2, 128, dtype=np.float32),
    )
    assert cache.get("abc") is None
    cache.put("abc", faces)
    got = cache.get("abc")
    assert got is not None and np.array_equal(got.vectors, faces.vectors) and len(got) == 2
    assert EmbeddingCache(tmp_path, "p2").get("abc") is None  # other pipeline: miss
    (tmp_path / "abc-p1.npz").write_bytes(b"garbage")
    assert cache.get("abc") is None
    assert EmbeddingCache(None, "p1").get("abc") is None


def test_pipeline_id_depends_on_models_and_settings() -> None:
    def engine(rec: str, det: str, thr: float) -> Any:
        return SimpleNamespace(
            recognizer=SimpleNamespace(card=SimpleNamespace(sha256=rec), flip=False),
            detector=SimpleNamespace(card=SimpleNamespace(sha256=det)),
            score_threshold=thr,
            min_face_size=0,
            upscale_small=True,
            max_pixels=None,
        )

    base = pipeline_id(engine("r", "d", 0.6))
    assert base == pipeline_id(engine("r", "d", 0.6))
    assert base != pipeline_id(engine("r2", "d", 0.6))
    assert base != pipeline_id(engine("r", "d2", 0.6))
    assert base != pipeline_id(engine("r", "d", 0.5))


class FakeEngine:
    """Embeds an image as a fixed vector derived from its bytes; b'bad' raises like a corrupt file."""

    def __init__(self) -> None:
        self.calls = 0
        self.recognizer = SimpleNamespace(card=SimpleNamespace(sha256="fake", name="fake", dim=4), flip=False)
        self.detector = SimpleNamespace(card=SimpleNamespace(sha256="fake-det", name="fake-det"))

    def embed(self, data: bytes) -> Any:
        from faceledger.errors import ImageError

        self.calls += 1
        if data == b"bad":
            raise ImageError("<bytes>", "not an image")
        n = 0 if data == b"none" else 2 if data.startswith(b"two") else 1
        rng = np.random.default_rng(sum(data))
        vecs = rng.normal(size=(n, 4)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        boxes = np.array([[0, 0, 20, 20], [0, 0, 10, 10]][:n], np.float32).reshape(n, 4)
        return SimpleNamespace(detections=FakeDetections(boxes), vectors=vecs)


class FakeDetections:
    def __init__(self, boxes: np.ndarray) -> None:
        n = len(boxes)
        self.boxes, self.scores, self.quality = boxes, np.ones(n, np.float32), np.ones(n, np.float32)

    def __len__(self) -> int:
        return len(self.boxes)


def test_the_code_fingerprint_covers_every_module_a_still_image_goes_through() -> None:
    # a module whose code runs on a still image but that the fingerprint leaves out would let the cache serve faces
    # found by an older version of it (the rotation search once was such a module)
    import subprocess
    import sys

    from faceledger.evaluate.cache import _PIPELINE_MODULES

    script = (
        "import sys, cv2; from skimage import data; from faceledger import Engine\n"
        "image = cv2.rotate(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), cv2.ROTATE_90_CLOCKWISE)\n"
        "ran = set()\n"
        "sys.setprofile(lambda frame, event, arg: ran.add(frame.f_code.co_filename) if event == 'call' else None)\n"
        "faces = Engine().embed(image)\n"
        "sys.setprofile(None)\n"
        "assert len(faces) == 1\n"
        "print('\\n'.join(sorted(ran)))"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    package = Path(__import__("faceledger").__file__).parent
    code = sorted(Path(f).relative_to(package).as_posix() for f in ran if Path(f).is_relative_to(package))
    assert "vision/upright.py" in code and "vision/detection.py" in code
    # errors and settings decide no face; everything else that ran must be fingerprinted
    ignored = {"__init__.py", "errors.py", "config.py", "vision/__init__.py"}
    missing = [
        f for f in code if f not in ignored and not any(f == m or f.startswith(m + "/") for m in _PIPELINE_MODULES)
    ]
    assert missing == []


def test_embed_dataset_uses_cache_and_survives_bad_files(tmp_path: Path) -> None:
    files = {
        "a/1.jpg": b"one-a1",
        "a/2.jpg": b"one-a2",
        "b/1.jpg": b"twob",
        "bad.jpg": b"bad",
        "none.jpg": b"none",
    }
    for rel, data in files.items():
        touch(tmp_path / rel, data)
    samples = [Sample(tmp_path / rel, rel.split("/")[0] if "/" in rel else "") for rel in files]
    samples.append(Sample(tmp_path / "a/1.jpg", "a"))  # listed twice: embedded once
    samples.append(Sample(tmp_path / "missing.jpg", "c"))
    ds = Dataset("t", "manifest", tmp_path / "m.csv", samples)
    engine = FakeEngine()
    cache = EmbeddingCache(tmp_path / "cache", "pid")
    out = embed_dataset(ds, engine, cache, progress=False)
    assert engine.calls == 5
    assert [o.status for o in out] == ["ok", "ok", "ok", "unreadable", "no_face", "ok", "unreadable"]
    assert out[3].reason == "not an image" and "cannot read file" in (out[6].reason or "")
    assert out[2].n_faces == 2 and out[0].name == "a/1.jpg"
    assert np.array_equal(out[0].vector, out[5].vector)  # type: ignore[arg-type]
    again = embed_dataset(ds, engine, cache, progress=False)
    assert engine.calls == 6  # only the corrupt file is tried again; the rest come from the cache
    assert all(o.cached for o in again if o.status in ("ok", "no_face"))
    assert all(np.array_equal(a.vector, b.vector) for a, b in zip(out, again, strict=True) if a.vector is not None)


# --------------------------------------------------------------------------------------------- runner


def synthetic(n_ids: int = 12, per: int = 4, dim: int = 16, seed: int = 0) -> tuple[Dataset, list[ImageOutcome]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    samples, outcomes = [], []
    for i in range(n_ids):
        for j in range(per):
            v = centres[i] + 0.9 * rng.normal(size=dim)
            v = (v / np.linalg.norm(v)).astype(np.float32)
            idx = len(samples)
            samples.append(Sample(Path(f"/d/p{i}/{j}.jpg"), f"p{i}", group="g1" if i % 3 else "g2", n_faces_expected=1))
            outcomes.append(ImageOutcome(idx, f"p{i}/{j}.jpg", "ok", 1, v))
    samples.append(Sample(Path("/d/crowd.jpg"), "", n_faces_expected=3))
    outcomes.append(ImageOutcome(len(outcomes), "crowd.jpg", "ok", 2, np.eye(dim, dtype=np.float32)[0]))
    samples.append(Sample(Path("/d/p0/blank.jpg"), "p0", n_faces_expected=1))
    outcomes.append(ImageOutcome(len(outcomes), "p0/blank.jpg", "no_face", 0))
    return Dataset("syn", "manifest", Path("/d/m.csv"), samples), outcomes


def test_evaluate_outcomes_matches_direct_computation() -> None:
    ds, outcomes = synthetic()
    ev = evaluate_outcomes(ds, outcomes, threshold=0.5, threshold_source="test")
    rep = ev.report
    vec = np.stack([o.vector for o in outcomes[:48]])  # type: ignore[misc]
    ids = np.repeat(np.arange(12), 4)
    sim = vec @ vec.T
    iu = np.triu_indices(48, 1)
    same = ids[iu[0]] == ids[iu[1]]
    gen, imp = sim[iu][same], sim[iu][~same]
    ver = rep["verification"]
    assert ver["genuine_pairs"] == gen.size == 12 * 6 and ver["impostor_pairs"] == imp.size
    # AUC as the Mann-Whitney probability, computed independently
    auc = (np.sum(gen[:, None] > imp[None, :]) + 0.5 * np.sum(gen[:, None] == imp[None, :])) / (gen.size * imp.size)
    assert ver["auc"] == pytest.approx(auc, abs=1e-9)
    tar01 = next(e for e in ver["tar_at_fmr"] if e["fmr_target"] == 0.1)
    k = int(0.1 * imp.size)
    cut = np.sort(imp)[::-1][k]
    assert tar01["tar"] == pytest.approx(np.mean(gen > cut))
    assert ver["at_threshold"]["false_matches"] == int(np.sum(imp >= 0.5))
    # closed-set rank-1: first image of each identity enrolled
    gallery = vec[::4]
    probes = np.delete(vec, np.arange(0, 48, 4), axis=0)
    truth = np.delete(ids, np.arange(0, 48, 4))
    rank1 = np.mean(np.argmax(probes @ gallery.T, axis=1) == truth)
    assert rep["identification"]["closed_set"]["rank1"] == pytest.approx(rank1)
    assert rep["identification"]["closed_set"]["probes"] == 36
    det = rep["detection"]
    assert det["expected_faces"] == 48 + 3 + 1 and det["found"] == 48 + 2 and det["missed_faces"] == 2
    assert rep["failures"]["no_face"] == [{"image": "p0/blank.jpg", "identity": "p0"}]
    assert rep["demographics"]["groups"][0]["group"] == "g1"
    assert rep["threshold"] == {"value": 0.5, "source": "test", "target_fmr": 1e-3}


def test_evaluate_outcomes_without_threshold_uses_dataset() -> None:
    ds, outcomes = synthetic()
    rep = evaluate_outcomes(ds, outcomes, target_fmr=0.01).report
    assert "own impostor pairs" in rep["threshold"]["source"]
    assert rep["verification"]["at_threshold"]["fmr"] <= 0.01


def test_all_pair_scores_blocks_agree() -> None:
    rng = np.random.default_rng(2)
    v = rng.normal(size=(37, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = rng.integers(0, 6, 37)
    groups = rng.integers(-1, 2, 37).astype(np.int32)
    a = all_pair_scores(v, ids, groups, block=5)
    b = all_pair_scores(v, ids, groups, block=1000)
    assert np.allclose(np.sort(a.genuine), np.sort(b.genuine))
    assert a.impostor.size + a.genuine.size == 37 * 36 // 2
    assert a.impostor_groups is not None and a.impostor_groups.shape == (a.impostor.size, 2)


# --------------------------------------------------------------------------------------------- toml + cards


CARD = """# Model card
name = "m"
sha256 = "abc"

[input]
shape = ["N", 3, 112, 112]

# old calibration
[calibration]
thresholds = [0.1, 0.2]
fmr = [0.1, 0.01]

[published]
lfw_accuracy = 0.99  # keep me
"""


def test_replace_table_keeps_everything_else() -> None:
    values = {
        "thresholds": [0.1 + i / 1000 for i in range(40)],
        "fmr": [1.0 / (i + 1) for i in range(40)],
        "dataset": 'quotes " and \\ backslash',
        "n": 3,
        "ok": True,
    }
    new = replace_table(CARD, "calibration", render_table("calibration", values, "fresh"), "card.toml")
    data = tomllib.loads(new)
    assert data["calibration"] == values  # floats round-trip exactly
    assert data["input"] == {"shape": ["N", 3, 112, 112]} and data["published"] == {"lfw_accuracy": 0.99}
    assert "# keep me" in new and "# old calibration" not in new and "# fresh" in new
    appended = replace_table("a = 1\n", "calibration", render_table("calibration", {"x": 1.5}), "p")
    assert tomllib.loads(appended) == {"a": 1, "calibration": {"x": 1.5}}
    with pytest.raises(TomlEditError, match="not valid TOML"):
        replace_table("a = [", "calibration", render_table("calibration", {"x": 1}), "p.toml")


def test_card_table_is_read_back_by_the_card_loader() -> None:
    rng = np.random.default_rng(4)
    gen = rng.normal(0.6, 0.12, 2000).astype(np.float32)
    imp = rng.normal(0.05, 0.1, 60000).astype(np.float32)
    result = calibrate_pairs(gen, imp, 1e-3, dataset="syn", method="all pairs")
    table = card_table(result, 1e-3)
    text = render_table("calibration", table)
    loaded = Calibration.from_table(tomllib.loads(text)["calibration"], "card")
    for target in (1e-1, 1e-2, 1e-3, 1e-4):
        assert loaded.threshold_for_fmr(target) == pytest.approx(m.threshold_at_fmr(imp, target)[0], abs=0)
    assert loaded.threshold_for_fmr(1e-3) == result.calibration.threshold
    assert loaded.fmr_at(result.calibration.threshold) == pytest.approx(result.calibration.fmr)
    assert table["impostor_pairs"] == 60000 and table["genuine_pairs"] == 2000
    assert all(h >= f for h, f in zip(table["fmr_ci_high"], table["fmr"], strict=True))
    pol = policy_table(result)
    assert pol["threshold"] == result.calibration.threshold and pol["impostor_pairs"] == 60000
    assert pol["fmr_ci_low"] <= pol["fmr"] <= pol["fmr_ci_high"]


def test_pairs_dataset_evaluates_listed_pairs_only() -> None:
    from faceledger.evaluate.datasets import Pair

    ds, outcomes = synthetic()
    # same-person pairs (0,1), (4,5); different-person pairs (0,4), (1,8);
    # a pair with the no-face image is skipped
    blank = len(outcomes) - 1
    ds.pairs = [Pair(0, 1, True), Pair(4, 5, True), Pair(0, 4, False), Pair(1, 8, False)]
    ds.pairs.append(Pair(0, blank, True))
    ds.kind = "pairs"
    rep = evaluate_outcomes(ds, outcomes, threshold=0.3, threshold_source="test").report
    ver = rep["verification"]
    assert (ver["genuine_pairs"], ver["impostor_pairs"], ver["pairs_skipped"]) == (2, 2, 1)
    v = [o.vector for o in outcomes]
    gen = [float(v[0] @ v[1]), float(v[4] @ v[5])]  # type: ignore[operator]
    imp = [float(v[0] @ v[4]), float(v[1] @ v[8])]  # type: ignore[operator]
    assert ver["auc"] == pytest.approx(np.mean([[g > i for i in imp] for g in gen]))
    assert rep["identification"]["closed_set"] is None
    assert all(not e["supported"] for e in ver["tar_at_fmr"])  # 2 impostor pairs support nothing
