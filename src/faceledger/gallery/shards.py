"""Exact 1:N search over a gallery split between shard processes, for galleries too large for one process's memory.

Switched on by ``FACELEDGER_SHARDS=N`` (N >= 1 shard processes; unset or 0: the templates are searched in the
process itself, as before). Then ``ctx.index`` is a :class:`ShardedIndex` and every search of the gallery
(identification, verification, video, thresholds) goes through it unchanged: :func:`~.index_sync.sync_index`
returns it. Each process that searches (a ``serve`` worker, ``watch``) has its own shard processes.

- **Who holds what.** Subject ``s`` belongs to shard ``shard_of(s, N)``: the first 8 bytes of SHA-256 of its id,
  big-endian, mod N (stable across processes, hosts and runs, unlike Python's ``hash``). All of a subject's
  templates are in one shard, so a subject's score (its best template) is computed whole in one shard.
- **Each shard opens the store itself** (the same SQLite file or PostgreSQL URL, and master key, as the parent),
  unwraps only its subjects' keys and decrypts only their templates, into its own :class:`~.index.SearchIndex`:
  templates stay encrypted at rest and are decrypted only in the memory of the process that searches them. Shards
  only read the store; the parent alone writes (the ledger included).
- **Sync.** Before every search each shard brings its index to the store's data version with
  :func:`~.index_sync.sync_index` restricted to its subjects (``owns``): enrollments and erasures made by the
  parent or by any other process are seen at the next search. The parent sends the data version its transaction
  saw; a shard that finds another one refuses (:class:`ShardVersionError`) instead of answering for another state
  of the gallery. Within a search's write transaction the two are equal: writers are serialised (SQLite's
  ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), so nothing commits between the parent's read and the shards'.
- **Who may be searched.** The parent computes the allowed subjects in its own transaction (consent, purpose,
  gallery: :func:`~.index_sync.allowed_subjects`) and sends each shard its part of that set once per set (a
  :class:`ShardMask` names it by a token; shards cache it), not with every search. Each shard computing the set
  itself from the store would read consents in another transaction than the parent's and could disagree with the
  threshold and the ledger entry the parent writes; sending the parent's set keeps them consistent.
- **Merge, exact.** Each shard returns its top ``k`` per probe; the global top ``k`` is among their union, since
  every subject is in exactly one shard. The order is explicit: similarity descending, then subject id ascending,
  in each shard (:meth:`SearchIndex.search`, which scores its candidates so that a similarity does not depend on
  the rows beside it) and in the merge (:func:`merge`). So the result is that of :meth:`SearchIndex.search` on
  one index holding every template: the same subjects, in the same order, with the same float32 similarities.

Memory: each shard holds ``1/N`` of the matrix (512 bytes a 128-d template, plus about 0.5 KB of bookkeeping); the
parent holds none. ``benchmarks/bench_shards.py`` measures latency and memory; BENCHMARKS.md says at what size
sharding begins to pay.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from faceledger.gallery.context import GalleryContext
from faceledger.gallery.index import Hit, SearchIndex
from faceledger.gallery.index_sync import sync_index
from faceledger.ledger.errors import StoreError

if TYPE_CHECKING:
    from faceledger.config import Database
    from faceledger.engine import Engine
    from faceledger.ledger.store import Transaction

SHARDS_ENV = "FACELEDGER_SHARDS"
"""Number of shard processes each searching process uses (unset or 0: none, search in the process)."""

_ALLOWED_KEPT = 16
"""Allowed-subject sets a shard keeps (one per gallery and purpose searched since the data last changed)."""

_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Read by the BLAS library once, when numpy loads in a shard process: so they are set when it is spawned."""

_lock = threading.Lock()
_ctx_lock = threading.Lock()


def shard_of(subject: str, shards: int) -> int:
    """The shard of ``subject`` among ``shards``: first 8 bytes of SHA-256 of its id (UTF-8), big-endian, mod N."""
    return int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big") % shards


def partition(subjects: Iterable[str], shards: int) -> list[list[str]]:
    """``subjects`` split by shard."""
    parts: list[list[str]] = [[] for _ in range(shards)]
    for subject in subjects:
        parts[shard_of(subject, shards)].append(subject)
    return parts


def _order(hit: Hit) -> tuple[float, str]:
    return (-hit.similarity, hit.subject)


