#!/usr/bin/env python3
"""Calibrate a bundled recognizer's thresholds and write them into its model card.

Uses only the *calibration half* of the development face set (identities for which
``faceledger.evaluate.splits.is_calibration_identity`` is true), so tests that assert accuracy on the other
half never measure on the data that set the threshold. Every labeled image's largest face is embedded with the
default Engine running the card's recognizer; genuine pairs are all same-identity pairs, impostor pairs are *all*
cross-identity pairs of the half. The ``[calibration]`` table of the card (default
``src/faceledger/models/bundled/sface_2021dec_int8.toml``; ``--card .../sface_2021dec.toml`` for the float one) is
replaced (other lines kept).

    python scripts/calibrate_default.py                     # faces from ../shared/data/faces or
    $FACELEDGER_FACES python scripts/calibrate_default.py --faces DIR --dry-run
    python scripts/calibrate_default.py --card src/faceledger/models/bundled/sface_2021dec.toml
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "src" / "faceledger" / "models" / "bundled" / "sface_2021dec_int8.toml"


def main(argv: list[str] | None = None) -> int:
    from faceledger import Engine
    from faceledger.evaluate.cache import EmbeddingCache, default_cache_dir, pipeline_id
    from faceledger.evaluate.calibration import calibrate_pairs, card_table
    from faceledger.evaluate.datasets import load_manifest
    from faceledger.evaluate.runner import dataset_pair_scores, embed_dataset
    from faceledger.evaluate.splits import split_indices
    from faceledger.evaluate.tomlfile import render_table, replace_table, write_text_atomic
    from faceledger.models.cards import Calibration
    from faceledger.models.router import BUNDLED_RECOGNIZERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_faces = os.environ.get("FACELEDGER_FACES") or str(ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--faces", type=Path, default=Path(default_faces), help="development face set folder")
    parser.add_argument("--card", type=Path, default=CARD, help="model card to write")
    parser.add_argument("--default-fmr", type=float, default=1e-3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    args = parser.parse_args(argv)

    manifest = args.faces / "manifest.csv"
    if not manifest.is_file():
        print(f"{manifest}: not found; pass --faces or set FACELEDGER_FACES", file=sys.stderr)
        return 2
    full = load_manifest(manifest)
    half = full.subset(split_indices([s.identity for s in full.samples], "calibration"))
    name = args.card.stem
    engine = Engine(recognizer=name if name in BUNDLED_RECOGNIZERS else str(args.card.with_suffix(".onnx")))
    cache = EmbeddingCache(args.cache_dir or default_cache_dir(), pipeline_id(engine))
    start = time.perf_counter()
    outcomes = embed_dataset(half, engine, cache)
    seconds = time.perf_counter() - start
    failed = [o for o in outcomes if o.vector is None]
    pairs, _, _ = dataset_pair_scores(half, outcomes)
    identities = {half.samples[o.index].identity for o in outcomes if o.vector is not None}
    used = len(outcomes) - len(failed)
    dataset = (
        f"faceledger development face set (shared/data/faces), calibration half: identities whose "
        f"sha256(identity) starts with 0-7; {len(identities)} identities, {used} images with a face"
    )
    method = (
        f"largest face of each labeled image embedded by the default Engine with {name}; genuine = every "
        "same-identity pair, "
        "impostor = every cross-identity pair of the half; at each threshold FMR = impostor pairs with "
        "similarity >= threshold / all impostor pairs; thresholds at log-spaced FMR levels down to "
        "1/impostor_pairs (each the lowest threshold meeting its level); fmr_ci_high = upper "
        "Clopper-Pearson bound"
    )
    result = calibrate_pairs(pairs.genuine, pairs.impostor, args.default_fmr, dataset=dataset, method=method)
    table = card_table(result, args.default_fmr)
    Calibration.from_table(table, str(args.card))  # the loader must accept it
    cal = result.calibration
    print(f"embedded {len(outcomes)} images in {seconds:.1f} s ({cache.hits} from cache); {len(failed)} without face")
    print(f"genuine pairs {cal.genuine_pairs}, impostor pairs {cal.impostor_pairs}")
    print(
        f"threshold for FMR {args.default_fmr:g}: {cal.threshold:.6f}  measured FMR {cal.fmr:.3g} "
        f"({cal.false_matches} false matches), 95% CI {cal.fmr_ci[0]:.3g} - {cal.fmr_ci[1]:.3g}, TAR "
        f"{cal.tar:.4f}"
    )
    comment = (
        "Measured by scripts/calibrate_default.py: FMR and FNMR at each threshold (a match is similarity >=\n"
        "threshold); fmr_ci_high is the upper Clopper-Pearson bound on FMR at the stated confidence."
    )
    text = args.card.read_text(encoding="utf-8")
    new_text = replace_table(text, "calibration", render_table("calibration", table, comment), str(args.card))
    if args.dry_run:
        print(render_table("calibration", table, comment))
        return 0
    write_text_atomic(args.card, new_text)
    print(f"wrote [calibration] to {args.card.relative_to(ROOT) if args.card.is_relative_to(ROOT) else args.card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
