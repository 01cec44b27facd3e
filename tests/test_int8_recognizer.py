"""The bundled int8 SFace: provenance, agreement with the float SFace on real faces, choosing the float one, and
galleries enrolled with the float one before the default changed.

Faces come from the evaluation half of the shared face set (the int8 file is calibrated, and its threshold set, on
the other half). Speed is measured in benchmarks/bench_embedding.py, not here.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import card_threshold, load_script
from faceledger import Engine
from faceledger.errors import ModelError
from faceledger.evaluate.cache import pipeline_id
from faceledger.evaluate.splits import is_calibration_identity
from faceledger.gallery import Gallery
from faceledger.ledger import MASTER_KEY_ENV
from faceledger.models import bundled_card, make_session
from faceledger.models.cards import file_sha256
from faceledger.models.router import (
    BUNDLED_RECOGNIZERS,
    DEFAULT_RECOGNIZER,
    prepare_for_cpu,
    quantized_activations,
    recognizer_for_templates,
)

ROOT = Path(__file__).resolve().parents[1]
PURPOSE = "access-control"
PEOPLE = ["dlib:John_Salley", "face_api_js:amy", "face_api_js:sheldon", "orl:s12", "yale:subject01"]


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    # the onnxruntime ones (the bf16 one, on OpenVINO, has its own tests: tests/test_bf16_recognizer.py)
    names = [name for name in BUNDLED_RECOGNIZERS if bundled_card(name).runtime == "onnxruntime"]
    return {name: Engine(recognizer=name) for name in names}


@pytest.fixture(scope="module")
def photos(manifest: list) -> dict[str, list[Path]]:  # type: ignore[type-arg]
    by: dict[str, list[Path]] = collections.defaultdict(list)
    for row in manifest:
        if row.identity and not is_calibration_identity(row.identity) and row.n_faces in (1, -1):
            by[row.identity].append(row.path)
    return {k: sorted(v) for k, v in by.items()}


@pytest.fixture(scope="module")
def crops(engines: dict[str, Engine], photos: dict[str, list[Path]]) -> np.ndarray:
    """The largest face of up to 4 photos of every evaluation identity with two or more photos."""
    engine = engines["sface_2021dec"]
    out = []
    for identity in sorted(photos):
        for path in photos[identity][:4]:
            found = engine.align(path)
            if len(found):
                out.append(found[0])
    return np.stack(out)


def test_int8_card_matches_its_file_and_names_how_it_was_made() -> None:
    card = bundled_card("sface_2021dec_int8")
    assert file_sha256(card.path) == card.sha256
    assert card.license == "Apache-2.0" and card.dim == 128
    assert "scripts/quantize_sface.py" in card.source
    assert file_sha256(bundled_card("sface_2021dec").path) in card.source  # made from the bundled float file
    assert card.calibration is not None and card.calibration.impostor_pairs > 100_000
    model = onnx.load(str(card.path))
    ops = collections.Counter(node.op_type for node in model.graph.node)
    assert ops["DequantizeLinear"] <= 3, ops  # activations stay uint8 between layers
    # SFace's 27 convolutions, and the 27 PRelus' per-channel multiplications as 1x1 depthwise convolutions; the one
    # QLinearMul left is the input scaling (a scalar)
    depthwise = [
        node for node in model.graph.node
        if node.op_type == "QLinearConv" and [a.ints for a in node.attribute if a.name == "kernel_shape"] == [[1, 1]]
        and any(a.name == "group" and a.i > 1 for a in node.attribute)
    ]  # fmt: skip
    assert ops["QLinearConv"] == 54 and len(depthwise) == 27 and ops["QLinearMul"] == 1, ops
    assert quantized_activations(model)
    assert prepare_for_cpu(card.path.read_bytes()) == card.path.read_bytes()  # its int8 weights are not dequantized


def test_default_recognizer_is_int8_and_float_is_chosen_by_name(engines: dict[str, Engine]) -> None:
    assert DEFAULT_RECOGNIZER == "sface_2021dec_int8"
    assert Engine().recognizer.card.name == "sface_2021dec_int8"
    assert engines["sface_2021dec"].recognizer.card.name == "sface_2021dec"
    # each has its own threshold table, its card's
    for name in ("sface_2021dec", "sface_2021dec_int8"):
        assert engines[name].threshold_for_fmr(1e-3) == card_threshold(name)
    assert engines["sface_2021dec_int8"].threshold_for_fmr(1e-3) != engines["sface_2021dec"].threshold_for_fmr(1e-3)


def test_evaluation_cache_keys_differ_by_recognizer_and_upright(engines: dict[str, Engine]) -> None:
    ids = {pipeline_id(engine) for engine in engines.values()}
    assert len(ids) == 2
    float_engine = engines["sface_2021dec"]
    upright = float_engine.upright
    try:
        float_engine.upright = "off"
        assert pipeline_id(float_engine) not in ids
    finally:
        float_engine.upright = upright


@pytest.mark.shared_data
def test_int8_embeddings_agree_with_float_on_real_faces(engines: dict[str, Engine], crops: np.ndarray) -> None:
    a = engines["sface_2021dec"].recognizer.embed(crops)
    b = engines["sface_2021dec_int8"].recognizer.embed(crops)
    assert len(crops) >= 100
    same_face = (a * b).sum(axis=1)
    # measured on all 784 labeled faces of the set: min 0.960, mean 0.986
    assert same_face.min() > 0.94, same_face.min()
    assert same_face.mean() > 0.98, same_face.mean()
    iu = np.triu_indices(len(crops), 1)
    shift = np.abs((a @ a.T)[iu] - (b @ b.T)[iu])
    # measured on all 784 faces: mean 0.017, max 0.110
    assert shift.mean() < 0.025 and shift.max() < 0.15, (shift.mean(), shift.max())


@pytest.mark.shared_data
def test_int8_verification_decisions_on_known_pairs(engines: dict[str, Engine], photos: dict[str, list[Path]]) -> None:
    engine = engines["sface_2021dec_int8"]
    for identity in PEOPLE:
        first, second = photos[identity][:2]
        result = engine.verify(first, second)
        assert result.match, (identity, result.to_dict())
    for one, other in itertools.pairwise(PEOPLE):
        result = engine.verify(photos[one][0], photos[other][0])
        assert not result.match, (one, other, result.to_dict())


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where a test's gallery goes, with no master key in the environment (the gallery makes its key file)."""
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    return tmp_path / "g.db"


