"""Embedding speed: batch size and load-time dequantization of the bundled recognizer and detector, and the float
SFace against the int8 one.

    python benchmarks/bench_embedding.py [--repeats 5] [--int8-rounds 40]

Prints milliseconds per face for batches of 1, 8 and 32 aligned faces, with the int8 weights dequantized on every run
(the file as shipped) and once at load (what faceledger does), and the detector's time on a 640x480 image both ways.
Then ``sface_2021dec`` (float32 computation) against ``sface_2021dec_int8`` (int8 computation) as faceledger loads
them, in the same process, alternating one run of each, on the same random input, with the same thread count
(``FACELEDGER_THREADS``, default 1): median milliseconds per face and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

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


def float_against_int8(threads: int, rounds: int, rng: np.random.Generator) -> None:
    """Median ms per face of the two bundled SFace files, one run of each in turn (so both see the same load)."""
    fp32 = make_session(bundled_dir() / "sface_2021dec.onnx", threads)
    int8 = make_session(bundled_dir() / "sface_2021dec_int8.onnx", threads)
    print()
    print("| batch | ms/face sface_2021dec (fp32) | ms/face sface_2021dec_int8 | speed-up | rounds |")
    print("| --- | --- | --- | --- | --- |")
    for batch in (1, 8, 32):
        x = rng.uniform(0, 255, (batch, 3, 112, 112)).astype(np.float32)
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        runs = max(4, rounds // batch)
        for session in (fp32, int8):
            session.run(None, {"data": x})
        for _ in range(runs):
            for key, session in (("fp32", fp32), ("int8", int8)):
                start = time.perf_counter()
                session.run(None, {"data": x})
                times[key].append((time.perf_counter() - start) / batch * 1000)
        a, b = float(np.median(times["fp32"])), float(np.median(times["int8"]))
        print(f"| {batch} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {runs} |")


def similarity_shift(faces: Path) -> None:
    """How far the int8 SFace moves similarities and decisions: the largest face of every labeled image of the
    face set embedded by both, all pairs compared, each model at its own card's threshold for FMR 1e-3."""
    from faceledger import Engine
    from faceledger.evaluate.datasets import load_manifest

    engines = {name: Engine(recognizer=name) for name in ("sface_2021dec", "sface_2021dec_int8")}
    detect = engines["sface_2021dec"]
    crops, labels = [], []
    for sample in load_manifest(faces / "manifest.csv").samples:
        if sample.identity:
            image = detect.load(str(sample.path))
            found = detect.detect(image)
            if len(found):
                crops.append(detect.align(image, found)[0])
                labels.append(sample.identity)
    batch = np.stack(crops)
    vectors = {name: engine.recognizer.embed(batch) for name, engine in engines.items()}
    a, b = vectors["sface_2021dec"], vectors["sface_2021dec_int8"]
    upper = np.triu_indices(len(batch), 1)
    s_a, s_b = (a @ a.T)[upper], (b @ b.T)[upper]
    same = (np.array(labels)[:, None] == np.array(labels)[None, :])[upper]
    shift = np.abs(s_a - s_b)
    t_a, t_b = (engines[n].threshold_for_fmr(1e-3) for n in ("sface_2021dec", "sface_2021dec_int8"))
    m_a, m_b = s_a >= t_a, s_b >= t_b
    self_sim = (a * b).sum(axis=1)
    print()
    print(f"{len(batch)} faces, {len(s_a):,} pairs ({int(same.sum()):,} genuine); thresholds (FMR 1e-3, each card's): "
          f"fp32 {t_a:.4f}, int8 {t_b:.4f}")
    print(f"int8 vs fp32 embedding of the same face: cosine min {self_sim.min():.4f}, mean {self_sim.mean():.4f}")
    print(f"|similarity fp32 - int8| over all pairs: mean {shift.mean():.4f}, p99 {np.percentile(shift, 99):.4f}, "
          f"max {shift.max():.4f}")
    print(f"decisions that change side: {int((m_a != m_b).sum())} of {len(s_a):,} pairs "
          f"(genuine: {int((m_a & ~m_b & same).sum())} match only with fp32, {int((~m_a & m_b & same).sum())} only "
          f"with int8; impostor: {int((m_a & ~m_b & ~same).sum())} only fp32, {int((~m_a & m_b & ~same).sum())} only "
          f"int8); pairs within 0.05 of the fp32 threshold: {int((np.abs(s_a - t_a) < 0.05).sum())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--faces", type=Path, default=None,
                        help="development face set folder: also print how far int8 moves similarities and decisions")
    parser.add_argument("--int8-rounds", type=int, default=40, help="alternating runs of batch 1 (fewer for larger)")
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
    float_against_int8(threads, args.int8_rounds, rng)
    if args.faces is not None:
        similarity_shift(args.faces)


if __name__ == "__main__":
    main()
