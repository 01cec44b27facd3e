"""On people the threshold was not calibrated on, searched through the gallery itself: an unknown face gets a
candidate no more often than the policy's FPIR at the gallery's size, and the ledger records the threshold each
search ran at (``benchmarks/bench_openset_gallery.py`` prints the same figures)."""

from __future__ import annotations

from pathlib import Path

from conftest import load_benchmark

bench = load_benchmark("bench_openset_gallery")


def test_the_plan_keeps_the_calibration_half_out_of_the_searches(faces_dir: Path) -> None:
    from faceledger.evaluate.splits import is_calibration_identity

    for fold in (0, 1):
        plan = bench.make_plan(faces_dir, fold)
        searched = set(plan.enrolled) | set(plan.unknown)
        assert searched and not any(is_calibration_identity(k) for k in searched)
        assert not set(plan.enrolled) & set(plan.unknown)
        assert plan.padding and all(is_calibration_identity(k) for k in plan.padding)
    # the folds swap the two halves: everyone with several photos is searched as unknown in one of them
    zero, one = bench.make_plan(faces_dir, 0), bench.make_plan(faces_dir, 1)
    assert set(zero.enrolled) <= set(one.unknown) and set(one.enrolled) <= set(zero.unknown)


def test_unknown_people_get_a_candidate_at_no_more_than_the_policy_fpir(faces_dir: Path, tmp_path: Path) -> None:
    report = bench.measure(faces_dir, tmp_path, progress=False)
    for fold in report["folds"]:
        assert fold["audit_verified"]
        small, large = fold["stages"]
        assert small["subjects"] >= 10 and large["subjects"] >= small["subjects"] + 30
        assert large["threshold"] > small["threshold"]  # the larger gallery runs at a higher threshold
        for stage in (small, large):
            assert stage["audit_entries_checked"] == stage["nonmated_photos"] + stage["mated"]
            assert stage["nonmated_faces"] >= 100 and stage["mated"] >= 100
            assert stage["fpir"] <= stage["target_fpir"], stage
            assert stage["fnir"] <= 0.05, stage  # the mates are still found
    for pooled in report["pooled"]:
        assert pooled["nonmated_faces"] >= 240
        assert pooled["fpir"] <= pooled["target_fpir"], pooled