def _enrolled(db: Path, engine: Engine, people: list[str], photos: dict[str, list[Path]]) -> str:
    """A new gallery at ``db`` with two photos of each of ``people`` enrolled by ``engine``; its model id."""
    with Gallery.init(db, actor="admin", engine=engine) as g:
        for identity in people:
            subject = identity.replace(":", ".")
            g.add_consent(
                subject, actor="desk", collected_by="front desk", legal_basis="explicit consent", purpose=PURPOSE,
                evidence_ref=f"form-{subject}",
            )  # fmt: skip
            assert len(g.enroll(subject, photos[identity][:2], actor="desk", purpose=PURPOSE).enrolled) == 2
        return g.model_id()


@pytest.mark.shared_data
def test_a_gallery_enrolled_with_the_float_model_keeps_it_under_the_new_default(
    db: Path, engines: dict[str, Engine], photos: dict[str, list[Path]]
) -> None:
    float_id = _enrolled(db, engines["sface_2021dec"], PEOPLE, photos)
    assert float_id.startswith("sface_2021dec:")
    with Gallery.open(db) as g:  # defaults: the engine follows the templates
        assert g.model_id() == float_id
        for identity in PEOPLE:
            result = g.identify(photos[identity][2], actor="door", purpose=PURPOSE)
            assert result.faces[0].candidates, identity
            assert result.faces[0].candidates[0].subject == identity.replace(":", ".")
    from faceledger.interfaces.api.runtime import ServiceState
    from faceledger.interfaces.api.settings import ServiceSettings

    service = ServiceState.open(ServiceSettings(db=db, purge_interval=0))  # the service makes its engine itself
    try:
        assert service.gallery.model_id() == float_id
        found = service.gallery.identify(photos[PEOPLE[1]][2], actor="door", purpose=PURPOSE)
        assert found.faces[0].candidates[0].subject == PEOPLE[1].replace(":", ".")
    finally:
        service.gallery.close()
    message = r"made with recognizer sface_2021dec:\w+ but this engine runs sface_2021dec_int8"
    refused = pytest.raises(ModelError, match=message)
    with Gallery.open(db, engine=engines["sface_2021dec_int8"]) as g, refused:  # an explicit other one is refused
        g.identify(photos[PEOPLE[0]][2], actor="door", purpose=PURPOSE)


@pytest.mark.shared_data
def test_a_gallery_enrolled_with_an_earlier_build_of_the_int8_file_is_searched_by_this_one(
    db: Path, engines: dict[str, Engine], photos: dict[str, list[Path]]
) -> None:
    import sqlite3

    people = PEOPLE[:2]
    _enrolled(db, engines["sface_2021dec_int8"], people, photos)
    earlier = f"sface_2021dec_int8:{bundled_card('sface_2021dec_int8').same_embeddings_as[0][:16]}"
    with sqlite3.connect(db) as con:  # as a gallery enrolled before this build records its templates
        con.execute("UPDATE templates SET model = ?", (earlier,))
    with Gallery.open(db) as g:
        assert g.model_id() != earlier  # new templates are recorded under this file's id
        for identity in people:
            result = g.identify(photos[identity][2], actor="door", purpose=PURPOSE)
            assert result.faces[0].candidates[0].subject == identity.replace(":", ".")
    with sqlite3.connect(db) as con:  # a file of that name the card does not vouch for is still refused
        con.execute("UPDATE templates SET model = 'sface_2021dec_int8:0000000000000000'")
    refused = pytest.raises(ModelError, match="made with recognizer sface_2021dec_int8:0000000000000000")
    with Gallery.open(db, engine=engines["sface_2021dec_int8"]) as g, refused:
        g.identify(photos[people[0]][2], actor="door", purpose=PURPOSE)


