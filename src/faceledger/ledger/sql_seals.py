"""Queries for record seals (migration 0005): part of :class:`~faceledger.ledger.sql_tx.SQLTransaction`."""

from __future__ import annotations

from collections.abc import Sequence

from faceledger.ledger.sql_base import SQLQueries


class SealQueries(SQLQueries):
    """The ``seals`` table; mixed into the SQL transaction."""

    def get_seal(self, kind: str, key: str) -> tuple[int, str] | None:
        row = self._c.execute("SELECT seq, mac FROM seals WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def seals_of(self, kind: str) -> dict[str, tuple[int, str]]:
        rows = self._c.execute("SELECT key, seq, mac FROM seals WHERE kind = ?", (kind,))
        return {str(k): (int(s), str(m)) for k, s, m in rows}

    def put_seal(self, kind: str, key: str, seq: int, mac: str) -> None:
        self._c.execute(
            "INSERT INTO seals (kind, key, seq, mac) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET seq = excluded.seq, mac = excluded.mac",
            (kind, key, seq, mac),
        )

    def seals_among(self, kind: str, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            rows = self._c.execute(
                f"SELECT key, seq, mac FROM seals WHERE kind = ? AND key IN ({', '.join('?' * len(chunk))})",
                (kind, *chunk),
            )
            found.update((str(k), (int(s), str(m))) for k, s, m in rows)
        return found

    def put_seals(self, rows: Sequence[tuple[str, str, int, str]]) -> None:
        if rows:
            self._c.executemany(
                "INSERT INTO seals (kind, key, seq, mac) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET seq = excluded.seq, mac = excluded.mac",
                rows,
            )

    def delete_seal(self, kind: str, key: str) -> None:
        self._c.execute("DELETE FROM seals WHERE kind = ? AND key = ?", (kind, key))

    def audit_body(self, seq: int) -> str | None:
        row = self._c.execute("SELECT body FROM audit WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])
