#!/usr/bin/env python3
"""Make the bundled int8 SFace (``sface_2021dec_int8.onnx``) from the bundled fp32-activation SFace.

The bundled ``sface_2021dec.onnx`` stores int8 weights but computes in float32 (faceledger dequantizes its weights
once at load). This script quantizes its activations too, with onnxruntime's static quantization, so that the
convolutions run on int8 kernels (VNNI on recent x86 CPUs):

1. the weights are dequantized once (:func:`faceledger.models.router._fold_dequantization`, as at load time);
   SFace's PRelu activations are kept as PRelu (``--prelu rewrite`` writes them as Min/Mul/Add as faceledger
   does for the float model);
2. ``quant_pre_process``: shape inference and onnxruntime's basic graph optimisation (batch normalisation folded
   into the convolutions), saved in the file, so the quantizer sees the graph onnxruntime runs;
3. ``quantize_static``, calibrated on aligned faces of the **calibration half** of the development face set
   (identities with ``faceledger.evaluate.splits.is_calibration_identity``; the half the default threshold is
   calibrated on, never the half tests measure accuracy on): the largest face of ``--count`` images taken evenly
   spaced over that half in manifest order, so the same set of files always gives the same crops. Their five
   landmarks are recorded in ``scripts/sface_int8_calibration.csv`` and the crops are aligned from that record, so
   a later change to the detector does not change this file (``--redetect`` finds the faces again with the current
   detector and rewrites the record, for a new build);
4. ``Min(x, 0)`` computed in uint8 (:func:`integer_min`) and the per-channel multiplications of the PRelus run as
   1x1 depthwise convolutions (:func:`depthwise_mul`): both are exact rewrites of what the quantizer wrote, for
   speed.

Usage::

    python scripts/quantize_sface.py               # writes src/faceledger/models/bundled/sface_2021dec_int8.onnx
    python scripts/quantize_sface.py --format qdq --method minmax --out /tmp/x.onnx   # an experiment

The script prints the SHA-256 of the written file; with the same inputs and options it is the same file (the
card ``sface_2021dec_int8.toml`` records it). Options other than the defaults are for experiments
(benchmarks/README.md lists what was tried and what it measured).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "faceledger" / "models" / "bundled"
SOURCE = BUNDLED / "sface_2021dec.onnx"
OUT = BUNDLED / "sface_2021dec_int8.onnx"
SOURCE_SHA256 = "7b98dfe35fd9072fe3bbd931387c4abd8f1ae700db3cb547d6adfdd86f3f98e4"


LANDMARKS = ROOT / "scripts" / "sface_int8_calibration.csv"
LANDMARK_COLUMNS = [f"{axis}{i}" for i in range(5) for axis in "xy"]


def detect_calibration_faces(faces: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """The largest face of ``count`` images evenly spaced over the calibration half of the face set in manifest
    order (images without a face are skipped, the next one taken), found by the current default detector: the
    image's path relative to ``faces`` and the face's five landmarks ``(5, 2)`` float32."""
    from faceledger import Engine
    from faceledger.evaluate.datasets import load_manifest
    from faceledger.evaluate.splits import split_indices

    full = load_manifest(faces / "manifest.csv")
    half = full.subset(split_indices([s.identity for s in full.samples], "calibration"))
    samples = half.samples
    if len(samples) < count:
        raise SystemExit(f"the calibration half has {len(samples)} images, fewer than --count {count}")
    engine = Engine(recognizer=str(SOURCE))
    picks = np.linspace(0, len(samples), count, endpoint=False).astype(int)
    found_faces: list[tuple[str, np.ndarray]] = []
    used: set[int] = set()
    for start in picks:
        index = int(start)
        while index < len(samples):
            if index not in used:
                used.add(index)
                found = engine.detect(str(samples[index].path))
                if len(found):
                    found_faces.append((samples[index].path.relative_to(faces).as_posix(), found.landmarks[0]))
                    break
            index += 1
    if len(found_faces) != count:
        raise SystemExit(f"found {len(found_faces)} faces, expected {count}")
    return found_faces


def write_landmarks(path: Path, found: list[tuple[str, np.ndarray]]) -> None:
    """The record of the calibration faces: one row per face, its image and landmarks (float32, written so that
    reading them back gives the same float32 values)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", *LANDMARK_COLUMNS])
        for name, points in found:
            writer.writerow([name, *(repr(float(v)) for v in np.asarray(points, np.float32).reshape(-1))])


