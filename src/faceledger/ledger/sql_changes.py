"""The change log a loaded search index catches up from: part of :class:`~faceledger.ledger.sql_tx.SQLTransaction`.

Triggers (``migrations/*/0008_index_changes.sql``) add a row for every template, subject or consent row added,
deleted or altered, whoever made the change; a search index remembers the last ``seq`` it applied and, before its
next search, reads the rows after it and re-reads those templates and subjects only. The store keeps the latest
:data:`CHANGES_KEPT` rows: an index further behind loads the whole gallery again, which then costs no more than
reading that many changes would.
"""

from __future__ import annotations

from faceledger.ledger.sql_base import SQLQueries

CHANGES_KEPT = 100_000
"""Rows of the change log kept (older ones are pruned by the next change to the templates)."""

_PRUNED = "index_changes_pruned"


class ChangeQueries(SQLQueries):
    """The change log; mixed into the SQL transaction."""

    def last_change(self) -> int:
        """The highest ``seq`` of the change log (0 when nothing was ever logged): an index loaded in this
        transaction reflects every change up to it."""
        return max(self._last_seq(), self._pruned())

    def changes_since(self, after: int, limit: int) -> tuple[int, list[tuple[str, str | None]]] | None:
        """The log after ``after``, oldest first, as ``(last seq, [(subject_id, template_id or None), ...])``;
        None when rows after ``after`` were pruned already, or when there are more than ``limit`` (the caller then
        reads the whole gallery)."""
        if after < self._pruned():
            return None
        rows = self._all(
            "SELECT seq, subject_id, template_id FROM index_changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit + 1),
        )
        if len(rows) > limit:
            return None
        return (int(rows[-1][0]) if rows else after), [(str(s), None if t is None else str(t)) for _, s, t in rows]

    def prune_changes(self, keep: int | None = None) -> None:
        """Delete the log's rows but the latest ``keep`` (:data:`CHANGES_KEPT` by default; in a write transaction),
        remembering the last seq pruned."""
        bound = self._last_seq() - (CHANGES_KEPT if keep is None else keep)
        if bound <= self._pruned():
            return
        self._c.execute("DELETE FROM index_changes WHERE seq <= ?", (bound,))
        self._c.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_PRUNED, str(bound)),
        )

    def _last_seq(self) -> int:
        row = self._one("SELECT MAX(seq) FROM index_changes")
        return int(row[0]) if row and row[0] is not None else 0

    def _pruned(self) -> int:
        """The last seq pruned (0: none)."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (_PRUNED,))
        return int(row[0]) if row else 0