def merge(per_shard: Sequence[Sequence[Sequence[Hit]]], k: int) -> list[list[Hit]]:
    """The top ``k`` per query of the shards' top ``k`` (``per_shard[shard][query]``), in the tie order."""
    if not per_shard:
        return []
    return [sorted(itertools.chain(*rows), key=_order)[:k] for rows in zip(*per_shard, strict=True)]


class ShardVersionError(StoreError):
    """A shard found another data version than the search's transaction (a change committed in between, seen only
    by a read transaction): the search is refused rather than answered for another state; try again."""


class ShardMask(np.ndarray):
    """What :meth:`ShardedIndex.mask` returns in place of a row mask: one True per allowed subject that has
    templates (what the threshold counts), and the token under which the shards keep the allowed set."""

    token: int
    subjects: Collection[str]


# ---------------------------------------------------------------------------------------------- shard process
@dataclass(frozen=True)
class ShardSpec:
    """What a shard process needs to open the store and the recognizer's identity (not the recognizer: a shard
    never embeds, it only checks that the templates were made with the parent's model: ``models``, the ids of
    :meth:`GalleryContext.model_ids`)."""

    db: str | Database
    key_file: str | None
    models: tuple[str, ...]
    dim: int
    shard: int
    shards: int


class _Shard:
    """The state of one shard process: its store, its context and index, its allowed-subject sets."""

    def __init__(self, spec: ShardSpec) -> None:
        from faceledger.ledger.store import open_store

        card = SimpleNamespace(dim=spec.dim, model_ids=lambda: spec.models)
        engine = cast("Engine", SimpleNamespace(recognizer=SimpleNamespace(card=card)))
        self.spec = spec
        self.ctx = GalleryContext(open_store(spec.db), key_file=spec.key_file, engine=engine)
        self.allowed: OrderedDict[int, tuple[frozenset[str], np.ndarray | None, int]] = OrderedDict()

    def owns(self, subject: str) -> bool:
        return shard_of(subject, self.spec.shards) == self.spec.shard

    def sync(self, version: int | None) -> SearchIndex:
        with self.ctx.store.read() as tx:
            index = sync_index(self.ctx, tx, owns=self.owns)
            seen = tx.data_version()
        if version is not None and seen != version:
            raise ShardVersionError(
                f"shard {self.spec.shard} of {self.spec.shards} sees data version {seen}, the search's transaction "
                f"{version}: the gallery changed in between; search again"
            )
        return index

    def remember(self, version: int | None, token: int, subjects: list[str]) -> int:
        index = self.sync(version)
        mask = index.mask(subjects)
        self.allowed[token] = (frozenset(subjects), mask, index.generation)
        while len(self.allowed) > _ALLOWED_KEPT:
            self.allowed.popitem(last=False)
        return int(np.count_nonzero(mask))

    def mask(self, index: SearchIndex, token: int) -> np.ndarray | None:
        if token not in self.allowed:
            return None
        subjects, mask, generation = self.allowed[token]
        if mask is None or generation != index.generation:
            mask, generation = index.mask(subjects), index.generation
            self.allowed[token] = (subjects, mask, generation)
        return mask

    def search(self, request: _Request) -> tuple[list[list[tuple[str, float]]] | None, dict[str, tuple[str, str]]]:
        index = self.sync(request.version)
        allowed: Collection[str] | np.ndarray | None = request.subjects
        if request.token is not None:
            if request.subjects is not None:
                self.remember(request.version, request.token, list(request.subjects))
            allowed = self.mask(index, request.token)
            if allowed is None:
                return None, {}  # not (or no longer) kept here: the parent sends the set again
        hits = index.search(request.queries, request.k, allowed=allowed, min_similarity=request.min_similarity)
        return [[(h.subject, h.similarity) for h in row] for row in hits], dict(self.ctx.excluded)

    def stats(self, version: int | None, detail: bool) -> dict[str, Any]:
        index = self.sync(version)
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "count": len(index),
            "rss_mb": _rss_mb(),
            "peak_mb": _rss_mb("VmHWM"),
        }
        if detail:
            out["templates"], out["subjects"] = sorted(index.template_ids), sorted(index.subjects)
            out["data_keys"] = sorted(self.ctx.data_keys)
        return out


@dataclass(frozen=True)
class _Request:
    version: int | None
    queries: np.ndarray
    k: int
    min_similarity: float
    token: int | None
    subjects: Sequence[str] | None


_state: _Shard | None = None


def _start(spec: ShardSpec) -> None:
    global _state
    _state = _Shard(spec)