def test_recognizer_for_templates_names_only_one_bundled_model() -> None:
    float_id = f"sface_2021dec:{bundled_card('sface_2021dec').sha256[:16]}"
    int8_id = f"sface_2021dec_int8:{bundled_card('sface_2021dec_int8').sha256[:16]}"
    assert recognizer_for_templates([float_id, float_id]) == "sface_2021dec"
    assert recognizer_for_templates([int8_id]) == "sface_2021dec_int8"
    assert recognizer_for_templates([]) is None
    assert recognizer_for_templates([float_id, int8_id]) is None
    assert recognizer_for_templates(["sface_2021dec:0000000000000000"]) is None  # another file of that name
    assert recognizer_for_templates(["w600k_r50:1234"]) is None
    earlier = [f"sface_2021dec_int8:{sha[:16]}" for sha in bundled_card("sface_2021dec_int8").same_embeddings_as]
    assert earlier and int8_id not in earlier
    assert recognizer_for_templates(earlier) == "sface_2021dec_int8"  # an earlier build with the same embeddings
    assert recognizer_for_templates([*earlier, int8_id]) == "sface_2021dec_int8"
    assert recognizer_for_templates([*earlier, float_id]) is None


@pytest.mark.shared_data
def test_the_int8_files_calibration_faces_are_a_record_of_the_calibration_half(
    tmp_path: Path, faces_dir: Path, manifest: list  # type: ignore[type-arg]
) -> None:
    # the quantizer aligns its calibration faces from this record, not from what the detector finds today, so a
    # change to the detector leaves the int8 file (and every template made with it) as it is
    script = load_script(ROOT / "scripts" / "quantize_sface.py")
    found = script.read_landmarks(script.LANDMARKS)
    identity = {row.path.relative_to(faces_dir).as_posix(): row.identity for row in manifest}
    assert len(found) == 200 and len({name for name, _ in found}) == 200
    assert all(identity[name] and is_calibration_identity(identity[name]) for name, _ in found)
    copy = tmp_path / "again.csv"
    script.write_landmarks(copy, found)  # written so that it reads back as the same float32 values
    assert copy.read_bytes() == script.LANDMARKS.read_bytes()
    again = script.read_landmarks(copy)
    assert all(np.array_equal(a[1], b[1]) and a[1].dtype == np.float32 for a, b in zip(found, again, strict=True))
    crops = script.calibration_crops(faces_dir, found[:3])
    assert crops.shape == (3, 112, 112, 3) and crops.dtype == np.uint8


@pytest.mark.shared_data
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime.quantization") is None, reason="needs the quantizer")
def test_quantize_script_reproduces_the_bundled_int8_file_and_its_earlier_build(
    tmp_path: Path, faces_dir: Path, crops: np.ndarray
) -> None:
    quantize_sface = load_script(ROOT / "scripts" / "quantize_sface.py")
    card = bundled_card("sface_2021dec_int8")
    earlier = tmp_path / "earlier.onnx"  # the build before the depthwise rewrite: the one the card names
    assert quantize_sface.main(["--faces", str(faces_dir), "--out", str(earlier), "--no-depthwise-mul"]) == 0
    assert file_sha256(earlier) == card.same_embeddings_as[0]
    model = onnx.load(str(earlier))
    assert quantize_sface.depthwise_mul(model) == 27
    assert hashlib.sha256(model.SerializeToString()).hexdigest() == card.sha256  # the script's default, one step on
    # the card's claim, on this machine's kernels: the two builds give the same embeddings of real faces at the batch
    # sizes faceledger runs (bit-identical on the AVX2 machine it was measured on; another CPU's int8 kernels may
    # round a product differently, so the test asks for a cosine of 0.9999, not equality)
    x = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    sessions = [make_session(earlier, 1), make_session(card.path, 1)]
    for batch in (1, 8):
        a, b = (np.concatenate([s.run(None, {"data": x[i : i + batch]})[0] for i in range(0, len(x), batch)])
                for s in sessions)  # fmt: skip
        a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
        assert (a * b).sum(axis=1).min() > 0.9999, (batch, float(np.abs(a - b).max()))
