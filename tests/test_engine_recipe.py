"""An engine travels to another process as its recipe (models are built again there), for batch workers."""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from faceledger import Engine, ModelError
from faceledger.models.router import bundled_card

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "faceledger" / "examples" / "astronaut.jpg"


def _embed_in_worker(engine: Engine, image: str) -> np.ndarray:
    return engine.embed(image).vectors


def test_a_pickled_engine_keeps_its_models_and_options() -> None:
    engine = Engine(recognizer="sface_2021dec", score_threshold=0.7, tile=False, upright="off", flip=True)
    copy = pickle.loads(pickle.dumps(engine))
    assert copy is not engine
    assert copy.recognizer.card.name == engine.recognizer.card.name == "sface_2021dec"
    assert (copy.score_threshold, copy.tile, copy.upright, copy.recognizer.flip) == (0.7, False, "off", True)
    assert np.array_equal(copy.embed(EXAMPLE).vectors, engine.embed(EXAMPLE).vectors)


def test_an_engine_built_in_a_fresh_process_gives_the_same_embeddings() -> None:
    engine = Engine()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = pool.submit(_embed_in_worker, engine, str(EXAMPLE)).result(timeout=120)
    assert remote.shape == (1, 128)
    assert np.array_equal(remote, engine.embed(EXAMPLE).vectors)


def test_a_model_file_changed_under_the_recipe_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "recognizer.onnx"
    shutil.copyfile(bundled_card("sface_2021dec").path, model)
    data = pickle.dumps(Engine(recognizer=model))
    assert pickle.loads(data).recognizer is not None  # the same file: built again
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="another file than the one the engine was described with"):
        pickle.loads(data)
    model.unlink()
    with pytest.raises(ModelError, match="model file not found in this process"):
        pickle.loads(data)


def test_a_model_given_by_a_relative_path_is_found_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    shutil.copyfile(bundled_card("sface_2021dec").path, tmp_path / "models" / "mine.onnx")
    monkeypatch.chdir(tmp_path)
    engine = Engine(recognizer="models/mine.onnx")
    assert engine.recipe.recognizer == str(tmp_path / "models" / "mine.onnx")
    assert Engine(recognizer="sface_2021dec").recipe.recognizer == "sface_2021dec"  # a bundled name stays a name
    monkeypatch.chdir(tmp_path / "models")  # where "models/mine.onnx" does not exist
    copy = pickle.loads(pickle.dumps(engine))
    assert np.array_equal(copy.embed(EXAMPLE).vectors, engine.embed(EXAMPLE).vectors)
