"""Exact search: every enrolled template in one in-memory float32 matrix, one matrix product per search.

Templates are L2-normalised, so the similarity of a probe and a template is their dot product. Columns are
kept grouped by subject so a subject's score (the best of its templates) is one ``np.maximum.reduceat``. There
is no approximation: the top candidates are exactly the highest-scoring subjects.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hit:
    """A subject and its similarity to a probe (the best over the subject's templates)."""

    subject: str
    similarity: float


class SearchIndex:
    """Templates of many subjects in one matrix; :meth:`search` returns the top subjects per query.

    ``version`` is the store's data version the index reflects (managed by the caller).
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.version: int | None = None
        self._ids: list[str] = []
        self._subject_of: list[str] = []
        self._matrix = np.zeros((0, dim), np.float32)
        self._subjects: list[str] = []
        self._starts = np.zeros(0, np.int64)
        self._codes = np.zeros(0, np.int64)
        self._max_per_subject = 0
        self.generation = 0

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def template_ids(self) -> set[str]:
        """Ids of the templates in the index."""
        return set(self._ids)

    @property
    def subjects(self) -> list[str]:
        """Subjects with at least one template, in column order."""
        return list(self._subjects)

    @property
    def nbytes(self) -> int:
        """Memory held by the template matrix."""
        return int(self._matrix.nbytes)

    def clear(self) -> None:
        """Remove everything."""
        self.update(remove=self._ids, add_ids=[], add_subjects=[], add_vectors=np.zeros((0, self.dim), np.float32))
        self.version = None

    def update(
        self,
        *,
        remove: Collection[str],
        add_ids: Sequence[str],
        add_subjects: Sequence[str],
        add_vectors: np.ndarray,
    ) -> None:
        """Remove templates by id and add new ones, then regroup the columns by subject."""
        add_vectors = np.asarray(add_vectors, np.float32).reshape(-1, self.dim)
        if not (len(add_ids) == len(add_subjects) == len(add_vectors)):
            raise ValueError("add_ids, add_subjects and add_vectors must have the same length")
        if not remove and not len(add_ids):
            return
        removing = set(remove)
        keep = [i for i, tid in enumerate(self._ids) if tid not in removing]
        ids = [self._ids[i] for i in keep] + list(add_ids)
        subject_of = [self._subject_of[i] for i in keep] + list(add_subjects)
        if len(keep) == len(self._ids):
            matrix = np.concatenate([self._matrix, add_vectors]) if len(add_ids) else self._matrix
        else:
            matrix = np.concatenate([self._matrix[keep], add_vectors])
        # group columns by subject (stable, so a subject's templates keep their order)
        names, codes = np.unique(np.asarray(subject_of, dtype=object), return_inverse=True)
        order = np.argsort(codes, kind="stable")
        self._ids = [ids[i] for i in order]
        self._subject_of = [subject_of[i] for i in order]
        self._matrix = np.ascontiguousarray(matrix[order], dtype=np.float32)
        sorted_codes = codes[order]
        self._subjects = [str(n) for n in names]
        self.generation += 1
        self._codes = np.asarray(sorted_codes, np.int64)
        if len(order):
            self._starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
            self._max_per_subject = int(np.diff(np.r_[self._starts, len(order)]).max())
        else:
            self._starts = np.zeros(0, np.int64)
            self._max_per_subject = 0

    def mask(self, allowed: Collection[str]) -> np.ndarray:
        """Boolean mask over :attr:`subjects` of those in ``allowed`` (valid until the next update)."""
        allowed_set = allowed if isinstance(allowed, set | frozenset) else set(allowed)
        return np.fromiter((s in allowed_set for s in self._subjects), bool, len(self._subjects))

    def scores(self, queries: np.ndarray, allowed: Collection[str] | np.ndarray | None = None) -> np.ndarray:
        """Similarity of each query to each subject ``(Q, S)`` in :attr:`subjects` order.

        Subjects outside ``allowed`` (ids, or a mask from :meth:`mask`) score ``-inf``.
        """
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        if not self._subjects:
            return np.zeros((len(queries), 0), np.float32)
        sims = queries @ self._matrix.T
        single = len(self._starts) == len(self._ids)  # one template per subject: nothing to reduce
        per_subject = sims if single else np.maximum.reduceat(sims, self._starts, axis=1)
        if allowed is not None:
            mask = allowed if isinstance(allowed, np.ndarray) else self.mask(allowed)
            per_subject[:, ~mask] = -np.inf
        return per_subject

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: Collection[str] | np.ndarray | None = None,
        min_similarity: float = -np.inf,
    ) -> list[list[Hit]]:
        """Top ``k`` subjects per query with similarity at least ``min_similarity``, best first.

        Exact: a subject's score is its best template. Only the best ``k * m`` templates (``m``: most templates
        any subject has) need sorting, since the k-th best subject's best template ranks at most that low.
        """
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        if not self._subjects or k < 1:
            return [[] for _ in range(len(queries))]
        sims = queries @ self._matrix.T
        if allowed is not None:
            mask = allowed if isinstance(allowed, np.ndarray) else self.mask(allowed)
            if not mask.all():
                sims[:, ~mask[self._codes]] = -np.inf
        n = sims.shape[1]
        depth = min(n, k * self._max_per_subject)
        if depth < n:
            top = np.argpartition(sims, n - depth, axis=1)[:, n - depth :]
        else:
            top = np.broadcast_to(np.arange(n), sims.shape).copy()
        values = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        out: list[list[Hit]] = []
        for row_top, row_values in zip(top.tolist(), values.tolist(), strict=True):
            hits: list[Hit] = []
            seen: set[int] = set()
            for column, value in zip(row_top, row_values, strict=True):
                if len(hits) == k or not (np.isfinite(value) and value >= min_similarity):
                    break
                code = int(self._codes[column])
                if code not in seen:
                    seen.add(code)
                    hits.append(Hit(self._subjects[code], float(value)))
            out.append(hits)
        return out
