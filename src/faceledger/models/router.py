"""Load ONNX models and route each file to its wrapper by the shape of its inputs and outputs.

Like InsightFace's model zoo, the file is the source of truth: a recognizer is anything with one image input
``(N or 1, 3, 112, 112)`` and one output ``(N or 1, D)``; a detector is anything with YuNet's input ``(1, 3, H, W)`` and
its twelve outputs ``cls_8 .. kps_32``. No code path is tied to a file name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from faceledger.errors import ModelError
from faceledger.models.cards import ModelCard, bundled_card
from faceledger.vision.detection import STRIDES, YuNetDetector
from faceledger.vision.embedding import ArcFaceRecognizer

RUNTIMES = ("onnxruntime", "openvino")
DEFAULT_DETECTOR = "yunet_2023mar"
DEFAULT_RECOGNIZER = "sface_2021dec_int8"
BUNDLED_RECOGNIZERS = ("sface_2021dec_int8", "sface_2021dec", "sface_2021dec_bf16")
"""Bundled recognizers, loadable by name: ``Engine(recognizer="sface_2021dec")`` (int8 weights, float32
computation: bit-stable with earlier releases), ``"sface_2021dec_int8"`` (int8 computation, about twice as fast on
one thread; its own calibration) or ``"sface_2021dec_bf16"`` (the float32 graph run by OpenVINO in bfloat16 on CPUs
with bf16 matrix units, about twice as fast again; needs ``faceledger[openvino]``; its own calibration). A file of
that name in the working directory takes precedence."""


def default_threads() -> int:
    """Threads per onnxruntime session: ``FACELEDGER_THREADS``, else 1.

    One thread per session is the measured best on faces of 112x112 and images of a few hundred pixels: two threads
    splitting one face's convolutions took 45.5 ms per image of the shared face set against 43.6 ms with one, for twice
    the CPU time (benchmarks/README.md). Use the cores on different images instead (:meth:`Engine.map`, the CLI,
    the service's workers); raise it for a few very large images.
    """
    env = os.environ.get("FACELEDGER_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError as exc:
            raise ModelError(f"FACELEDGER_THREADS must be a positive integer, got {env!r}") from exc
        if value < 1:
            raise ModelError(f"FACELEDGER_THREADS must be a positive integer, got {env!r}")
        return value
    return 1


def _plain_options(threads: int = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return options


def _fold_dequantization(model: Any) -> int:
    """Replace weights stored quantized (``DequantizeLinear``/``Reshape`` on constants) by float32 initializers.

    onnxruntime keeps such nodes on purpose (for quantized kernels), so an int8 weight-only model dequantizes all
    its weights on every run. The float weights are computed once, by onnxruntime itself (so the semantics are its
    own). Activations were float already, so outputs are unchanged. Returns the number of nodes removed.
    """
    import onnx
    from onnx import helper, numpy_helper

    constant = {init.name for init in model.graph.initializer}
    folded = []
    for node in model.graph.node:
        if node.op_type in {"DequantizeLinear", "Reshape"} and all(name in constant for name in node.input if name):
            constant.update(node.output)
            folded.append(node)
    if not any(node.op_type == "DequantizeLinear" for node in folded):
        return 0
    outputs = [name for node in folded for name in node.output]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in outputs)
    options = _plain_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {
        i.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape], np.float32)
        for i in session.get_inputs()
    }
    values = dict(zip(outputs, session.run(outputs, feed), strict=True))
    folded_ids = {id(node) for node in folded}
    keep = [node for node in model.graph.node if id(node) not in folded_ids]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {name for node in keep for name in node.input}
    initializers = [init for init in model.graph.initializer if init.name in used]
    initializers += [numpy_helper.from_array(values[name], name) for name in outputs if name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    return len(folded)


def _rewrite_prelu(model: Any) -> int:
    """Write ``PRelu(x, slope)`` with a constant slope as ``x + (slope - 1) * Min(x, 0)``.

    For x >= 0 that is x; for x < 0 it is slope * x. onnxruntime's PRelu broadcasts a per-channel slope through its
    generic path and forces layout conversions around it: it took half of SFace's time. Min, Mul and Add run on fast
    paths: SFace goes from 36.5 to 23.1 ms of CPU per face (one thread), embeddings equal within 2e-6 (rounding of
    the extra multiply-add; ``tests/test_models.py`` compares). Returns the number of nodes rewritten.
    """
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    nodes = []
    rewritten = 0
    zero = "faceledger__zero"
    for node in model.graph.node:
        if node.op_type != "PRelu" or node.input[1] not in initializers:
            nodes.append(node)
            continue
        x, slope = node.input
        y = node.output[0]
        shifted = numpy_helper.to_array(initializers[slope]).astype(np.float32) - np.float32(1.0)
        model.graph.initializer.append(numpy_helper.from_array(shifted, f"{slope}__minus_one"))
        nodes += [
            helper.make_node("Min", [x, zero], [f"{y}__negative_part"]),
            helper.make_node("Mul", [f"{y}__negative_part", f"{slope}__minus_one"], [f"{y}__correction"]),
            helper.make_node("Add", [x, f"{y}__correction"], [y]),
        ]
        rewritten += 1
    if rewritten:
        model.graph.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), zero))
        used = {name for node in nodes for name in node.input}
        kept = [init for init in model.graph.initializer if init.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return rewritten


def quantized_activations(model: Any) -> bool:
    """Whether a graph quantizes its activations too (``QuantizeLinear`` or ``QLinear*`` nodes), like the bundled
    int8 SFace: such a file is meant for onnxruntime's int8 kernels and runs as it is."""
    return any(node.op_type == "QuantizeLinear" or node.op_type.startswith("QLinear") for node in model.graph.node)


def prepare_for_cpu(data: bytes, runtime: str = "onnxruntime") -> bytes:
    """The model as onnxruntime's CPU kernels run it fastest, computing the same function.

    Weights stored quantized are dequantized once (SFace and YuNet run about twice as fast) and PRelu is rewritten
    with Min/Mul/Add (SFace's activations; another third off). Outputs are unchanged within 1e-5
    (``tests/test_models.py`` compares them).
    Graphs that need neither are returned unchanged. For ``runtime="openvino"`` only the weights are dequantized
    (OpenVINO reads no per-block scales, and runs PRelu natively: faster there than the rewrite).
    """
    import onnx

    model = onnx.load_from_string(data)
    if quantized_activations(model):
        return data  # made for onnxruntime's int8 kernels: dequantizing its weights would undo that
    changed = _fold_dequantization(model)
    if runtime == "onnxruntime":
        changed += _rewrite_prelu(model)
    return bytes(model.SerializeToString()) if changed else data


def make_session(path: Path, threads: int | None = None, card: ModelCard | None = None) -> Any:
    """An onnxruntime CPU session with full graph optimisation, a fixed thread count and the graph prepared by
    :func:`prepare_for_cpu`; an :class:`~faceledger.models.openvino_session.OpenVINOSession` when ``card`` names
    the OpenVINO runtime."""
    runtime = card.runtime if card is not None else "onnxruntime"
    if runtime not in RUNTIMES:
        raise ModelError(f"{path}: its card names runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    try:
        data = prepare_for_cpu(path.read_bytes(), runtime)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc})") from exc
    except Exception:  # not parseable by onnx: let onnxruntime report what is wrong with it
        data = path.read_bytes()
    if card is not None and runtime == "openvino":
        from faceledger.models.openvino_session import OpenVINOSession  # optional dependency, imported on demand

        return OpenVINOSession(data, threads=threads or default_threads(), precision=card.precision or "f32",
                               where=card.name)  # fmt: skip
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelError(
            f"{path}: onnxruntime cannot load this file ({str(exc).splitlines()[0][:200]})"
        ) from exc


