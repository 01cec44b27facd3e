"""The bundled bf16 SFace on OpenVINO: its card, agreement with the float SFace on real faces, several threads at
once, pickling, galleries that follow it, and the errors when OpenVINO or the CPU's bf16 units are missing.

Faces come from the evaluation half of the shared face set (its threshold was set on the other half). Speed is
measured in benchmarks/bench_embedding.py, not here.
"""

from __future__ import annotations

import itertools
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from faceledger import Engine
from faceledger.errors import ModelError
from faceledger.evaluate.cache import pipeline_id
from faceledger.evaluate.splits import is_calibration_identity
from faceledger.models import bundled_card, load_recognizer
from faceledger.models.cards import file_sha256
from faceledger.models.router import BUNDLED_RECOGNIZERS, recognizer_for_templates

NAME = "sface_2021dec_bf16"


def _cpu_has_bf16() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


HAS_BF16 = _cpu_has_bf16()
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 instructions (Intel AMX, AVX-512 BF16)")


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    if not HAS_BF16:
        pytest.skip("this CPU has no bf16 instructions (Intel AMX, AVX-512 BF16)")
    return {name: Engine(recognizer=name) for name in ("sface_2021dec", NAME)}


@pytest.fixture(scope="module")
def crops(engines: dict[str, Engine], manifest: list) -> np.ndarray:  # type: ignore[type-arg]
    """The largest face of every single-face photo of the evaluation half (up to 200)."""
    engine = engines["sface_2021dec"]
    out = []
    for row in manifest:
        if row.identity and not is_calibration_identity(row.identity) and row.n_faces in (1, -1):
            found = engine.align(row.path)
            if len(found):
                out.append(found[0])
        if len(out) == 200:
            break
    return np.stack(out)


def test_bf16_card_runs_the_float_file_on_openvino_with_its_own_calibration() -> None:
    card, fp32 = bundled_card(NAME), bundled_card("sface_2021dec")
    assert NAME in BUNDLED_RECOGNIZERS
    assert card.path == fp32.path and card.sha256 == fp32.sha256 == file_sha256(card.path)
    assert (card.runtime, card.precision) == ("openvino", "bf16")
    assert fp32.runtime == "onnxruntime"
    assert card.calibration is not None and card.calibration.impostor_pairs > 100_000
    assert card.calibration.threshold_for_fmr(1e-3) != fp32.calibration.threshold_for_fmr(1e-3)  # type: ignore[union-attr]


def test_the_bf16_recognizer_loads_on_a_cpu_with_bf16_and_is_refused_on_one_without() -> None:
    if HAS_BF16:
        recognizer = load_recognizer(NAME)
        assert type(recognizer.session).__name__ == "OpenVINOSession"
        assert recognizer.session.precision == "bf16" and recognizer.dim == 128
    else:
        with pytest.raises(ModelError, match="bf16 instructions"):
            load_recognizer(NAME)


def test_a_cpu_without_the_precision_is_refused_not_run_in_float(monkeypatch: pytest.MonkeyPatch) -> None:
    from faceledger.models import openvino_session

    monkeypatch.setitem(openvino_session._CAPABILITY, "bf16", "A_CAPABILITY_NO_CPU_HAS")
    with pytest.raises(ModelError, match=rf"{NAME} needs a CPU with bf16 instructions.*sface_2021dec_int8"):
        load_recognizer(NAME)


def test_without_openvino_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'faceledger\[openvino\]'"):
        Engine(recognizer=NAME)
    assert Engine().recognizer.card.name == "sface_2021dec_int8"  # the default needs no OpenVINO


@pytest.mark.shared_data
def test_bf16_embeddings_agree_with_float_on_real_faces(engines: dict[str, Engine], crops: np.ndarray) -> None:
    a = engines["sface_2021dec"].recognizer.embed(crops)
    b = engines[NAME].recognizer.embed(crops)
    assert len(crops) >= 100
    norms = np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    same_face = (a * b).sum(axis=1)
    # measured on all 784 labeled faces of the set: min 0.9998, mean 0.9999 (int8: 0.960, 0.986)
    assert same_face.min() > 0.999, same_face.min()
    iu = np.triu_indices(len(crops), 1)
    shift = np.abs((a @ a.T)[iu] - (b @ b.T)[iu])
    # measured on all 784 faces: mean 0.0013, max 0.0082
    assert shift.mean() < 0.003 and shift.max() < 0.02, (shift.mean(), shift.max())


@needs_bf16
def test_threads_share_one_bf16_session_with_the_results_of_one(engines: dict[str, Engine]) -> None:
    recognizer = engines[NAME].recognizer
    rng = np.random.default_rng(7)
    batches = [rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8) for n in (1, 3, 4, 5, 2, 7)]
    alone = [recognizer.embed(batch) for batch in batches]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(recognizer.embed, batches * 3))
    for i, vectors in enumerate(together):
        np.testing.assert_allclose(vectors, alone[i % len(batches)], atol=1e-6)


@needs_bf16
def test_a_bf16_engine_travels_as_its_recipe_and_has_its_own_cache_key(engines: dict[str, Engine]) -> None:
    copy = pickle.loads(pickle.dumps(engines[NAME]))
    assert copy.recognizer.card.name == NAME and copy.recognizer.card.runtime == "openvino"
    assert pipeline_id(copy) == pipeline_id(engines[NAME]) != pipeline_id(engines["sface_2021dec"])


def test_templates_made_with_bf16_lead_a_gallery_to_it() -> None:
    digest = bundled_card(NAME).sha256[:16]
    assert recognizer_for_templates([f"{NAME}:{digest}"]) == NAME
    assert recognizer_for_templates([f"sface_2021dec:{digest}"]) == "sface_2021dec"  # same file, other runtime
    assert recognizer_for_templates([f"{NAME}:{digest}", f"sface_2021dec:{digest}"]) is None


@pytest.mark.shared_data
def test_bf16_verification_on_people_outside_the_calibration(engines: dict[str, Engine], manifest: list) -> None:  # type: ignore[type-arg]
    by: dict[str, list[Path]] = {}
    for row in manifest:
        if row.identity and not is_calibration_identity(row.identity) and row.n_faces in (1, -1):
            by.setdefault(row.identity, []).append(row.path)
    people = sorted(k for k, v in by.items() if len(v) >= 2)[:6]
    engine = engines[NAME]
    for person in people:
        assert engine.verify(by[person][0], by[person][1]).match, person
    for one, other in itertools.pairwise(people):
        assert not engine.verify(by[one][0], by[other][0]).match, (one, other)
