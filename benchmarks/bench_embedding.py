"""Embedding speed: batch size and load-time dequantization of the bundled recognizer and detector, and the float
SFace against the int8 one and the bf16 one (OpenVINO; when it is installed and the CPU has bf16).

    python benchmarks/bench_embedding.py [--repeats 5] [--int8-rounds 40]

Prints milliseconds per face for batches of 1, 8 and 32 aligned faces, with the int8 weights dequantized on every run
(the file as shipped) and once at load (what faceledger does), and the detector's time on a 640x480 image both ways.
Then ``sface_2021dec`` (float32 computation) against ``sface_2021dec_int8`` (int8 computation, onnxruntime) and
``sface_2021dec_bf16`` (bfloat16 computation, OpenVINO) as faceledger loads them, in the same process, alternating
one run of each, on the same random input, with the same thread count (``FACELEDGER_THREADS``, default 1): median
milliseconds per face and the ratios. With ``--faces``, how far each moves similarities and decisions. With
``--also FILE`` (repeatable), recognizer files run alongside in the same rounds: a new build of the int8 file against
the bundled one, for example (``python scripts/quantize_sface.py --out /tmp/new.onnx``).
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


def available_recognizers() -> list[str]:
    """The bundled recognizers this machine can run (``sface_2021dec_bf16`` needs OpenVINO and a CPU with bf16)."""
    from faceledger.errors import ModelError
    from faceledger.models import load_recognizer
    from faceledger.models.router import BUNDLED_RECOGNIZERS

    names = []
    for name in BUNDLED_RECOGNIZERS:
        try:
            load_recognizer(name, 1)
        except ModelError as exc:
            print(f"{name}: not run here ({exc})")
            continue
        names.append(name)
    return names


def recognizers_side_by_side(names: list[str], threads: int, rounds: int, rng: np.random.Generator) -> None:
    """Median ms per face of the bundled SFace variants as faceledger loads them, one run of each in turn (so all see
    the same load), on the same random input."""
    from faceledger.models import load_recognizer

    names = sorted(names, key=lambda name: name != "sface_2021dec")  # the float one first: the ratios are to it
    sessions = {name: load_recognizer(name, threads).session for name in names}
    print()
    columns = " | ".join(f"ms/face {Path(name).name}" for name in names)
    print(f"| batch | {columns} | speed-up over the first | rounds |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- | --- |")
    for batch in (1, 4, 8, 32):
        x = rng.uniform(0, 255, (batch, 3, 112, 112)).astype(np.float32)
        times: dict[str, list[float]] = {name: [] for name in names}
        runs = max(4, rounds // batch)
        for session in sessions.values():
            session.run(None, {"data": x})
        for _ in range(runs):
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run(None, {"data": x})
                times[name].append((time.perf_counter() - start) / batch * 1000)
        medians = [float(np.median(times[name])) for name in names]
        ratios = ", ".join(f"{medians[0] / m:.2f}x" for m in medians[1:])
        print(f"| {batch} | " + " | ".join(f"{m:.2f}" for m in medians) + f" | {ratios} | {runs} |")


def similarity_shift(faces: Path, names: list[str]) -> None:
    """How far each faster SFace moves similarities and decisions from the float one: the largest face of every
    labeled image of the face set embedded by each, all pairs compared, each model at its own card's threshold for
    FMR 1e-3."""
    from faceledger import Engine
    from faceledger.evaluate.datasets import load_manifest

    engines = {name: Engine(recognizer=name) for name in names}
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
    a = engines["sface_2021dec"].recognizer.embed(batch)
    upper = np.triu_indices(len(batch), 1)
    s_a = (a @ a.T)[upper]
    same = (np.array(labels)[:, None] == np.array(labels)[None, :])[upper]
    t_a = engines["sface_2021dec"].threshold_for_fmr(1e-3)
    m_a = s_a >= t_a
    print()
    print(
        f"{len(batch)} faces, {len(s_a):,} pairs ({int(same.sum()):,} genuine); fp32 threshold (FMR 1e-3, its "
        f"card's) {t_a:.4f}; pairs within 0.05 of it: {int((np.abs(s_a - t_a) < 0.05).sum())}"
    )
    for name in names:
        if name == "sface_2021dec":
            continue
        b = engines[name].recognizer.embed(batch)
        s_b = (b @ b.T)[upper]
        shift = np.abs(s_a - s_b)
        t_b = engines[name].threshold_for_fmr(1e-3)
        m_b = s_b >= t_b
        self_sim = (a * b).sum(axis=1)
        print(
            f"{name} (threshold {t_b:.4f}): embedding of the same face against fp32's, cosine min "
            f"{self_sim.min():.4f}, mean {self_sim.mean():.4f}; |similarity difference| over all pairs: mean "
            f"{shift.mean():.4f}, p99 {np.percentile(shift, 99):.4f}, max {shift.max():.4f}; decisions that change "
            f"side: {int((m_a != m_b).sum())} (genuine: {int((m_a & ~m_b & same).sum())} match only with fp32, "
            f"{int((~m_a & m_b & same).sum())} only with {name}; impostor: {int((m_a & ~m_b & ~same).sum())} only "
            f"fp32, {int((~m_a & m_b & ~same).sum())} only {name})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--faces",
        type=Path,
        default=None,
        help="development face set folder: also print how far int8 moves similarities and decisions",
    )
    parser.add_argument("--int8-rounds", type=int, default=40, help="alternating runs of batch 1 (fewer for larger)")
    parser.add_argument(
        "--also", type=Path, action="append", default=[], help="a recognizer file to time alongside (repeatable)"
    )
    args = parser.parse_args()
    threads = default_threads()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {threads} onnxruntime threads, "
        f"onnxruntime {ort.__version__}, Python {platform.python_version()}"
    )
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
    names = available_recognizers()
    recognizers_side_by_side(names + [str(path) for path in args.also], threads, args.int8_rounds, rng)
    if args.faces is not None:
        similarity_shift(args.faces, names)


if __name__ == "__main__":
    main()
