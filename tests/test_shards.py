"""The gallery split between shard processes: the same hits as one index, each shard only its subjects, and every
change by the parent or another process seen at the next search."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import GalleryLocation
from faceledger import Gallery
from faceledger.gallery import shards as sharding
from faceledger.gallery.index import Hit, SearchIndex
from faceledger.gallery.index_sync import AllowedSubjects, search_mask, sync_index
from faceledger.gallery.shards import ShardedIndex, ShardMask, merge, open_shards, shard_of

PURPOSE = "access-control"
pytestmark = pytest.mark.slow


def _unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _enroll_raw(db: str, key_file: str, subject: str, vectors: np.ndarray) -> None:
    """Enroll ``subject`` with ``vectors`` as templates, encrypted and on the ledger, as benchmarks/bench_search_scale
    fills a gallery (no images: the index does not care where a template came from)."""
    from faceledger.gallery.keys import encrypt_template, ensure_data_key
    from faceledger.ledger.actions import AuditAction
    from faceledger.ledger.records import Subject, TemplateRecord
    from faceledger.ledger.timeutil import to_text

    with Gallery.open(db, key_file=key_file) as g:
        ctx = g.context
        model, gallery, now = ctx.model_id(), ctx.policy.policy.galleries[0].name, to_text(ctx.now())
        with ctx.write() as tx:
            tx.add_subject(Subject(subject, gallery, now, "test"))
            key_id, key = ensure_data_key(ctx, tx, subject, now)
            for i, vector in enumerate(np.asarray(vectors, np.float32)):
                template_id = uuid.uuid4().hex
                nonce, ciphertext = encrypt_template(key, vector, subject=subject, template_id=template_id)
                digest = f"{uuid.uuid4().int:064x}"[:64]
                tx.add_template(
                    TemplateRecord(template_id, subject, key_id, model, 128, nonce, ciphertext, digest, i, 1.0, now)
                )
            ctx.record(tx, AuditAction.ENROLL, actor="test", purpose=PURPOSE, gallery=gallery, subjects=(subject,))
            tx.bump_data_version()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A gallery of 400 one-template subjects, 20 with three templates, and four that share one vector (ties)."""
    from conftest import load_benchmark

    folder = tmp_path_factory.mktemp("shards")
    db, key_file = str(folder / "g.db"), folder / "g.key"
    load_benchmark("bench_search_scale").fill(db, key_file, 400)
    rng = np.random.default_rng(7)
    for i in range(20):
        _enroll_raw(db, str(key_file), f"multi{i:02d}", _unit(rng, 3))
    twin = _unit(rng, 1)
    for name in ("tie-d", "tie-b", "tie-a", "tie-c"):
        _enroll_raw(db, str(key_file), name, twin)
    return db, key_file


def _whole(g: Gallery) -> SearchIndex:
    with g.context.store.read() as tx:
        return sync_index(g.context, tx)


@pytest.fixture
def sharded(big: tuple[str, Path]) -> Iterator[tuple[Gallery, SearchIndex, ShardedIndex]]:
    db, key_file = big
    with Gallery.open(db, key_file=key_file) as g:
        whole = _whole(g)
        shard_set = open_shards(g.context, 3)
        try:
            yield g, whole, shard_set
        finally:
            shard_set.close()