def _shard() -> _Shard:
    if _state is None:
        raise RuntimeError("not a shard process")
    return _state


def _search(request: _Request) -> tuple[list[list[tuple[str, float]]] | None, dict[str, tuple[str, str]]]:
    return _shard().search(request)


def _remember(version: int | None, token: int, subjects: list[str]) -> int:
    return _shard().remember(version, token, subjects)


def _stats(version: int | None, detail: bool) -> dict[str, Any]:
    return _shard().stats(version, detail)


def _rss_mb(field: str = "VmRSS") -> float:
    """Resident memory of this process (Linux /proc; VmHWM: its peak), MiB; NaN elsewhere."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ---------------------------------------------------------------------------------------------- parent side
class ShardedIndex(SearchIndex):
    """The gallery's search index held by ``shards`` shard processes (one ``ProcessPoolExecutor`` of one
    ``spawn``-ed process each, so requests reach the shard that owns the subjects). It stands where a
    :class:`SearchIndex` stands (``ctx.index``) for the calls a search makes: :meth:`mask` and :meth:`search`.
    It holds no template itself; ``version`` stays None (the shards sync from the store, never by the parent)."""

    def __init__(
        self,
        db: str | Database,
        *,
        key_file: str | os.PathLike[str] | None,
        models: tuple[str, ...],
        dim: int,
        shards: int,
        excluded: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError("a shard set needs at least one shard")
        super().__init__(dim)
        self.shards = shards
        self.data_version: int | None = None
        self._tokens = itertools.count(1)
        self._excluded: list[dict[str, tuple[str, str]]] = [{} for _ in range(shards)]
        self.excluded = {} if excluded is None else excluded
        """Templates the shards leave out of the search, as of their last search (the gallery's ``ctx.excluded``,
        which readiness and metrics report)."""
        context = get_context("spawn")
        self._pools = [
            ProcessPoolExecutor(
                1,
                mp_context=context,
                initializer=_start,
                initargs=(ShardSpec(db, None if key_file is None else str(key_file), models, dim, i, shards),),
            )
            for i in range(shards)
        ]
        self._finalizer = weakref.finalize(self, _shutdown, list(self._pools))
        self._spawn()

    def _spawn(self) -> None:
        """Start the shard processes, each with its share of the CPUs for BLAS (``cpu_count // shards``, unless
        the environment sets the BLAS threads): N shards each with every core's worth of spinning BLAS threads make
        every search several times slower. A pool spawns its process in its first ``submit``; the variables are
        this process's only while that runs."""
        threads = str(max(1, (os.cpu_count() or 1) // self.shards))
        with _lock:
            saved = {name: os.environ.get(name) for name in _BLAS_THREADS}
            try:
                for name, value in saved.items():
                    if value is None:
                        os.environ[name] = threads
                started = [pool.submit(os.getpid) for pool in self._pools]
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
        self._all(started)

    def close(self) -> None:
        """Stop the shard processes."""
        self._finalizer()

    def synced(self, tx: Transaction) -> ShardedIndex:
        """Note the data version of ``tx``: the shards bring themselves to it at the next search."""
        version = tx.data_version()
        if version != self.data_version:
            self.data_version = version
            self.generation += 1  # masks of the last version are stale (the parent's search_mask cache)
        return self

    def __len__(self) -> int:
        return sum(s["count"] for s in self.stats(detail=False))

    def __bool__(self) -> bool:
        return True  # not len(): that asks every shard

    def stats(self, *, detail: bool = True) -> list[dict[str, Any]]:
        """Per shard, synced first: pid, template count, RSS (MiB) and with ``detail`` its template ids, subjects
        and unwrapped keys (tests, benchmarks)."""
        return self._all([pool.submit(_stats, self.data_version, detail) for pool in self._pools])

    def mask(
        self, allowed: Collection[str], *, base: np.ndarray | None = None, recheck: Collection[str] = ()
    ) -> ShardMask:
        """Send each shard its part of ``allowed``, kept under a new token; one True per allowed subject with
        templates (the number the threshold is computed for). ``base`` and ``recheck`` are not used: the parts are
        sent whole each time."""
        token = next(self._tokens)
        parts = partition(allowed, self.shards)
        pairs = zip(self._pools, parts, strict=True)
        counts = self._all([pool.submit(_remember, self.data_version, token, part) for pool, part in pairs])
        mask = np.ones(sum(counts), bool).view(ShardMask)
        mask.token, mask.subjects = token, allowed
        return mask

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: Collection[str] | np.ndarray | None = None,
        min_similarity: float = -np.inf,
    ) -> list[list[Hit]]:
        """Top ``k`` subjects per query over every shard, exactly (see the module docstring for the tie order).
        ``allowed``: a :class:`ShardMask` from :meth:`mask`, subject ids, or None for everyone."""
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        if not len(queries) or k < 1:
            return [[] for _ in range(len(queries))]
        token = allowed.token if isinstance(allowed, ShardMask) else None
        if isinstance(allowed, np.ndarray) and token is None:
            raise TypeError("a sharded index takes subject ids or a mask from its own mask(), not a row mask")
        if token is None and allowed is not None:
            parts: list[list[str] | None] = list(partition(cast("Collection[str]", allowed), self.shards))
        else:
            parts = [None] * self.shards

        def request(i: int, resend: bool = False) -> Future[Any]:
            subjects = parts[i]
            if resend:
                subjects = partition(cast(ShardMask, allowed).subjects, self.shards)[i]
            req = _Request(self.data_version, queries, k, float(min_similarity), token, subjects)
            return self._pools[i].submit(_search, req)

        asked = [i for i in range(self.shards) if parts[i] != []]  # no allowed subject there: nothing to ask
        replies = dict(zip(asked, self._all([request(i) for i in asked]), strict=True))
        for i, (rows, _) in list(replies.items()):
            if rows is None:  # the shard no longer keeps this allowed set (evicted, or the process restarted)
                replies[i] = request(i, resend=True).result()
        per_shard = []
        for i, (rows, excluded) in replies.items():
            self._excluded[i] = excluded
            per_shard.append([[Hit(s, v) for s, v in row] for row in rows or []])
        self.excluded.clear()
        self.excluded.update({t: why for part in self._excluded for t, why in part.items()})
        return merge(per_shard, k) if per_shard else [[] for _ in range(len(queries))]

    @staticmethod
    def _all(futures: list[Future[Any]]) -> list[Any]:
        """Every future's result (all are waited for, so no shard is left working on a request nobody reads)."""
        results, error = [], None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # re-raised below, once every shard has answered
                error = error or exc
                results.append(None)
        if error is not None:
            raise error
        return results

    # what a SearchIndex does in-process and a shard set does not
    def update(self, **_: Any) -> None:
        raise TypeError("a sharded index is synced by its shards from the store, not updated by the parent")

    @property
    def template_ids(self) -> set[str]:
        return {t for s in self.stats() for t in s["templates"]}

    @property
    def nbytes(self) -> int:
        return len(self) * self.dim * 4

    @property
    def subjects(self) -> list[str]:
        return sorted(subject for s in self.stats() for subject in s["subjects"])

    def scores(self, queries: np.ndarray, allowed: Collection[str] | np.ndarray | None = None) -> np.ndarray:
        raise TypeError("a sharded index gives top-k hits (search), not the whole score matrix")


def _shutdown(pools: list[ProcessPoolExecutor]) -> None:
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def shard_set(ctx: GalleryContext) -> ShardedIndex | None:
    """``ctx.index`` when it is a shard set; a new one when ``FACELEDGER_SHARDS`` asks for shards and the context
    has none yet; else None (the index is in this process)."""
    if isinstance(ctx.index, ShardedIndex):
        return ctx.index
    wanted = os.environ.get(SHARDS_ENV, "").strip()
    if not wanted or wanted == "0":
        return None
    try:
        shards = int(wanted)
    except ValueError:
        raise ValueError(f"{SHARDS_ENV}={wanted!r}: give a number of shard processes (0: none)") from None
    with _ctx_lock:
        if not isinstance(ctx.index, ShardedIndex):
            ctx.index = open_shards(ctx, shards)
    return ctx.index


def open_shards(ctx: GalleryContext, shards: int) -> ShardedIndex:
    """A shard set over the store of ``ctx`` (same database, same master key), for its engine's recognizer."""
    inner = ctx.store
    db: str | Database | None = getattr(inner, "database", None)  # PostgreSQL: the URL with its password
    if db is None:
        path = getattr(inner, "path", None)
        if path is None:
            raise StoreError(f"{inner.location}: cannot tell shard processes where this database is")
        db = str(Path(path))
    dim = int(getattr(ctx.engine.recognizer.card, "dim", 0) or 128)
    return ShardedIndex(
        db, key_file=ctx.key_file, models=ctx.model_ids(), dim=dim, shards=shards, excluded=ctx.excluded
    )
