"""Embedding speed: batch size and load-time dequantization of the bundled recognizer and detector.

    python benchmarks/bench_embedding.py [--repeats 5]

Prints milliseconds per face for batches of 1, 8 and 32 aligned faces, with the int8 weights dequantized on every run
(the file as shipped) and once at load (what faceledger does), and the detector's time on a 640x480 image both ways.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import onnxruntime as ort

from faceledger.models import bundled_dir, make_session
from faceledger.models.router import default_threads


def per_run(session: ort.InferenceSession, name: str, x: np.ndarray, repeats: int) -> float:
    session.run(None, {name: x})
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {name: x})
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    threads = default_threads()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {threads} onnxruntime threads, "
          f"onnxruntime {ort.__version__}, Python {platform.python_version()}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    rng = np.random.default_rng(0)
    sface = bundled_dir() / "sface_2021dec.onnx"
    as_shipped = ort.InferenceSession(str(sface), options, providers=["CPUExecutionProvider"])
    folded = make_session(sface, threads)
    print("| recognizer batch | ms/face, file as shipped | ms/face, prepared at load (dequantized, PRelu rewritten) |")
    print("| --- | --- | --- |")
    for batch in (1, 8, 32):
        x = rng.uniform(0, 255, (batch, 3, 112, 112)).astype(np.float32)
        a = per_run(as_shipped, "data", x, args.repeats) / batch * 1000
        b = per_run(folded, "data", x, args.repeats) / batch * 1000
        print(f"| {batch} | {a:.1f} | {b:.1f} |")
    yunet = bundled_dir() / "yunet_2023mar.onnx"
    x = rng.uniform(0, 255, (1, 3, 480, 640)).astype(np.float32)
    a = per_run(ort.InferenceSession(str(yunet), options, providers=["CPUExecutionProvider"]), "input", x, args.repeats)
    b = per_run(make_session(yunet, threads), "input", x, args.repeats)
    print(f"| detector 640x480 | {a * 1000:.1f} ms | {b * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
