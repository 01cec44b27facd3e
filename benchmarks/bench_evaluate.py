#!/usr/bin/env python3
"""Evaluation of the bundled models on the development face set, each identity half reported separately.

The *calibration* half (identities whose sha256 starts with 0-7) set the thresholds in the bundled model card,
so its figures at the card's threshold are in-sample; the *evaluation* half was not used for anything and is
the honest one. Prints verification (AUC, EER, TAR at FMR), identification (rank-1/rank-5, open-set FNIR at
FPIR), detection, and the FMR/FNMR each half gives at the card's threshold for FMR 1e-3, plus the machine and
library versions. Full reports (Markdown, JSON, plots) go to --out.

    python benchmarks/bench_evaluate.py                         # ../shared/data/faces or $FACELEDGER_FACES
    python benchmarks/bench_evaluate.py --out out/bench_evaluate --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """CPU, OS, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("faceledger", "numpy", "onnxruntime", "opencv-python-headless", "matplotlib")
        },
    }


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if x == 0 or abs(x) >= 1e-3 else f"{x:.2e}"
    return str(x)


def summarize(name: str, report: dict[str, Any]) -> list[str]:
    """Printable lines with the headline figures of one report."""
    ver = report["verification"]
    thr = report["threshold"]
    at = ver["at_threshold"]
    lines = [
        f"== {name}: {report['dataset']['images']} images, {report['dataset']['identities']} identities, "
        f"{ver['genuine_pairs']} genuine / {ver['impostor_pairs']} impostor pairs",
        f"   AUC {ver['auc']:.5f}   EER {ver['eer']:.4f} (threshold {ver['eer_threshold']:.4f})   "
        f"best accuracy {ver['best_accuracy']['accuracy']:.4f} at {ver['best_accuracy']['threshold']:.4f}",
    ]
    for e in ver["tar_at_fmr"]:
        if e["supported"]:
            lines.append(
                f"   TAR @ FMR {e['fmr_target']:g}: {e['tar']:.4f}  (threshold {e['threshold']:.4f}, "
                f"{e['false_matches']} false matches)"
            )
        else:
            lines.append(f"   TAR @ FMR {e['fmr_target']:g}: {e['reason']}")
    lines.append(
        f"   at threshold {thr['value']:.4f} ({thr['source']}): FMR {_fmt(at['fmr'])} "
        f"[{_fmt(at['fmr_ci'][0])}, {_fmt(at['fmr_ci'][1])}] ({at['false_matches']} of "
        f"{at['impostor_pairs']}), "
        f"FNMR {_fmt(at['fnmr'])} ({at['false_non_matches']} of {at['genuine_pairs']})"
    )
    ident = report["identification"] or {}
    closed = ident.get("closed_set")
    if closed:
        lines.append(
            f"   closed set: rank-1 {closed['rank1']:.4f}, rank-5 {closed['rank5']:.4f} "
            f"({closed['probes']} searches, gallery {closed['gallery']})"
        )
    opened = ident.get("open_set")
    if opened:
        pts = ", ".join(
            f"FPIR {p['fpir_target']:g}: FNIR {p['fnir']:.4f}" if p["supported"] else f"FPIR {p['fpir_target']:g}: n/a"
            for p in opened["fnir_at_fpir"]
        )
        lines.append(
            f"   open set ({opened['enrolled_identities']} enrolled, {opened['held_out_identities']} "
            "held out, "
            f"{opened['non_mated_searches']} non-mated searches): {pts}"
        )
    det = report.get("detection")
    if det:
        lines.append(
            f"   detection (face counts): {det['found']} of {det['expected_faces']} faces on {det['images']} "
            f"images (recall {det['recall']:.4f}), {det['false_detections']} extra detections"
        )
    dem = report.get("demographics")
    if dem:
        lines.append(f"   per group ({report['dataset']['group_column']}) at threshold {dem['threshold']:.4f}:")
        for g in dem["groups"]:

            def ratio(key: str, group: dict[str, Any] = g) -> str:
                if not group[f"{key}_comparable"]:
                    return "(too few pairs to compare)"
                bound = ">=" if group[f"{key}_ratio_is_lower_bound"] else ""
                return f"x{bound}{group[f'{key}_ratio_to_best']:.2f} of best"

            lines.append(
                f"     {g['group']:<16} FMR {_fmt(g['fmr'])} ({g['false_matches']}/{g['impostor_pairs']}) "
                f"{ratio('fmr')}   FNMR {_fmt(g['fnmr'])} ({g['false_non_matches']}/{g['genuine_pairs']}) "
                f"{ratio('fnmr')}"
            )
        for w in dem["warnings"]:
            lines.append(f"     warning: {w}")
    fail = report["failures"]
    lines.append(
        f"   failures: {len(fail['unreadable'])} unreadable, {len(fail['no_face'])} no face, "
        f"{len(fail['several_faces'])} labeled images with several faces"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    from faceledger import Engine
    from faceledger.evaluate.cache import EmbeddingCache, default_cache_dir, pipeline_id
    from faceledger.evaluate.datasets import load_manifest
    from faceledger.evaluate.report import clean_json, write_outputs
    from faceledger.evaluate.runner import evaluate_dataset
    from faceledger.evaluate.splits import split_indices

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_faces = os.environ.get("FACELEDGER_FACES") or str(ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--faces", type=Path, default=Path(default_faces))
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench_evaluate")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--no-cache", action="store_true", help="embed everything again (times the embedding)")
    parser.add_argument("--group-column", default="source", help="manifest column used as group label")
    parser.add_argument("--json", action="store_true", help="also print one JSON object with all figures")
    args = parser.parse_args(argv)

    manifest = args.faces / "manifest.csv"
    if not manifest.is_file():
        print(f"{manifest}: not found; pass --faces or set FACELEDGER_FACES", file=sys.stderr)
        return 2
    # the photo source (lab set or in-the-wild collection) stands in as a user-supplied group label, to show the
    # per-group report; it says nothing about the people in the photos
    full = load_manifest(manifest, group_column=args.group_column)
    engine = Engine()
    cache = EmbeddingCache(None if args.no_cache else (args.cache_dir or default_cache_dir()), pipeline_id(engine))
    info = machine()
    print(f"machine: {info['cpu']} x{info['cpus']}, {info['os']}, Python {info['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    card = engine.recognizer.card
    print(f"recognizer {card.name} ({card.sha256[:12]}), calibrated: {engine.calibration is not None}")
    results: dict[str, Any] = {"machine": info, "halves": {}}
    for half in ("calibration", "evaluation", "all"):
        data = full.subset(split_indices([s.identity for s in full.samples], half))
        data.name = f"shared faces, {half} {'half' if half != 'all' else 'images'}"
        start = time.perf_counter()
        evaluation, _ = evaluate_dataset(data, engine, cache, target_fmr=1e-3)
        seconds = time.perf_counter() - start
        write_outputs(evaluation, args.out / half)
        report = evaluation.report
        report["seconds"] = seconds
        results["halves"][half] = report
        label = {
            "calibration": "calibration half (set the card's thresholds: in-sample)",
            "evaluation": "evaluation half (held out)",
            "all": "all images",
        }[half]
        print()
        for line in summarize(label, report):
            print(line)
        print(
            f"   {seconds:.1f} s ({report['images']['from_cache']} of {report['images']['total']} "
            "from cache); "
            f"report: {args.out / half / 'report.md'}"
        )
    if args.json:
        print(json.dumps(clean_json(results), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