def signature(session: ort.InferenceSession) -> str:
    """Human-readable input/output signature, used in routing errors."""
    ins = ", ".join(f"{i.name}{list(i.shape)}" for i in session.get_inputs())
    outs = ", ".join(f"{o.name}{list(o.shape)}" for o in session.get_outputs())
    return f"inputs: {ins}; outputs: {outs}"


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def classify(session: ort.InferenceSession) -> str:
    """``"detector"``, ``"recognizer"`` or ``"unknown"`` from the session's signature."""
    ins, outs = session.get_inputs(), session.get_outputs()
    out_names = {o.name for o in outs}
    yunet = {f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES}
    if len(ins) == 1 and len(ins[0].shape) == 4 and _dim(ins[0].shape[1]) == 3 and yunet <= out_names:
        return "detector"
    if len(ins) == 1 and len(outs) == 1:
        shape, out_shape = ins[0].shape, outs[0].shape
        if (
            len(shape) == 4
            and _dim(shape[1]) == 3
            and _dim(shape[2]) == 112
            and _dim(shape[3]) == 112
            and len(out_shape) == 2
        ):
            return "recognizer"
    return "unknown"


def _normalisation(path: Path, card: ModelCard) -> tuple[float, float, bool]:
    """Input mean, std and channel order for a recognizer.

    From the card when it says; otherwise InsightFace's rule: a graph that starts with ``Sub``/``Mul`` normalises
    inside, so it is fed raw pixels; else pixels are mapped to [-1, 1]. Both read RGB.
    """
    spec = card.input
    if "mean" in spec and "std" in spec:
        return float(spec["mean"]), float(spec["std"]), str(spec.get("channels", "RGB")).upper() == "RGB"
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        first = [node.op_type for node in model.graph.node[:8]]
    except Exception:  # unreadable by onnx: fall back to the common convention
        first = []
    if "Sub" in first or "Mul" in first:
        return 0.0, 1.0, True
    return 127.5, 127.5, True