def _probes(whole: SearchIndex, rng: np.random.Generator, n: int) -> np.ndarray:
    """Probes near enrolled templates (noise added) and random ones."""
    rows = whole._matrix[rng.integers(0, len(whole), n // 2)]
    near = rows + 0.05 * rng.standard_normal(rows.shape).astype(np.float32)
    probes = np.concatenate([near, _unit(rng, n - n // 2)])
    return (probes / np.linalg.norm(probes, axis=1, keepdims=True)).astype(np.float32)


def test_shard_of_is_stable_and_spreads() -> None:
    assert shard_of("s00000001", 3) == shard_of("s00000001", 3)  # not Python's salted hash: the same in every process
    assert [shard_of(f"s{i}", 1) for i in range(5)] == [0] * 5
    counts = np.bincount([shard_of(f"s{i:08d}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 900


def test_sharded_search_equals_one_index(sharded: tuple[Gallery, SearchIndex, ShardedIndex]) -> None:
    g, whole, shard_set = sharded
    rng = np.random.default_rng(11)
    probes = _probes(whole, rng, 64)
    everyone = whole.subjects
    with g.context.store.read() as tx:
        shard_set.synced(tx)
    for k in (1, 5, 20):
        for min_similarity in (-np.inf, 0.3):
            expected = whole.search(probes, k, min_similarity=min_similarity)
            assert shard_set.search(probes, k, min_similarity=min_similarity) == expected
            assert min_similarity > -np.inf or all(len(row) == k for row in expected)
        for _ in range(3):
            allowed = set(rng.choice(everyone, size=len(everyone) // 3, replace=False).tolist())
            expected = whole.search(probes, k, allowed=allowed)
            assert all(h.subject in allowed for row in expected for h in row)
            assert shard_set.search(probes, k, allowed=allowed) == expected
            mask = shard_set.mask(allowed)
            assert isinstance(mask, ShardMask) and int(np.count_nonzero(mask)) == len(allowed)
            assert shard_set.search(probes, k, allowed=mask) == expected
            assert shard_set.search(probes, k, allowed=mask) == expected  # the set kept in the shards, not resent
    assert shard_set.search(probes, 5, allowed=set()) == [[] for _ in probes]
    assert shard_set.search(probes[:1], 1, allowed={"s00000042"})[0][0].subject == "s00000042"


def test_ties_are_ordered_by_subject_id(sharded: tuple[Gallery, SearchIndex, ShardedIndex]) -> None:
    """Four subjects with the same template: similarity descending, then subject id, however the shards split."""
    g, whole, shard_set = sharded
    twin = whole._matrix[[whole._row_of[t] for t in whole.template_ids if _subject_of(whole, t) == "tie-a"]]
    with g.context.store.read() as tx:
        shard_set.synced(tx)
    assert len({shard_of(s, 3) for s in ("tie-a", "tie-b", "tie-c", "tie-d")}) > 1  # the tie spans shards
    for k in (1, 2, 3, 4, 6):
        got = shard_set.search(twin, k)[0]
        assert [h.subject for h in got][: min(k, 4)] == ["tie-a", "tie-b", "tie-c", "tie-d"][:k]
        assert got == whole.search(twin, k)[0]
        assert len({h.similarity for h in got[:4]}) == 1


def _subject_of(index: SearchIndex, template_id: str) -> str:
    return index._subjects[int(index._codes[index._row_of[template_id]])]


def test_merge_and_index_tie_order() -> None:
    a = [[Hit("b", 0.9), Hit("d", 0.5)]]
    b = [[Hit("a", 0.9), Hit("c", 0.7)]]
    assert merge([a, b], 3) == [[Hit("a", 0.9), Hit("b", 0.9), Hit("c", 0.7)]]
    index = SearchIndex(4)
    vector = np.array([[1.0, 0, 0, 0]], np.float32)
    names = [f"t{i}" for i in range(9, -1, -1)]  # added in reverse order
    index.update(remove=(), add_ids=names, add_subjects=names, add_vectors=np.repeat(vector, 10, axis=0))
    assert [h.subject for h in index.search(vector, 3)[0]] == ["t0", "t1", "t2"]


def test_each_shard_holds_only_its_subjects(sharded: tuple[Gallery, SearchIndex, ShardedIndex]) -> None:
    g, whole, shard_set = sharded
    with g.context.store.read() as tx:
        shard_set.synced(tx)
    stats = shard_set.stats()
    assert len({s["pid"] for s in stats}) == 3
    ids = [set(s["templates"]) for s in stats]
    assert sum(len(part) for part in ids) == len(whole) == len(set().union(*ids)) == len(shard_set)
    assert set().union(*ids) == whole.template_ids
    for i, s in enumerate(stats):
        assert s["subjects"] and all(shard_of(subject, 3) == i for subject in s["subjects"])
        assert set(s["data_keys"]) <= set(s["subjects"])  # no other shard's subject key is unwrapped here
        assert all(shard_of(_subject_of(whole, t), 3) == i for t in s["templates"])


def test_changes_are_seen_by_every_shard_at_the_next_search(big: tuple[str, Path], tmp_path: Path) -> None:
    """An erasure by the parent and an enrollment by another process: every shard has them at its next search."""
    import shutil

    db = str(tmp_path / "copy.db")
    shutil.copy(big[0], db)
    key_file = big[1]
    rng = np.random.default_rng(5)
    with Gallery.open(db, key_file=key_file) as g:
        whole = _whole(g)
        shard_set = open_shards(g.context, 2)
        try:
            probes = _probes(whole, rng, 16)
            with g.context.store.read() as tx:
                shard_set.synced(tx)
            before = shard_set.search(probes, 5)
            assert before == whole.search(probes, 5)
            victim = before[0][0].subject
            g.erase(victim, actor="test", purpose=PURPOSE)
            newcomer = _unit(rng, 1)
            child = multiprocessing.get_context("spawn").Process(
                target=_enroll_raw, args=(db, str(key_file), "newcomer", newcomer)
            )
            child.start()
            child.join(120)
            assert child.exitcode == 0
            whole = _whole(g)
            assert victim not in whole.subjects and "newcomer" in whole.subjects
            with g.context.write() as tx:  # what a search does: the version of its own transaction
                shard_set.synced(tx)
                after = shard_set.search(probes, 5)
                top = shard_set.search(newcomer, 1)[0]
            assert after == whole.search(probes, 5)
            assert all(h.subject != victim for row in after for h in row)
            assert top[0].subject == "newcomer" and top[0].similarity == pytest.approx(1.0, abs=1e-5)
            assert sum(len(s["templates"]) for s in shard_set.stats()) == len(whole)
            # a shard asked for another state than the one it sees refuses rather than answer for it
            shard_set.data_version = (shard_set.data_version or 0) - 1
            with pytest.raises(sharding.ShardVersionError):
                shard_set.search(probes, 5)
        finally:
            shard_set.close()


def test_switched_on_by_the_environment(big: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """``FACELEDGER_SHARDS=2``: sync_index gives the shard set, and a search's mask and hits are as in-process."""
    db, key_file = big
    with Gallery.open(db, key_file=key_file) as g:
        whole = _whole(g)
    monkeypatch.setenv(sharding.SHARDS_ENV, "2")
    rng = np.random.default_rng(3)
    probes = _probes(whole, rng, 8)
    allowed = frozenset(rng.choice(whole.subjects, size=100, replace=False).tolist())
    with Gallery.open(db, key_file=key_file) as g:
        try:
            with g.context.write() as tx:
                index = sync_index(g.context, tx)
                assert isinstance(index, ShardedIndex) and index.shards == 2 and g._index is index
                entry = AllowedSubjects(("0", tx.data_version()), allowed, None)
                mask = search_mask(index, entry)
                assert search_mask(index, entry) is mask  # cached until the data change
                assert int(np.count_nonzero(mask)) == 100
                assert index.search(probes, 5, allowed=mask) == whole.search(probes, 5, allowed=allowed)
            with g.context.store.read() as tx:
                assert sync_index(g.context, tx) is index
        finally:
            index.close()


@pytest.mark.shared_data
def test_identify_and_verify_through_shards_as_in_process(
    faces_dir: Path, gallery_location: GalleryLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real photos, the real search path: the same candidates, similarities and threshold with two shards as in one
    process; the parent writes the ledger. On SQLite, then on PostgreSQL (the shards open the server's database)."""
    from faceledger import Engine
    from faceledger.ledger.actions import AuditAction

    root = faces_dir / "face_api_js" / "examples" / "images"
    people = ("amy", "bernadette", "howard", "leonard", "penny", "raj")
    db, key_file = gallery_location.location, gallery_location.key_file
    engine = Engine(threads=1)
    with Gallery.init(db, key_file=key_file, actor="admin", engine=engine) as g:
        for who in people:
            g.add_consent(who, actor="desk", collected_by="desk", legal_basis="explicit consent", purpose=PURPOSE,
                          evidence_ref=f"form-{who}")  # fmt: skip
            g.enroll(who, [str(root / who / f"{who}1.png")], actor="desk", purpose=PURPOSE)
    probes = [str(root / "bbt1.jpg"), *(str(root / who / f"{who}2.png") for who in people[:3])]

    def searched(g: Gallery) -> list[object]:
        out: list[object] = []
        for probe in probes:
            found = g.identify(probe, actor="officer", purpose=PURPOSE, top_k=3)
            faces = [[(c.subject, c.similarity, c.rank) for c in face.candidates] for face in found.faces]
            out.append((found.threshold, faces))
        check = g.verify_subject("amy", str(root / "amy" / "amy2.png"), actor="officer", purpose=PURPOSE)
        out.append((check.similarity, check.match, check.threshold))
        return out

    with Gallery.open(db, key_file=key_file, engine=engine) as g:
        expected = searched(g)
    monkeypatch.setenv(sharding.SHARDS_ENV, "2")
    with Gallery.open(db, key_file=key_file, engine=engine) as g:
        try:
            got = searched(g)
            assert isinstance(g._index, ShardedIndex)
            stats = g._index.stats()
            assert sorted(s for part in stats for s in part["subjects"]) == sorted(people)
            with g.context.store.read() as tx:
                searches = tx.audit_entries(action=AuditAction.IDENTIFY.value)
        finally:
            if isinstance(g._index, ShardedIndex):
                g._index.close()
    assert got == expected
    assert any(face for _, faces in expected[:-1] for face in faces)  # someone was found
    assert len(searches) == 2 * len(probes)  # both runs' searches on the ledger, written by the parent


def test_a_bad_row_is_left_out_by_its_shard_and_reported(big: tuple[str, Path], tmp_path: Path) -> None:
    """A template that no longer decrypts is left out by the shard that owns it, and the parent's ``excluded``
    (readiness, metrics) names it after the next search; every other subject is still searched."""
    import shutil
    import sqlite3

    db = str(tmp_path / "bad.db")
    shutil.copy(big[0], db)
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE templates SET ciphertext = zeroblob(528) WHERE subject_id = 's00000003'")
    with Gallery.open(db, key_file=big[1]) as g:
        shard_set = open_shards(g.context, 2)
        try:
            with g.context.store.read() as tx:
                shard_set.synced(tx)
            probes = _unit(np.random.default_rng(9), 4)
            hits = shard_set.search(probes, 5)
            assert [s for s, _ in g.context.excluded.values()] == ["s00000003"]
            stats = shard_set.stats()
            assert all("s00000003" not in s["subjects"] for s in stats)
            assert sum(len(s["subjects"]) for s in stats) == 400 + 20 + 4 - 1
            assert all(len(row) == 5 for row in hits)
        finally:
            shard_set.close()