def read_landmarks(path: Path) -> list[tuple[str, np.ndarray]]:
    """The rows :func:`write_landmarks` wrote."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [(row["path"], np.array([row[c] for c in LANDMARK_COLUMNS], np.float32).reshape(5, 2)) for row in rows]


def calibration_crops(faces: Path, found: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """``(N, 112, 112, 3)`` BGR crops of the recorded faces, aligned as the Engine aligns them."""
    from faceledger.imageio import load_image
    from faceledger.vision.alignment import align_faces

    return np.concatenate([align_faces(load_image(str(faces / name)), points[None]) for name, points in found])


def network_input(crops: np.ndarray) -> np.ndarray:
    """What :class:`faceledger.vision.embedding.ArcFaceRecognizer` feeds SFace: RGB, NCHW, float32 pixels 0..255
    (the card's mean 0 and std 1: SFace normalises inside its graph)."""
    return np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)


def float_graph(prelu: str) -> bytes:
    """The bundled file with its weights dequantized (and PRelu rewritten when ``prelu == "rewrite"``)."""
    import onnx

    from faceledger.models.router import _fold_dequantization, _rewrite_prelu

    data = SOURCE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{SOURCE}: SHA-256 {digest}, expected {SOURCE_SHA256}; run scripts/vendor_models.py first")
    model = onnx.load_from_string(data)
    _fold_dequantization(model)
    if prelu == "rewrite":
        _rewrite_prelu(model)
    return bytes(model.SerializeToString())


