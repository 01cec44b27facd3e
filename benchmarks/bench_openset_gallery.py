"""Open-set identification through the gallery itself, on people its threshold was not calibrated on.

``faceledger evaluate`` measures FPIR and FNIR against gallery size from embeddings (``evaluate/openset.py``). This
script checks the thing a deployment relies on: real ``Gallery.enroll`` and ``Gallery.identify`` calls, with the
threshold the gallery sets for its size in force (``gallery/thresholds.py``), counted over the searches the ledger
records. Run from the project root::

    python benchmarks/bench_openset_gallery.py                 # ../shared/data/faces, or $FACELEDGER_FACES
    python benchmarks/bench_openset_gallery.py --json out.json

Who is who (fixed, no randomness):

* **held-out people**: identities of the evaluation half (``faceledger.evaluate.splits``: the model card's
  threshold table was measured on the other half). Those with at least two single-face photos are ordered by
  ``sha256("open-set gallery:" + identity)``; the first half (rounded up) and those with one photo are **never
  enrolled**: every face detected in their photos is a **non-mated search**. The others are enrolled from their
  first photo that enrolls; their other photos are **mated searches** (the largest face).
* **stage 1**: the gallery holds the enrolled held-out people only.
* **stage 2**: every calibration-half identity is enrolled too (from its first photo that enrolls), so the gallery is
  larger and its threshold higher; the same searches run again. The non-mated searches still compare held-out faces
  with enrolled faces, pairs the calibration never saw.

Per stage: the threshold and its basis as the audit entries of the searches record them; FPIR = non-mated searches
(faces) with any candidate / all non-mated searches, with its exact 95 % interval, against the policy's target;
FNIR = mated searches whose mate is not the rank-1 candidate / all mated searches, against the calibration's
expected FNIR at that threshold.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PURPOSE = "access-control"


@dataclass
class Plan:
    """Which photos enroll whom, and which are searched."""

    enrolled: dict[str, list[Path]]  # held-out identity -> its photos (enrolled from the first that enrolls)
    unknown: dict[str, list[Path]]  # held-out identities never enrolled
    padding: dict[str, list[Path]]  # calibration-half identities, enrolled in stage 2


@dataclass
class Stage:
    """What one stage measured."""

    name: str
    subjects: int = 0
    threshold: float = 0.0
    basis: dict[str, Any] = field(default_factory=dict)
    nonmated_photos: int = 0
    nonmated_faces: int = 0
    false_candidates: int = 0
    mated: int = 0
    missed: int = 0
    wrong_rank1: int = 0
    entries_checked: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        from faceledger.evaluate.metrics import clopper_pearson

        fpir = self.false_candidates / self.nonmated_faces if self.nonmated_faces else None
        fnir = self.missed / self.mated if self.mated else None
        return {
            "stage": self.name,
            "subjects": self.subjects,
            "threshold": round(self.threshold, 4),
            "target_fpir": self.basis.get("target_fpir"),
            "expected_fpir": self.basis.get("expected_fpir"),
            "expected_fnir": self.basis.get("expected_fnir"),
            "nonmated_photos": self.nonmated_photos,
            "nonmated_faces": self.nonmated_faces,
            "false_candidates": self.false_candidates,
            "fpir": fpir,
            "fpir_ci95": None if fpir is None else list(clopper_pearson(self.false_candidates, self.nonmated_faces)),
            "mated": self.mated,
            "missed": self.missed,
            "wrong_rank1": self.wrong_rank1,
            "fnir": fnir,
            "audit_entries_checked": self.entries_checked,
            "seconds": round(self.seconds, 1),
        }


def faces_dir() -> Path:
    """The development face set: ``$FACELEDGER_FACES`` or ``../shared/data/faces`` beside the project."""
    env = os.environ.get("FACELEDGER_FACES")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "faces"


def make_plan(folder: Path, fold: int = 0) -> Plan:
    """Split the labeled single-face photos of the manifest (see the module docstring); ``fold`` 1 swaps the
    enrolled and the never-enrolled halves of the held-out people with several photos."""
    from faceledger.evaluate.splits import is_calibration_identity

    photos: dict[str, list[Path]] = defaultdict(list)
    with open(folder / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["identity"] and row["n_faces_expected"] == "1":
                photos[row["identity"]].append(folder / row["path"])
    held_out = sorted((k for k in photos if not is_calibration_identity(k)),
                      key=lambda k: hashlib.sha256(f"open-set gallery:{k}".encode()).hexdigest())  # fmt: skip
    several = [k for k in held_out if len(photos[k]) >= 2]
    cut = (len(several) + 1) // 2
    first, second = several[:cut], several[cut:]
    if fold:
        first, second = second, first
    singles = [k for k in held_out if len(photos[k]) < 2] if fold == 0 else []  # searched in one fold only
    unknown = {k: photos[k] for k in first + singles}
    enrolled = {k: photos[k] for k in second}
    padding = {k: v for k, v in sorted(photos.items()) if is_calibration_identity(k)}
    return Plan(enrolled=enrolled, unknown=unknown, padding=padding)


def subject_name(identity: str) -> str:
    """A subject id the gallery accepts, from a manifest identity such as ``dlib:John_Salley``."""
    return identity.replace(":", "-").replace(" ", "_")


def enroll_first(gallery: Any, identity: str, photos: list[Path]) -> Path | None:
    """Enroll ``identity`` from its first photo that enrolls; return that photo (None when none did)."""
    subject = subject_name(identity)
    gallery.add_consent(subject, actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE,
                        evidence_ref="bench")  # fmt: skip
    for photo in photos:
        result = gallery.enroll(subject, [photo], actor="desk", purpose=PURPOSE)
        if result.enrolled:
            return photo
    return None


class Degrader:
    """Photos degraded as the layers of ``bench_robustness.py`` say (capped at 1024 px, the face box found first);
    one instance (one reference engine) serves every layer."""

    def __init__(self) -> None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_robustness", ROOT / "benchmarks" / "bench_robustness.py")
        assert spec is not None and spec.loader is not None
        self.robustness = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.robustness)
        from faceledger import Engine

        self.reference = Engine(upright="off")  # as bench_robustness sizes its faces

    def __call__(self, photo: Path, layer: str, index: int) -> Any:
        from faceledger import load_image

        image, box = self.robustness.capped_with_box(load_image(photo), self.reference)
        return self.robustness.degrade(image, box, layer, index)


def run_stage(gallery: Any, name: str, plan: Plan, enrolled_from: dict[str, Path], progress: bool,
              degrade: Degrader | None = None, layer: str = "clean") -> Stage:  # fmt: skip
    """Search every non-mated photo and every mated probe once (degraded when told); count, and check the audit
    entries."""
    stage = Stage(name)
    start = time.perf_counter()
    searches = [(p, None) for k in sorted(plan.unknown) for p in plan.unknown[k]]
    searches += [(p, subject_name(k)) for k in sorted(plan.enrolled) for p in plan.enrolled[k]
                 if enrolled_from.get(k) not in (None, p)]  # fmt: skip
    for i, (photo, mate) in enumerate(searches, 1):
        probe = photo if degrade is None else degrade(photo, layer, i)
        found = gallery.identify(probe, actor="bench", purpose=PURPOSE)
        basis = found.threshold_basis
        assert basis is not None, "a search without a threshold basis"
        if stage.basis and (basis.threshold != stage.threshold):
            raise AssertionError(f"the threshold changed within one stage: {stage.threshold} -> {basis.threshold}")
        stage.threshold, stage.basis, stage.subjects = basis.threshold, basis.details(), basis.subjects
        if mate is None:
            stage.nonmated_photos += 1
            stage.nonmated_faces += len(found.faces)
            stage.false_candidates += sum(1 for face in found.faces if face.candidates)
        elif found.faces:
            stage.mated += 1
            top = found.faces[0].candidates[:1]  # faces are ordered largest first
            if not top or top[0].subject != mate:
                stage.missed += 1
                stage.wrong_rank1 += bool(top)
        else:
            stage.mated += 1
            stage.missed += 1  # no face found: the mate was not returned
        if progress and i % 50 == 0:
            print(f"  {name}: {i}/{len(searches)} searches", file=sys.stderr)
    stage.seconds = time.perf_counter() - start
    # what the ledger says these searches ran at: one identify entry per search, each with the same basis
    entries = [e.data for e in gallery.audit_entries(action="identify")][-len(searches):]
    for entry in entries:
        recorded = entry["details"]["threshold_basis"]
        if abs(entry["threshold"] - stage.threshold) > 1e-9 or recorded["subjects"] != stage.subjects:
            raise AssertionError(f"audit entry {entry.get('seq')} records {entry['threshold']} at "
                                 f"{recorded['subjects']} subjects")  # fmt: skip
    stage.entries_checked = len(entries)
    return stage


def measure_fold(folder: Path, db: Path, fold: int, layers: tuple[str, ...] = (), progress: bool = True
                 ) -> dict[str, Any]:  # fmt: skip
    """Both stages of one fold on a new gallery at ``db``, then the larger gallery's searches degraded by each of
    ``layers``."""
    from faceledger.gallery import Gallery

    plan = make_plan(folder, fold)
    gallery = Gallery.init(db, actor="admin")
    try:
        enrolled_from: dict[str, Path] = {}
        for identity, photos in sorted(plan.enrolled.items()):
            photo = enroll_first(gallery, identity, photos)
            if photo is not None:
                enrolled_from[identity] = photo
        stages = [run_stage(gallery, f"fold {fold}: held-out only", plan, enrolled_from, progress)]
        padded = sum(enroll_first(gallery, k, v) is not None for k, v in sorted(plan.padding.items()))
        stages.append(run_stage(gallery, f"fold {fold}: with calibration half", plan, enrolled_from, progress))
        degrade = Degrader() if layers else None
        for layer in layers:
            stages.append(run_stage(gallery, f"fold {fold}: with calibration half, {layer}", plan, enrolled_from,
                                    progress, degrade, layer))  # fmt: skip
        return {
            "fold": fold,
            "model": gallery.model_id(),
            "held_out_enrolled": len(enrolled_from),
            "held_out_not_enrolled": len(plan.unknown),
            "calibration_half_enrolled": padded,
            "audit_verified": gallery.audit_verify().ok,
            "stages": [s.to_dict() for s in stages],
        }
    finally:
        gallery.close()


def pooled(stages: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Counts of several stages summed (each non-mated photo is searched once per fold it is not enrolled in)."""
    from faceledger.evaluate.metrics import clopper_pearson

    n, fp = sum(s["nonmated_faces"] for s in stages), sum(s["false_candidates"] for s in stages)
    mated, missed = sum(s["mated"] for s in stages), sum(s["missed"] for s in stages)
    return {
        "stage": name,
        "subjects": "-".join(str(v) for v in sorted({s["subjects"] for s in stages})),
        "thresholds": sorted(s["threshold"] for s in stages),
        "target_fpir": stages[0]["target_fpir"],
        "nonmated_photos": sum(s["nonmated_photos"] for s in stages),
        "nonmated_faces": n,
        "false_candidates": fp,
        "fpir": fp / n if n else None,
        "fpir_ci95": list(clopper_pearson(fp, n)) if n else None,
        "mated": mated,
        "missed": missed,
        "wrong_rank1": sum(s["wrong_rank1"] for s in stages),
        "fnir": missed / mated if mated else None,
    }


