"""Queries for web UI accounts and sessions: part of :class:`~faceledger.ledger.sql_tx.SQLTransaction`."""

from __future__ import annotations

from typing import Any

from faceledger.ledger.errors import DuplicateError
from faceledger.ledger.records import UserAccount, WebSession
from faceledger.ledger.sql_base import SQLQueries

_USER_COLS = "name, role, password_hash, created_at, created_by, disabled_at"
_SESSION_COLS = "id_sha256, user_name, key_id, csrf, created_at, expires_at, ended_at"


class AccountQueries(SQLQueries):
    """User accounts and web sessions; mixed into the SQL transaction."""

    def add_user(self, user: UserAccount) -> None:
        if self._insert(
            f"INSERT INTO users ({_USER_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
            (user.name, user.role, user.password_hash, user.created_at, user.created_by, user.disabled_at),
        ):
            raise DuplicateError(f"a user named {user.name!r} exists already")

    def get_user(self, name: str) -> UserAccount | None:
        row = self._c.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else UserAccount(*row)

    def list_users(self) -> list[UserAccount]:
        return [UserAccount(*r) for r in self._c.execute(f"SELECT {_USER_COLS} FROM users ORDER BY name")]

    def update_user(self, name: str, *, password_hash: str | None = None, disabled_at: str | None = None) -> None:
        changes: dict[str, Any] = {}
        if password_hash is not None:
            changes["password_hash"] = password_hash
        if disabled_at is not None:
            changes["disabled_at"] = disabled_at
        if changes:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            self._c.execute(f"UPDATE users SET {assignments} WHERE name = ?", (*changes.values(), name))

    def add_web_session(self, session: WebSession) -> None:
        self._c.execute(
            f"INSERT INTO web_sessions ({_SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session.id_sha256,
                session.user_name,
                session.key_id,
                session.csrf,
                session.created_at,
                session.expires_at,
                session.ended_at,
            ),
        )

    def get_web_session(self, id_sha256: str) -> WebSession | None:
        row = self._c.execute(f"SELECT {_SESSION_COLS} FROM web_sessions WHERE id_sha256 = ?", (id_sha256,)).fetchone()
        return None if row is None else WebSession(*row)

    def end_web_sessions(self, ended_at: str, *, id_sha256: str | None = None, user_name: str | None = None) -> int:
        if (id_sha256 is None) == (user_name is None):
            raise ValueError("end one session (id_sha256) or a user's sessions (user_name)")
        column, value = ("id_sha256", id_sha256) if id_sha256 is not None else ("user_name", user_name)
        cursor = self._c.execute(
            f"UPDATE web_sessions SET ended_at = ? WHERE {column} = ? AND ended_at IS NULL", (ended_at, value)
        )
        return cursor.rowcount

    def delete_web_sessions_before(self, cutoff: str) -> int:
        cursor = self._c.execute("DELETE FROM web_sessions WHERE expires_at < ? OR ended_at < ?", (cutoff, cutoff))
        return cursor.rowcount