def integer_min(model: Any) -> int:
    """Compute ``Min(x, 0)`` of quantized tensors in uint8: ``Min(x_q, zero_point)``.

    The quantizer leaves ``Min`` (half of each rewritten PRelu) in float: ``DequantizeLinear -> Min(., 0) ->
    QuantizeLinear`` around every one. With the input's own scale and zero point, ``Min(x_q, zero_point)`` is the
    same value exactly, with no rounding of its own; the consumers (``QLinear*`` nodes, which read each tensor with
    its scale and zero point after it) are pointed at the input's scale and zero point. Returns the number of Min
    nodes rewritten.
    """
    from onnx import numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    zeros = {
        init.name
        for init in graph.initializer
        if init.dims == [] or list(init.dims) == [1]
        if float(numpy_helper.to_array(init).reshape(-1)[0]) == 0.0
    }
    drop: set[int] = set()
    rewritten = 0
    for node in graph.node:
        if node.op_type != "Min" or len(node.input) != 2 or node.input[1] not in zeros:
            continue
        dq = producer.get(node.input[0])
        after = consumers.get(node.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        quant = after[0]
        users = consumers.get(quant.output[0], [])
        if not users or not all(user.op_type.startswith("QLinear") for user in users):
            continue
        x_q, scale, zero_point = dq.input
        for user in users:
            for index, name in enumerate(list(user.input)):
                if name == quant.output[0]:
                    user.input[index + 1] = scale
                    user.input[index + 2] = zero_point
        node.input[0], node.input[1] = x_q, zero_point
        node.output[0] = quant.output[0]
        drop.add(id(quant))
        if len(consumers.get(dq.output[0], [])) == 1:
            drop.add(id(dq))
        rewritten += 1
    _replace_nodes(graph, [node for node in graph.node if id(node) not in drop])
    return rewritten


def depthwise_mul(model: Any) -> int:
    """Multiply by a per-channel constant with a 1x1 depthwise ``QLinearConv`` instead of ``QLinearMul``.

    Each rewritten PRelu multiplies ``Min(x, 0)`` by ``slope - 1``, one value per channel. onnxruntime runs its
    convolutions channels-last, and its ``QLinearMul`` broadcasts a per-channel constant over that layout a few
    values at a time (0.63 ms for a 112x112x64 tensor in its profile on one thread of an AVX2 CPU, against 0.25 ms
    for the depthwise convolution, which runs along the channels). A depthwise convolution with one 1x1 weight per
    channel is the same product. Each weight is written as 127 (or -127) with the scale ``|constant| / 127``, the
    dequantized constant the multiplication used up to float32 rounding; only the rounding of the result (in the
    convolution's requantization) can differ: the embeddings of every face of the development set came out
    bit-identical (onnxruntime 1.32, AMD EPYC). Returns the number of nodes rewritten; scalar multiplications (the
    input scaling) stay ``QLinearMul``.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    nodes = []
    rewritten = 0
    for node in graph.node:
        factor = constants.get(node.input[3]) if node.op_type == "QLinearMul" else None
        if factor is None or len(factor.dims) < 3 or int(np.prod(factor.dims)) != factor.dims[-3]:
            nodes.append(node)  # not a (C, 1, 1) constant: left as it is
            continue
        a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = node.input
        real = (numpy_helper.to_array(constants[b]).astype(np.float64) - numpy_helper.to_array(constants[b_zero])) * (
            numpy_helper.to_array(constants[b_scale]).astype(np.float64)
        )
        real = real.reshape(-1)
        scale = np.maximum(np.abs(real), 1e-12) / 127.0
        weight = np.round(real / scale).astype(np.int8).reshape(-1, 1, 1, 1)
        name = f"{node.output[0]}_depthwise"
        graph.initializer.extend(
            [
                numpy_helper.from_array(weight, f"{name}_weight"),
                numpy_helper.from_array(scale.astype(np.float32), f"{name}_weight_scale"),
                numpy_helper.from_array(np.zeros(len(real), np.int8), f"{name}_weight_zero_point"),
            ]
        )
        inputs = [a, a_scale, a_zero, f"{name}_weight", f"{name}_weight_scale", f"{name}_weight_zero_point"]
        attributes = {"group": len(real), "kernel_shape": [1, 1], "strides": [1, 1], "pads": [0] * 4}
        inputs += [y_scale, y_zero]
        conv = helper.make_node("QLinearConv", inputs, list(node.output), name=name, dilations=[1, 1], **attributes)
        nodes.append(conv)
        rewritten += 1
    _replace_nodes(graph, nodes)
    return rewritten


def _replace_nodes(graph: Any, nodes: list[Any]) -> None:
    """``graph`` with ``nodes`` as its nodes, and the initializers none of them reads dropped."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def quantize(blob: np.ndarray, args: argparse.Namespace, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(range(len(blob)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self.rows, None)
            return None if row is None else {"data": blob[row : row + 1]}

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "float.onnx"
        raw.write_bytes(float_graph(args.prelu))
        source = raw
        if args.preprocess:
            source = Path(tmp) / "preprocessed.onnx"
            quant_pre_process(str(raw), str(source), skip_symbolic_shape=True)
        extra: dict[str, object] = {}
        if args.method == "percentile":
            extra["CalibPercentile"] = args.percentile
        quantize_static(
            str(source),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
            per_channel=args.per_channel,
            reduce_range=args.reduce_range,
            activation_type=QuantType.QUInt8 if args.activations == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[args.method],
            extra_options=extra,
        )
    model = onnx.load(str(out))
    model.producer_name = "faceledger scripts/quantize_sface.py"
    model.producer_version = ""
    del model.metadata_props[:]
    if args.integer_min:
        print(f"Min computed in uint8 in {integer_min(model)} places", file=sys.stderr)
    if args.depthwise_mul:
        print(f"per-channel QLinearMul as a depthwise QLinearConv in {depthwise_mul(model)} places", file=sys.stderr)
    onnx.checker.check_model(model)
    out.write_bytes(model.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_faces = os.environ.get("FACELEDGER_FACES") or str(ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--faces", type=Path, default=Path(default_faces), help="development face set folder")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output file (default: {OUT})")
    parser.add_argument("--count", type=int, default=200, help="calibration faces (default 200)")
    parser.add_argument("--format", choices=["qdq", "qoperator"], default="qoperator")
    parser.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="percentile")
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--activations", choices=["u8", "s8"], default="u8")
    parser.add_argument("--prelu", choices=["keep", "rewrite"], default="rewrite")
    parser.add_argument("--integer-min", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--depthwise-mul", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--preprocess", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--crops", type=Path, default=None, help="reuse/save calibration crops (.npy) between runs")
    parser.add_argument("--landmarks", type=Path, default=LANDMARKS, help=f"record of the calibration faces "
                        f"(default: {LANDMARKS.relative_to(ROOT)})")  # fmt: skip
    parser.add_argument("--redetect", action="store_true", help="find the calibration faces with the current "
                        "detector and rewrite --landmarks first (for a new build: the file changes)")  # fmt: skip
    args = parser.parse_args(argv)

    if args.crops is not None and args.crops.is_file():
        crops = np.load(args.crops)
    else:
        if not (args.faces / "manifest.csv").is_file():
            print(f"{args.faces / 'manifest.csv'}: not found; pass --faces or set FACELEDGER_FACES", file=sys.stderr)
            return 2
        if args.redetect or not args.landmarks.is_file():
            write_landmarks(args.landmarks, detect_calibration_faces(args.faces, args.count))
            print(f"wrote {args.landmarks}", file=sys.stderr)
        found = read_landmarks(args.landmarks)
        if len(found) != args.count:
            print(f"{args.landmarks}: {len(found)} faces, not --count {args.count}; pass --redetect", file=sys.stderr)
            return 2
        crops = calibration_crops(args.faces, found)
        if args.crops is not None:
            np.save(args.crops, crops)
    print(f"calibration: {len(crops)} faces, crops SHA-256 {hashlib.sha256(crops.tobytes()).hexdigest()[:16]}",
          file=sys.stderr)  # fmt: skip
    quantize(network_input(crops), args, args.out)
    print(f"{hashlib.sha256(args.out.read_bytes()).hexdigest()}  {args.out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