def measure(folder: Path, tmp: Path, layers: tuple[str, ...] = (), progress: bool = True) -> dict[str, Any]:
    """Both folds, each on a new gallery under ``tmp``; returns the report (JSON-ready)."""
    folds = [measure_fold(folder, tmp / f"fold{fold}.db", fold, layers, progress) for fold in (0, 1)]
    kinds = ("held-out only", "with calibration half", *(f"with calibration half, {layer}" for layer in layers))
    return {
        "faces": str(folder),
        "folds": folds,
        "pooled": [pooled([f["stages"][i] for f in folds], f"both folds: {kind}") for i, kind in enumerate(kinds)],
    }


def print_table(report: dict[str, Any]) -> None:
    """The report as a Markdown table."""
    for f in report["folds"]:
        print(f"fold {f['fold']}: model {f['model']}; held-out people enrolled {f['held_out_enrolled']}, not "
              f"enrolled {f['held_out_not_enrolled']}; calibration-half people added in stage 2: "
              f"{f['calibration_half_enrolled']}; audit chain verified: {f['audit_verified']}")  # fmt: skip
    print()
    print("| stage | subjects | threshold | target FPIR | FPIR the calibration expects | non-mated searches (photos) "
          "| with a candidate | FPIR measured (95 % CI) | mated searches | mate not at rank 1 (wrong subject) "
          "| FNIR measured | FNIR the calibration expects |")
    print("| --- " * 12 + "|")
    rows = [s for f in report["folds"] for s in f["stages"]] + report["pooled"]
    for s in rows:
        low, high = s["fpir_ci95"] or (0, 0)
        if "thresholds" in s:
            threshold, expected_fpir, expected_fnir = "-".join(f"{t:.4f}" for t in s["thresholds"]), "", ""
        else:
            threshold, expected_fpir = f"{s['threshold']:.4f}", f"{s['expected_fpir']:.4f}"
            expected_fnir = "n/a" if s["expected_fnir"] is None else f"{s['expected_fnir']:.3f}"
        print(f"| {s['stage']} | {s['subjects']} | {threshold} | {s['target_fpir']} | {expected_fpir} | "
              f"{s['nonmated_faces']} ({s['nonmated_photos']}) | {s['false_candidates']} | "
              f"{s['fpir']:.4f} ({low:.4f}-{high:.4f}) | {s['mated']} | {s['missed']} ({s['wrong_rank1']}) | "
              f"{s['fnir']:.3f} | {expected_fnir} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=None, help="face set folder (default: ../shared/data/faces)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here too")
    parser.add_argument("--layers", default="", help="also search the larger gallery with the photos degraded by "
                        "these layers of bench_robustness.py (comma-separated: blur,dark,cctv; or all)")  # fmt: skip
    args = parser.parse_args(argv)
    folder = args.faces or faces_dir()
    if not (folder / "manifest.csv").is_file():
        parser.error(f"{folder}: no manifest.csv (set FACELEDGER_FACES or --faces)")
    known = ("rot15", "rot30", "rot45", "rot90", "blur", "tiny24", "tiny40", "dark", "jpeg10", "cctv")
    layers = known if args.layers == "all" else tuple(x for x in args.layers.split(",") if x)
    if unknown_layers := [x for x in layers if x not in known]:
        parser.error(f"unknown layer(s) {', '.join(unknown_layers)}; choose from {', '.join(known)}")
    with tempfile.TemporaryDirectory() as tmp:
        report = measure(folder, Path(tmp), layers)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
