"""The exact search index against a brute-force reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import GalleryLocation, raw_sql_session
from faceledger.gallery.index import SearchIndex


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(12))
def test_search_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 300)), 16
    vectors = _unit(rng, n, d)
    subjects = [f"s{int(x)}" for x in rng.integers(0, max(1, n // 3), n)]
    index = SearchIndex(d)
    index.update(remove=(), add_ids=[str(i) for i in range(n)], add_subjects=subjects, add_vectors=vectors)
    removed = {str(i) for i in rng.choice(n, size=n // 4, replace=False)}
    extra = _unit(rng, 5, d)
    index.update(remove=removed, add_ids=[f"x{i}" for i in range(5)], add_subjects=["new"] * 5, add_vectors=extra)
    kept = [(subjects[i], vectors[i]) for i in range(n) if str(i) not in removed] + [("new", e) for e in extra]
    assert len(index) == len(kept)
    allowed = {s for s, _ in kept if rng.random() < 0.7}
    queries = _unit(rng, 3, d)
    k, threshold = int(rng.integers(1, 6)), float(rng.uniform(-0.3, 0.3))
    got = index.search(queries, k, allowed=allowed, min_similarity=threshold)
    for q, hits in zip(queries, got, strict=True):
        best: dict[str, float] = {}
        for subject, vector in kept:
            if subject in allowed:
                best[subject] = max(best.get(subject, -2.0), float(q @ vector))
        expected = [s for s in sorted(best.values(), reverse=True)[:k] if s >= threshold + 1e-5]
        scores = [h.similarity for h in hits]
        assert np.allclose(scores[: len(expected)], expected, atol=1e-5)
        assert len(scores) - len(expected) in (0, 1)  # a score within float error of the threshold
        assert len({h.subject for h in hits}) == len(hits)
        for hit in hits:
            assert abs(best[hit.subject] - hit.similarity) < 1e-5


def test_empty_index_and_removal_of_everything() -> None:
    index = SearchIndex(4)
    assert index.search(np.ones((2, 4), np.float32), 3) == [[], []]
    index.update(remove=(), add_ids=["a"], add_subjects=["x"], add_vectors=np.eye(4, dtype=np.float32)[:1])
    assert index.search(np.eye(4, dtype=np.float32)[:1], 3)[0][0].subject == "x"
    index.update(remove={"a"}, add_ids=[], add_subjects=[], add_vectors=np.zeros((0, 4), np.float32))
    assert len(index) == 0 and index.search(np.ones((1, 4), np.float32), 3) == [[]]
    with pytest.raises(ValueError, match="same length"):
        index.update(remove=(), add_ids=["a", "b"], add_subjects=["x"], add_vectors=np.zeros((2, 4), np.float32))


def test_a_large_gallery_loads_in_chunks_to_the_same_index(
    gallery_location: GalleryLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index is built from the store a chunk at a time (bounded memory at national scale): same result as in
    one go, and no unwrapped subject key is left cached by the load."""
    from conftest import load_benchmark
    from faceledger import Gallery
    from faceledger.gallery import index_sync

    bench = load_benchmark("bench_search_scale")
    db, key_file = gallery_location.location, gallery_location.key_file
    bench.fill(db, key_file, 50)
    # two bad rows: a changed ciphertext, a key row gone (foreign keys off for the delete, as an administrator can)
    zeros = "decode(repeat('00', 528), 'hex')" if gallery_location.postgres else "zeroblob(528)"
    gallery_location.sql(f"UPDATE templates SET ciphertext = {zeros} WHERE subject_id = 's00000003'")
    keys_off = "SET session_replication_role = replica" if gallery_location.postgres else "PRAGMA foreign_keys = OFF"
    raw_sql_session(db, keys_off, "DELETE FROM subject_keys WHERE subject_id = 's00000009'")
    probes = np.random.default_rng(3).standard_normal((4, 128)).astype(np.float32)
    found = []
    for chunk in (1000, 7):
        monkeypatch.setattr(index_sync, "SYNC_CHUNK", chunk)
        with Gallery.open(db, key_file=key_file) as g, g.context.store.read() as tx:
            index = index_sync.sync_index(g.context, tx)
            assert len(index) == 48 and "s00000003" not in index.subjects and "s00000009" not in index.subjects
            assert sorted(s for s, _ in g.context.excluded.values()) == ["s00000003", "s00000009"]
            found.append(index.search(probes, 5))
            assert g.context.data_keys == {} if chunk == 7 else len(g.context.data_keys) == 49  # s00000003: key fine
    assert found[0] == found[1]


@pytest.mark.parametrize("seed", range(6))
def test_a_mask_brought_forward_equals_one_made_afresh(seed: int) -> None:
    """A mask made earlier, given the subjects whose place changed, equals a new mask after the index gained
    subjects, lost templates and the allowed set changed."""
    rng = np.random.default_rng(seed)
    index = SearchIndex(4)
    names = [f"s{i}" for i in range(40)]
    index.update(remove=(), add_ids=names, add_subjects=names, add_vectors=_unit(rng, 40, 4))
    before = {s for s in names if rng.random() < 0.5}
    base = index.mask(before)
    later = [f"t{i}" for i in range(int(rng.integers(0, 10)))]
    index.update(remove=set(names[:5]), add_ids=later, add_subjects=later, add_vectors=_unit(rng, len(later), 4))
    changed = {s for s in names + later if rng.random() < 0.3}
    after = (before - changed) | {s for s in changed if rng.random() < 0.5} | {s for s in later if rng.random() < 0.5}
    recheck = changed & (before ^ after)
    assert (index.mask(after, base=base, recheck=recheck) == index.mask(after)).all()
    if before ^ after - set(later):  # without the subjects that changed, the old places show through
        assert not (index.mask(after, base=base) == index.mask(after)).all()


def test_the_matrix_grows_by_half_its_size_at_most_by_the_growth_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from faceledger.gallery import index as index_module

    monkeypatch.setattr(index_module, "GROWTH_ROWS", 100)
    index = SearchIndex(4)
    rng = np.random.default_rng(0)
    capacities = []
    for i in range(60):
        ids = [f"{i}-{j}" for j in range(50)]
        index.update(remove=(), add_ids=ids, add_subjects=ids, add_vectors=_unit(rng, 50, 4))
        capacities.append(len(index._matrix))
    steps = [b - a for a, b in itertools.pairwise(capacities) if b > a]
    assert len(index) == 3000 and capacities[-1] >= 3000
    assert max(steps) <= 100 + 16 and steps[0] < 100  # half the size while small, the cap once large


@pytest.mark.parametrize("seed", range(6))
def test_a_subject_set_changed_many_times_equals_the_plain_set(seed: int) -> None:
    from faceledger.gallery.index_sync import SubjectSet

    rng = np.random.default_rng(seed)
    universe = [f"s{i}" for i in range(300)]
    plain = {s for s in universe if rng.random() < 0.5}
    layered = SubjectSet(frozenset(plain))
    for _ in range(40):
        named = {s for s in universe if rng.random() < 0.05}
        joined = {s for s in sorted(named) if rng.random() < 0.5}
        earlier, before = layered, set(plain)
        layered, plain = layered.changed(joined, named - joined), (plain - named) | joined
        assert layered == plain and len(layered) == len(plain) and sorted(layered) == sorted(plain)
        assert all((s in layered) == (s in plain) for s in universe)
        assert earlier == before  # the set it was made from is left as it was (other searches may hold it)
