"""Pure metrics: hand-computable cases, brute force over all pairs, and interval coverage."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceledger.evaluate import metrics as m
from faceledger.evaluate.fairness import demographic_differentials
from faceledger.evaluate.splits import is_calibration_identity

# --------------------------------------------------------------------------------------------- brute force


def brute_auc(gen: np.ndarray, imp: np.ndarray) -> float:
    total = 0.0
    for g in gen:
        for i in imp:
            total += 1.0 if g > i else 0.5 if g == i else 0.0
    return total / (len(gen) * len(imp))


def brute_tar_at_fmr(gen: np.ndarray, imp: np.ndarray, target: float) -> float:
    """Highest TAR over every candidate threshold (each score value and +inf) whose FMR <= target."""
    best = 0.0
    for t in [*np.concatenate([gen, imp]).tolist(), math.inf]:
        if np.mean(imp >= t) <= target + 1e-12:
            best = max(best, float(np.mean(gen >= t)))
    return best


def accuracy_at(gen: np.ndarray, imp: np.ndarray, t: float) -> float:
    return (np.count_nonzero(gen >= t) + np.count_nonzero(imp < t)) / (gen.size + imp.size)


# --------------------------------------------------------------------------------------------- hand cases


def test_roc_hand_case() -> None:
    gen = np.array([0.9, 0.8, 0.4])
    imp = np.array([0.7, 0.3, 0.2, 0.1])
    roc = m.roc_curve(gen, imp)
    assert roc.thresholds[0] == math.inf
    np.testing.assert_allclose(roc.thresholds[1:], [0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(roc.tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])
    np.testing.assert_allclose(roc.fmr, [0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    # 11 of 12 genuine/impostor orderings are correct (0.4 < 0.7 is the one miss)
    assert m.auc(roc) == pytest.approx(11 / 12)
    acc, thr = m.best_accuracy(roc)
    # threshold 0.8: 2 genuine accepted + 4 impostors rejected = 6/7; 0.4 gives 3 + 3 = 6/7 too
    assert acc == pytest.approx(6 / 7)
    assert thr in (0.8, 0.4)


def test_eer_hand_case() -> None:
    gen = np.array([2.0, 3.0, 4.0, 5.0])
    imp = np.array([0.0, 1.0, 2.5, 3.5])
    roc = m.roc_curve(gen, imp)
    rate, thr = m.eer(roc)
    # at t=3.0: FMR = 1/4 (3.5 accepted), FNMR = 1/4 (2.0 rejected): the curves cross exactly there
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(3.0)


def test_perfect_separation() -> None:
    gen = np.linspace(0.6, 0.9, 50)
    imp = np.linspace(-0.2, 0.3, 5000)
    roc = m.roc_curve(gen, imp)
    assert m.auc(roc) == 1.0
    assert m.eer(roc)[0] == 0.0
    out = m.tar_at_fmr(gen, imp, (1e-1, 1e-2, 1e-3, 1e-4))
    # 5000 impostor pairs measure rates down to 10 / 5000 = 2e-3
    assert [e["supported"] for e in out] == [True, True, False, False]
    assert all(e["tar"] == 1.0 for e in out[:2])
    assert out[2]["reason"].startswith("not supported: 5000 impostor pairs")
    assert "10000" in out[2]["reason"]


def test_threshold_at_fmr_counts_and_precision() -> None:
    imp = np.arange(1000, dtype=np.float32) / 1000  # 0.000 .. 0.999
    thr, fm = m.threshold_at_fmr(imp, 0.01)
    assert fm == 10
    assert np.count_nonzero(imp >= thr) == 10
    assert np.count_nonzero(imp >= np.float32(thr)) == 10  # survives a cast to float32
    assert float(imp[989]) < thr <= float(imp[990])
    # ties at the cut are all rejected: never more than the target
    tied = np.array([0.1] * 5 + [0.5] * 10, dtype=np.float64)
    thr, fm = m.threshold_at_fmr(tied, 0.5)
    assert fm == 0 and thr > 0.5


def test_support_rule() -> None:
    assert m.supports_rate(1000, 1e-2)
    assert not m.supports_rate(999, 1e-2)
    assert m.supports_rate(100_000, 1e-4)


# --------------------------------------------------------------------------------------------- brute force


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=25),
    st.lists(st.integers(0, 20), min_size=1, max_size=60),
    st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.5]),
)
def test_against_brute_force(gen_i: list[int], imp_i: list[int], target: float) -> None:
    gen = np.array(gen_i, dtype=np.float64) / 20
    imp = np.array(imp_i, dtype=np.float64) / 20
    roc = m.roc_curve(gen, imp)
    assert m.auc(roc) == pytest.approx(brute_auc(gen, imp), abs=1e-12)
    thr, fm = m.threshold_at_fmr(imp, target)
    assert fm / imp.size <= target + 1e-12
    assert fm == np.count_nonzero(imp >= thr)
    assert float(np.mean(gen >= thr)) == pytest.approx(brute_tar_at_fmr(gen, imp, target))
    rate, _ = m.eer(roc)
    assert 0.0 <= rate <= 1.0
    acc, t = m.best_accuracy(roc)
    brute = max(accuracy_at(gen, imp, u) for u in np.concatenate([gen, imp]))
    assert acc == pytest.approx(brute)
    assert accuracy_at(gen, imp, t) == pytest.approx(acc)


def test_tar_is_best_roc_point_within_target() -> None:
    rng = np.random.default_rng(0)
    gen = rng.normal(0.6, 0.1, 300).astype(np.float32)
    imp = rng.normal(0.1, 0.1, 20000).astype(np.float32)
    roc = m.roc_curve(gen, imp)
    for entry in m.tar_at_fmr(gen, imp, (1e-1, 1e-2, 1e-3)):
        ok = roc.fmr <= entry["fmr_target"]
        assert entry["tar"] == pytest.approx(float(roc.tar[ok].max()))


# --------------------------------------------------------------------------------------------- intervals


def test_clopper_pearson_closed_forms() -> None:
    n, alpha = 200, 0.05
    low, high = m.clopper_pearson(0, n)
    assert low == 0.0
    assert high == pytest.approx(1 - (alpha / 2) ** (1 / n), rel=1e-9)
    low, high = m.clopper_pearson(n, n)
    assert high == 1.0
    assert low == pytest.approx((alpha / 2) ** (1 / n), rel=1e-9)


def test_clopper_pearson_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(1, 10), (5, 20), (3, 1000), (50, 100), (12, 123_481)]:
        low, high = m.clopper_pearson(k, n, 0.95)
        assert low == pytest.approx(stats.beta.ppf(0.025, k, n - k + 1), rel=1e-7)
        assert high == pytest.approx(stats.beta.ppf(0.975, k + 1, n - k), rel=1e-7)


def test_binomial_cdf_small_case() -> None:
    # P(X <= 1) for X ~ Bin(3, 0.5) is (1 + 3) / 8
    assert m.binomial_cdf(1, 3, 0.5) == pytest.approx(0.5)
    assert m.binomial_cdf(0, 4, 0.25) == pytest.approx(0.75**4)


def test_calibration_upper_rule_is_stricter() -> None:
    rng = np.random.default_rng(1)
    imp = rng.normal(0, 1, 20000)
    point = m.calibrate_threshold(imp, 1e-2)
    upper = m.calibrate_threshold(imp, 1e-2, rule="upper")
    assert point.false_matches <= 200 and point.fmr_ci[0] <= point.fmr <= point.fmr_ci[1]
    assert upper.threshold > point.threshold
    assert upper.fmr_ci[1] <= 1e-2
    few = m.calibrate_threshold(imp[:100], 1e-3, rule="upper")
    assert not few.supported and "even with no false match" in (few.reason or "")


def test_calibration_holds_out_of_sample() -> None:
    """A threshold calibrated on one half keeps the FMR it promised on held-out impostor pairs."""
    rng = np.random.default_rng(7)
    trials = 40
    # the true FMR of any threshold, from a very large sample of the same heavy-tailed distribution
    population = np.sort(rng.standard_t(df=5, size=4_000_000))
    covered = consistent = 0
    for _ in range(trials):
        imp = rng.standard_t(df=5, size=40000)
        cal, held = imp[:20000], imp[20000:]
        c = m.calibrate_threshold(cal, 1e-3)
        assert c.supported and c.false_matches <= 20
        # held-out FMR, with its own interval, overlaps the interval stated at calibration
        held_fm = int(np.count_nonzero(held >= c.threshold))
        lo, hi = m.clopper_pearson(held_fm, held.size)
        consistent += int(lo <= c.fmr_ci[1] and hi >= c.fmr_ci[0])
        true_fmr = 1 - np.searchsorted(population, c.threshold) / population.size
        covered += int(c.fmr_ci[0] <= true_fmr <= c.fmr_ci[1])
    assert consistent >= trials - 2
    assert covered >= int(0.85 * trials)


def test_calibration_curve_shape() -> None:
    rng = np.random.default_rng(3)
    gen = rng.normal(0.6, 0.1, 500)
    imp = rng.normal(0.1, 0.1, 50000)
    curve = m.calibration_curve(gen, imp)
    t = np.array(curve["thresholds"])
    f = np.array(curve["fmr"])
    assert np.all(np.diff(t) > 0)
    assert np.all(np.diff(f) <= 0)
    assert np.all(np.diff(curve["fnmr"]) >= 0)
    assert f[-1] <= 1 / imp.size and f[0] <= 0.5
    np.testing.assert_allclose(f, [np.mean(imp >= x) for x in t])


# --------------------------------------------------------------------------------------------- identification


def test_closed_set_ranks() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.2],  # mate 0 best -> rank 1
            [0.5, 0.4, 0.6],  # mate 1, two above -> rank 3
            [0.3, 0.2, 0.31],  # mate 0, one above -> rank 2
        ]
    )
    res = m.closed_set_identification(scores, [0, 1, 0])
    assert res.ranks.tolist() == [1, 3, 2]
    assert res.rank_rate(1) == pytest.approx(1 / 3)
    assert res.rank_rate(5) == 1.0


def test_open_set_fnir_fpir() -> None:
    rng = np.random.default_rng(5)
    gallery = 20
    mated = rng.uniform(0, 0.4, (50, gallery))
    mate = rng.integers(0, gallery, 50)
    mated[np.arange(50), mate] = rng.uniform(0.3, 1.0, 50)
    nonmated = rng.uniform(0, 0.5, (200, gallery))
    scores = np.vstack([mated, nonmated])
    mates = np.concatenate([mate, -np.ones(200, dtype=int)])
    out = m.fnir_at_fpir(scores, mates, targets=(0.1, 0.01), threshold=0.45)
    assert out["mated_searches"] == 50 and out["non_mated_searches"] == 200
    p10, p01 = out["fnir_at_fpir"]
    assert p10["supported"] and not p01["supported"]
    t = p10["threshold"]
    top_non = nonmated.max(axis=1)
    assert p10["fpir"] == pytest.approx(np.mean(top_non >= t)) and p10["fpir"] <= 0.1
    mate_scores = mated[np.arange(50), mate]
    ok = (mate_scores >= mated.max(axis=1)) & (mate_scores >= t)
    assert p10["fnir"] == pytest.approx(1 - ok.mean())
    assert out["at_threshold"]["fpir"] == pytest.approx(np.mean(top_non >= 0.45))


def test_detection_counts() -> None:
    res = m.detection_metrics([1, 2, 0, 5, -1], [1, 3, 1, 3, 4])
    assert res.images == 4
    assert res.expected_faces == 8
    assert res.found == 1 + 2 + 0 + 3
    assert res.false_detections == 1 + 1
    assert res.missed_faces == 2
    assert res.exact_count_images == 1
    assert res.recall == pytest.approx(6 / 8)


# --------------------------------------------------------------------------------------------- fairness


def test_demographic_differentials_brute_force() -> None:
    rng = np.random.default_rng(11)
    groups = ["a", "b", "c"]
    n_img = 240
    ident = np.arange(n_img) // 4
    img_group = rng.permutation(np.arange(n_img // 4) % 3).repeat(4)  # an identity's images share its group
    img_group[5] = -1  # one image without a label
    emb = rng.normal(size=(n_img, 8)) + 1.5 * rng.normal(size=(n_img // 4, 8)).repeat(4, axis=0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[img_group == 2] += 0.5  # group "c": impostors look more alike
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    iu = np.triu_indices(n_img, 1)
    same = ident[iu[0]] == ident[iu[1]]
    pair_groups = np.stack([img_group[iu[0]], img_group[iu[1]]], axis=1)
    gen_s, imp_s = sim[iu][same], sim[iu][~same]
    gen_g, imp_g = pair_groups[same], pair_groups[~same]
    thr = 0.6
    rep = demographic_differentials(gen_s, gen_g, imp_s, imp_g, groups, thr, max_ratio=2.0)
    for gi, entry in enumerate(rep["groups"]):
        imp_in = imp_s[(imp_g[:, 0] == gi) & (imp_g[:, 1] == gi)]
        gen_in = gen_s[(gen_g[:, 0] == gi) & (gen_g[:, 1] == gi)]
        assert entry["impostor_pairs"] == imp_in.size
        assert entry["fmr"] == pytest.approx(np.mean(imp_in >= thr))
        assert entry["fnmr"] == pytest.approx(np.mean(gen_in < thr))
    for a in range(3):
        for b in range(3):
            cell = [
                s
                for s, (x, y) in zip(imp_s.tolist(), imp_g.tolist(), strict=True)
                if {x, y} == {a, b} and min(x, y) >= 0
            ]
            assert rep["cross_group_fmr"]["impostor_pairs"][a][b] == len(cell)
            assert rep["cross_group_fmr"]["fmr"][a][b] == pytest.approx(np.mean(np.array(cell) >= thr))
    entries = rep["groups"]
    assert all(e["fmr_comparable"] for e in entries), [e["notes"] for e in entries]
    best = min(e["fmr"] for e in entries)
    assert best > 0 and rep["best_group"]["fmr"] in ("a", "b")
    for e in entries:
        assert e["fmr_ratio_to_best"] == pytest.approx(e["fmr"] / best)
    assert entries[2]["fmr_ratio_to_best"] > 2.0
    assert any("'c'" in w and "FMR" in w for w in rep["warnings"])


def test_differentials_need_enough_pairs_and_bound_zero_best() -> None:
    # two groups of 1000 impostor pairs; overall FMR 1% -> each group needs 1000 pairs to be compared
    imp_g = np.array([(0, 0)] * 1000 + [(1, 1)] * 1000)
    gen_g = np.array([(0, 0)] * 50 + [(1, 1)] * 50)
    gen = np.full(100, 0.9)
    equal = np.r_[np.full(10, 0.8), np.zeros(990), np.full(10, 0.8), np.zeros(990)]
    rep = demographic_differentials(gen, gen_g, equal, imp_g, ["x", "y"], threshold=0.5)
    assert rep["warnings"] == []
    assert [g["fmr_ratio_to_best"] for g in rep["groups"]] == [1.0, 1.0]
    assert rep["overall_fmr"] == pytest.approx(0.01)
    # all false matches in group y: x has none, so y's ratio uses x's upper bound and is a lower bound
    skewed = np.r_[np.zeros(1000), np.full(25, 0.8), np.zeros(975)]
    rep = demographic_differentials(gen, gen_g, skewed, imp_g, ["x", "y"], threshold=0.5)
    y = rep["groups"][1]
    upper = m.clopper_pearson(0, 1000)[1]
    assert y["fmr_ratio_is_lower_bound"] and y["fmr_ratio_to_best"] == pytest.approx(0.025 / upper)
    assert any("'y'" in w and "at least" in w for w in rep["warnings"])
    # a tiny group is reported but never compared (and never chosen as the best)
    tiny_g = np.r_[imp_g, [(2, 2)] * 5]
    tiny = np.r_[skewed, np.zeros(5)]
    rep = demographic_differentials(gen, gen_g, tiny, tiny_g, ["x", "y", "z"], threshold=0.5)
    z = rep["groups"][2]
    assert z["impostor_pairs"] == 5 and z["fmr"] == 0.0 and not z["fmr_comparable"]
    assert z["fmr_ratio_to_best"] is None and any("too few" in n for n in z["notes"])
    assert rep["best_group"]["fmr"] == "x"


def test_split_rule() -> None:
    assert is_calibration_identity("orl:s1") == (hashlib.sha256(b"orl:s1").hexdigest()[0] in "01234567")
    share = np.mean([is_calibration_identity(f"person{i}") for i in range(2000)])
    assert 0.45 < share < 0.55
