"""Exact search: every enrolled template in one in-memory float32 matrix, one matrix product per search.

Templates are L2-normalised, so the similarity of a probe and a template is their dot product. A subject's
score is its best template. There is no approximation: the top candidates are exactly the highest-scoring
subjects. Adding or removing templates costs time proportional to the change, not to the gallery size (rows
are appended; a removed row is replaced by the last one).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

GROWTH_ROWS = 1 << 20
"""The most rows the matrix grows by at a time (512 MB of 128-dimensional templates)."""


@dataclass(frozen=True)
class Hit:
    """A subject and its similarity to a probe (the best over the subject's templates)."""

    subject: str
    similarity: float


class SearchIndex:
    """Templates of many subjects in one matrix; :meth:`search` returns the top subjects per query.

    ``version`` is the store's data version the index reflects and ``changes`` the last row of the store's change
    log it applied (both managed by the caller); ``generation`` changes with every update (masks from :meth:`mask`
    are valid for one generation).
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.version: int | None = None
        self.changes: int | None = None
        self.generation = 0
        self._matrix = np.zeros((0, dim), np.float32)
        self._codes = np.zeros(0, np.int64)
        self._n = 0
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._subjects: list[str] = []
        self._code_of: dict[str, int] = {}
        self._counts = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self._n

    @property
    def template_ids(self) -> set[str]:
        """Ids of the templates in the index."""
        return set(self._row_of)

    @property
    def subjects(self) -> list[str]:
        """Subjects with at least one template."""
        counts = self._counts[: len(self._subjects)].tolist()
        return [s for s, c in zip(self._subjects, counts, strict=True) if c > 0]

    def subject_of(self, template_id: str) -> str | None:
        """The subject of a template in the index, or None."""
        row = self._row_of.get(template_id)
        return None if row is None else self._subjects[int(self._codes[row])]

    @property
    def nbytes(self) -> int:
        """Memory held by the templates in the matrix."""
        return int(self._n * self.dim * 4)

    def clear(self) -> None:
        """Remove everything."""
        self.update(remove=list(self._row_of), add_ids=[], add_subjects=[], add_vectors=np.zeros((0, self.dim)))
        self.version = self.changes = None

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` templates in all (one allocation instead of growing while a large gallery loads).
        Growing on its own, the matrix gains half its size, at most :data:`GROWTH_ROWS` rows: at ten million
        templates, half again would be 2.6 GB more, held beside the old matrix while it is copied."""
        if rows <= len(self._matrix):
            return
        capacity = max(rows, len(self._matrix) + min(len(self._matrix) // 2, GROWTH_ROWS) + 16)
        matrix = np.zeros((capacity, self.dim), np.float32)
        matrix[: self._n] = self._matrix[: self._n]
        codes = np.zeros(capacity, np.int64)
        codes[: self._n] = self._codes[: self._n]
        self._matrix, self._codes = matrix, codes

    def update(
        self,
        *,
        remove: Collection[str],
        add_ids: Sequence[str],
        add_subjects: Sequence[str],
        add_vectors: np.ndarray,
    ) -> None:
        """Remove templates by id (unknown ids are ignored) and add new ones."""
        add_vectors = np.asarray(add_vectors, np.float32).reshape(-1, self.dim)
        if not (len(add_ids) == len(add_subjects) == len(add_vectors)):
            raise ValueError("add_ids, add_subjects and add_vectors must have the same length")
        if not remove and not len(add_ids):
            return
        removing = set(remove)
        clash = [t for t in add_ids if t in self._row_of and t not in removing]
        if clash or len(set(add_ids)) != len(add_ids):
            raise ValueError(f"template {(clash or list(add_ids))[0]} would be in the index twice")
        for template_id in remove:
            row = self._row_of.pop(template_id, None)
            if row is None:
                continue
            self._counts[self._codes[row]] -= 1
            last = self._n - 1
            if row != last:
                self._matrix[row] = self._matrix[last]
                self._codes[row] = self._codes[last]
                moved = self._ids[last]
                self._ids[row] = moved
                self._row_of[moved] = row
            self._ids.pop()
            self._n = last
        if len(add_ids):
            new_codes = []
            for subject in add_subjects:
                code = self._code_of.get(subject)
                if code is None:
                    code = self._code_of[subject] = len(self._subjects)
                    self._subjects.append(subject)
                new_codes.append(code)
            if len(self._subjects) > len(self._counts):
                grown = np.zeros(max(len(self._subjects), 2 * len(self._counts)), np.int64)
                grown[: len(self._counts)] = self._counts
                self._counts = grown
            self.reserve(self._n + len(add_ids))
            start = self._n
            self._matrix[start : start + len(add_ids)] = add_vectors
            self._codes[start : start + len(add_ids)] = new_codes
            np.add.at(self._counts, np.asarray(new_codes, np.int64), 1)
            for offset, template_id in enumerate(add_ids):
                self._row_of[template_id] = start + offset
                self._ids.append(template_id)
            self._n += len(add_ids)
        self.generation += 1

    def mask(
        self, allowed: Collection[str], *, base: np.ndarray | None = None, recheck: Collection[str] = ()
    ) -> np.ndarray:
        """Boolean mask over subject codes of those in ``allowed`` (valid for the current generation).

        ``base``: a mask this index gave earlier, for a set that differs from ``allowed`` at most by the subjects
        in ``recheck``; only those and the subjects the index gained since are looked at (a subject's code never
        changes, so the rest of ``base`` still holds). A new array either way."""
        mask = np.zeros(len(self._subjects), bool)
        if base is None or len(base) > len(self._subjects):
            for subject in allowed:
                code = self._code_of.get(subject)
                if code is not None:
                    mask[code] = True
            return mask
        mask[: len(base)] = base
        for code in range(len(base), len(self._subjects)):
            mask[code] = self._subjects[code] in allowed
        for subject in recheck:
            code = self._code_of.get(subject)
            if code is not None:
                mask[code] = subject in allowed
        return mask

    def _similarities(self, queries: np.ndarray, allowed: Collection[str] | np.ndarray | None) -> np.ndarray:
        sims = queries @ self._matrix[: self._n].T
        if allowed is not None:
            mask = allowed if isinstance(allowed, np.ndarray) else self.mask(allowed)
            if not mask.all():
                sims[:, ~mask[self._codes[: self._n]]] = -np.inf
        return sims

    def scores(self, queries: np.ndarray, allowed: Collection[str] | np.ndarray | None = None) -> np.ndarray:
        """Similarity of each query to each subject ``(Q, S)`` in :attr:`subjects` order.

        Subjects outside ``allowed`` (ids, or a mask from :meth:`mask`) score ``-inf``.
        """
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        out = np.full((len(queries), len(self._subjects)), -np.inf, np.float32)
        if self._n:
            sims = self._similarities(queries, allowed)
            rows = np.repeat(np.arange(len(queries)), self._n)
            np.maximum.at(out, (rows, np.tile(self._codes[: self._n], len(queries))), sims.ravel())
        return out[:, self._counts[: len(self._subjects)] > 0]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: Collection[str] | np.ndarray | None = None,
        min_similarity: float = -np.inf,
    ) -> list[list[Hit]]:
        """Top ``k`` subjects per query with similarity at least ``min_similarity``, best first; exact ties in
        subject id order.

        Exact: a subject's score is its best template. Only the best ``k * m`` templates (``m``: most templates
        any subject has) need sorting, since the k-th best subject's best template ranks at most that low. The
        float32 matrix product rounds each similarity by up to ``dim * 2**-24`` depending on where its row is in the
        matrix (BLAS sums in blocks), so the templates within twice that of the k-th best subject (or of
        ``min_similarity``) are scored again in float64, rounded to float32: a template's similarity to a probe
        does not depend on which rows are beside it, and the result is the same over one index or over shards of
        it (:mod:`.shards`).
        """
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        if not self._n or k < 1:
            return [[] for _ in range(len(queries))]
        sims = self._similarities(queries, allowed)
        n = self._n
        depth = min(n, k * int(self._counts.max()))
        if depth < n:
            # one probe at a time: the positions of a whole partition are int64, twice the similarities (32 probes
            # over 10M templates: 2.6 GB at once, 80 MB a row), and only the last ``depth`` of each are kept
            top = np.empty((len(queries), depth), np.int64)
            for q in range(len(queries)):
                top[q] = np.argpartition(sims[q], n - depth)[n - depth :]
        else:
            top = np.broadcast_to(np.arange(n), sims.shape).copy()
        values = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        codes = self._codes[:n]
        # |float32 BLAS - float64 rounded| <= dim * 2**-24 * |q| (unit templates) + half an ulp; twice that apart
        slack = (2 * self.dim * 2.0**-24 + 2e-7) * np.maximum(1.0, np.linalg.norm(queries, axis=1))
        out: list[list[Hit]] = []
        for q, (row_top, row_values) in enumerate(zip(top.tolist(), values.tolist(), strict=True)):
            kth, seen = -np.inf, set()
            for column, value in zip(row_top, row_values, strict=True):
                if not np.isfinite(value):
                    break
                seen.add(int(codes[column]))
                if len(seen) == k:
                    kth = value
                    break
            floor = max(kth, min_similarity) - float(slack[q])
            rows = np.flatnonzero(sims[q] >= floor if np.isfinite(floor) else np.isfinite(sims[q]))
            out.append(self._rescored(queries[q], rows, k, min_similarity))
        return out

    def _rescored(self, query: np.ndarray, rows: np.ndarray, k: int, min_similarity: float) -> list[Hit]:
        """The top ``k`` subjects among the templates at ``rows``, scored in float64 and rounded to float32."""
        if not len(rows):
            return []
        exact = (self._matrix[rows].astype(np.float64) @ query.astype(np.float64)).astype(np.float32)
        codes = self._codes[rows]
        order = np.lexsort((-exact, codes))  # each subject's best template first
        codes, exact = codes[order], exact[order]
        first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        codes, exact = codes[first], exact[first]
        keep = exact >= min_similarity
        if np.count_nonzero(keep) > k:
            keep &= exact >= np.partition(exact[keep], -k)[-k]
        ranked = sorted(
            ((float(v), self._subjects[c]) for c, v in zip(codes[keep].tolist(), exact[keep].tolist(), strict=True)),
            key=lambda hit: (-hit[0], hit[1]),
        )
        return [Hit(subject, value) for value, subject in ranked[:k]]
