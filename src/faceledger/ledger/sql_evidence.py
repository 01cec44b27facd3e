"""Queries for evidence and reference faces: part of :class:`~faceledger.ledger.sql_tx.SQLTransaction`.

Both tables hold ciphertext only (see ``migrations/*/0003_evidence.sql``); their rows go with the candidate or the
template and subject they belong to (foreign keys with ``ON DELETE CASCADE``).
"""

from __future__ import annotations

from typing import Any

from faceledger.ledger.records import EvidenceKey, EvidenceRecord, ReferenceFace
from faceledger.ledger.sql_base import SQLQueries

_EVIDENCE_COLS = (
    "candidate_id, key_id, wrapped_key, master_key_id, face_nonce, face, context_nonce, context, quality, created_at"
)
_REFERENCE_COLS = "template_id, subject_id, nonce, image, created_at"


def _evidence(row: tuple[Any, ...]) -> EvidenceRecord:
    values = list(row)
    for i in (2, 4, 5, 6, 7):
        values[i] = bytes(values[i])
    return EvidenceRecord(*values)


def _reference(row: tuple[Any, ...]) -> ReferenceFace:
    return ReferenceFace(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4])


class EvidenceQueries(SQLQueries):
    """Evidence of candidates and reference faces of subjects; mixed into the SQL transaction."""

    def add_evidence(self, evidence: EvidenceRecord) -> None:
        self._c.execute(
            f"INSERT INTO evidence ({_EVIDENCE_COLS}) VALUES ({', '.join('?' * 10)})",
            (
                evidence.candidate_id,
                evidence.key_id,
                evidence.wrapped_key,
                evidence.master_key_id,
                evidence.face_nonce,
                evidence.face,
                evidence.context_nonce,
                evidence.context,
                evidence.quality,
                evidence.created_at,
            ),
        )

    def get_evidence(self, candidate_id: str) -> EvidenceRecord | None:
        row = self._c.execute(
            f"SELECT {_EVIDENCE_COLS} FROM evidence WHERE candidate_id = ?", (candidate_id,)
        ).fetchone()
        return None if row is None else _evidence(row)

    def delete_evidence(self, candidate_id: str) -> int:
        return self._c.execute("DELETE FROM evidence WHERE candidate_id = ?", (candidate_id,)).rowcount

    def delete_evidence_decided_before(self, cutoff: str) -> int:
        cursor = self._c.execute(
            "DELETE FROM evidence WHERE candidate_id IN "
            "(SELECT id FROM candidates WHERE status <> 'pending' AND decided_at < ?)",
            (cutoff,),
        )
        return cursor.rowcount

    def evidence_count(self, subject_id: str | None = None) -> int:
        if subject_id is None:
            row = self._c.execute("SELECT COUNT(*) FROM evidence").fetchone()
        else:
            row = self._c.execute(
                "SELECT COUNT(*) FROM evidence e JOIN candidates c ON c.id = e.candidate_id WHERE c.subject_id = ?",
                (subject_id,),
            ).fetchone()
        return int(row[0])

    def list_evidence_keys(self) -> list[EvidenceKey]:
        rows = self._c.execute(
            "SELECT candidate_id, key_id, wrapped_key, master_key_id FROM evidence ORDER BY candidate_id"
        ).fetchall()
        return [EvidenceKey(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def rewrap_evidence_key(self, candidate_id: str, wrapped: bytes, master_key_id: str) -> None:
        self._c.execute(
            "UPDATE evidence SET wrapped_key = ?, master_key_id = ? WHERE candidate_id = ?",
            (wrapped, master_key_id, candidate_id),
        )

    def add_reference_face(self, face: ReferenceFace) -> None:
        self._c.execute(
            f"INSERT INTO reference_faces ({_REFERENCE_COLS}) VALUES (?, ?, ?, ?, ?)",
            (face.template_id, face.subject_id, face.nonce, face.image, face.created_at),
        )

    def reference_faces_of(self, subject_id: str) -> list[ReferenceFace]:
        rows = self._c.execute(
            f"SELECT {_REFERENCE_COLS} FROM reference_faces WHERE subject_id = ? ORDER BY created_at, template_id",
            (subject_id,),
        ).fetchall()
        return [_reference(r) for r in rows]