def load_model(
    path: str | os.PathLike[str], card: ModelCard | None = None, threads: int | None = None
) -> YuNetDetector | ArcFaceRecognizer:
    """Load any supported ONNX file and return the wrapper its signature calls for."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found; give the path to an .onnx file")
    session = make_session(path, threads, card)
    kind = classify(session)
    if kind == "detector":
        return YuNetDetector(session, card=card or ModelCard.for_user_file(path, "detector"))
    if kind == "recognizer":
        card = card or ModelCard.for_user_file(path, "recognizer")
        mean, std, rgb = _normalisation(path, card)
        return ArcFaceRecognizer(session, mean=mean, std=std, rgb=rgb, card=card)
    raise ModelError(
        f"{path}: not a model faceledger can route. Supported: ArcFace-family recognizers (one input N x 3 x 112 x "
        f"112, one output N x D) and YuNet-compatible detectors. This file has {signature(session)}"
    )


def load_detector(path: str | os.PathLike[str] | None = None, threads: int | None = None) -> YuNetDetector:
    """The bundled YuNet detector, or a YuNet-compatible file at ``path``."""
    card = bundled_card(DEFAULT_DETECTOR) if path is None else None
    model = load_model(card.path if card else path, card, threads)  # type: ignore[arg-type]
    if not isinstance(model, YuNetDetector):
        raise ModelError(f"{path}: this is a recognizer, not a detector")
    return model


def bundled_recognizer_name(path: str | os.PathLike[str] | None) -> str | None:
    """The bundled recognizer ``path`` names (``None``: the default), or None when it is a file path."""
    if path is None:
        return DEFAULT_RECOGNIZER
    text = os.fspath(path)
    if text in BUNDLED_RECOGNIZERS and not Path(text).is_file():
        return text
    return None


def recognizer_for_templates(model_ids: Iterable[str]) -> str | None:
    """The bundled recognizer that made templates recorded with these model ids (``name:<first 16 hex digits of
    its SHA-256>``, as a gallery records them), when they all name the same one; None when there are none, or they
    name a user file or several models (the default is used, and a gallery says which templates do not match)."""
    ids = set(model_ids)
    names = {model_id.partition(":")[0] for model_id in ids}
    if len(names) != 1 or (name := names.pop()) not in BUNDLED_RECOGNIZERS:
        return None
    # one card read (it hashes the file): every id must be its file's or an earlier build's, not another file's
    return name if ids <= set(bundled_card(name).model_ids()) else None


def load_recognizer(
    path: str | os.PathLike[str] | None = None, threads: int | None = None
) -> ArcFaceRecognizer:
    """The default bundled recognizer (``None``), a bundled one by name (:data:`BUNDLED_RECOGNIZERS`), or an
    ArcFace-family file at ``path``."""
    name = bundled_recognizer_name(path)
    card = bundled_card(name) if name is not None else None
    if card is None and not Path(path).is_file():  # type: ignore[arg-type]
        raise ModelError(f"{path}: model file not found; give the path to an .onnx file "
                         f"(bundled recognizers by name: {', '.join(BUNDLED_RECOGNIZERS)})")  # fmt: skip
    model = load_model(card.path if card else path, card, threads)  # type: ignore[arg-type]
    if not isinstance(model, ArcFaceRecognizer):
        raise ModelError(f"{path}: this is a detector, not a recognizer")
    return model
