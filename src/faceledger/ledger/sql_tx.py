"""The SQL behind every :class:`~faceledger.ledger.store.Transaction` method, one statement or two each, on the
connection of the transaction a store opened: :class:`~faceledger.ledger.sqlite.SQLiteStore` or
:class:`~faceledger.ledger.postgres.PostgresStore`. The statements are in the subset of SQL both understand
(``?`` parameters; the PostgreSQL store's connection rewrites them), so each is written once."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from faceledger.ledger.audit import (
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    AuditHead,
    StoredAuditRow,
    build_entry,
)
from faceledger.ledger.errors import DuplicateError
from faceledger.ledger.records import (
    ActivityRow,
    ApiKey,
    CandidateRecord,
    CandidateStatus,
    Consent,
    DeploymentRecord,
    ReviewRecord,
    Subject,
    SubjectKey,
    TemplateRecord,
    TemplateRef,
    VideoSessionRecord,
)
from faceledger.ledger.sql_accounts import AccountQueries
from faceledger.ledger.sql_changes import ChangeQueries
from faceledger.ledger.sql_evidence import EvidenceQueries
from faceledger.ledger.sql_seals import SealQueries


def _consent(row: tuple[Any, ...]) -> Consent:
    return Consent(*row)


_CONSENT_COLS = (
    "id, subject_id, gallery, collected_by, legal_basis, purpose, evidence_ref, given_at, expires_at, "
    "withdrawn_at, ended_reason, recorded_at, recorded_by, category"
)
_TEMPLATE_COLS = "id, subject_id, key_id, model, dim, nonce, ciphertext, source_sha256, face_index, quality, created_at"
_CANDIDATE_COLS = (
    "id, search_id, audit_seq, gallery, purpose, actor, probe_sha256, face_index, box, subject_id, "
    "similarity, rank, threshold, policy_hash, status, created_at, decided_at, source, track, seen_at"
)
_DEPLOYMENT_COLS = (
    "name, gallery, purpose, legal_basis, location, sources, authorised_by, authorisation_ref, valid_from, "
    "valid_to, max_watchlist, show_candidates, created_at, created_by, ended_at, ended_by, ended_reason, evaluation"
)
_SESSION_COLS = (
    "id, deployment, source, actor, started_at, heartbeat_at, stopped_at, stop_reason, frames, tracks, "
    "candidates, dropped, gaps"
)
_AUDIT_COLS = "seq, ts, action, actor, purpose, gallery, body, prev_hash, hash"
_API_COLS = "id, owner, role, secret_sha256, created_at, created_by, revoked_at"


def _deployment(row: tuple[Any, ...]) -> DeploymentRecord:
    values = list(row)
    values[5] = json.loads(values[5])
    values[11] = bool(values[11])
    values[17] = None if values[17] is None else json.loads(values[17])
    return DeploymentRecord(*values)


def _candidate(row: tuple[Any, ...]) -> CandidateRecord:
    values = list(row)
    values[8] = json.loads(values[8])
    return CandidateRecord(*values)


class SQLTransaction(AccountQueries, ChangeQueries, EvidenceQueries, SealQueries):
    """:class:`Transaction` over an open transaction of either store."""

    # meta
    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._c.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def data_version(self) -> int:
        return int(self.get_meta("data_version") or 0)

    def bump_data_version(self) -> int:
        version = self.data_version() + 1
        self.set_meta("data_version", str(version))
        self.prune_changes()  # every change to the templates bumps the version: the log stays its latest rows
        return version

    # policies and galleries
    def put_policy(self, policy_hash: str, body: str, created_at: str, created_by: str) -> None:
        self._c.execute(
            "INSERT INTO policies (hash, body, created_at, created_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (hash) DO NOTHING",
            (policy_hash, body, created_at, created_by),
        )

    def get_policy(self, policy_hash: str) -> str | None:
        row = self._one("SELECT body FROM policies WHERE hash = ?", (policy_hash,))
        return None if row is None else str(row[0])

    def ensure_gallery(self, name: str, created_at: str) -> None:
        self._c.execute(
            "INSERT INTO galleries (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, created_at),
        )

    def gallery_names(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM galleries ORDER BY name")]

    # subjects and keys
    def add_subject(self, subject: Subject) -> None:
        if self._insert(
            "INSERT INTO subjects (id, gallery, created_at, created_by) VALUES (?, ?, ?, ?)",
            (subject.id, subject.gallery, subject.created_at, subject.created_by),
        ):
            raise DuplicateError(f"subject {subject.id!r} already exists")

    def get_subject(self, subject_id: str) -> Subject | None:
        row = self._one("SELECT id, gallery, created_at, created_by FROM subjects WHERE id = ?", (subject_id,))
        return None if row is None else Subject(*row)

    def list_subjects(self, gallery: str | None = None) -> list[Subject]:
        sql = "SELECT id, gallery, created_at, created_by FROM subjects"
        params: tuple[Any, ...] = ()
        if gallery is not None:
            sql += " WHERE gallery = ?"
            params = (gallery,)
        return [Subject(*r) for r in self._all(sql + " ORDER BY id", params)]

    def template_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._all("SELECT subject_id, COUNT(*) FROM templates GROUP BY subject_id")}

    def gallery_counts(self, gallery: str) -> tuple[int, int]:
        row = self._one(
            "SELECT (SELECT COUNT(*) FROM subjects WHERE gallery = ?), (SELECT COUNT(*) FROM templates "
            "JOIN subjects ON subjects.id = templates.subject_id WHERE subjects.gallery = ?)",
            (gallery, gallery),
        )
        assert row is not None
        return int(row[0]), int(row[1])

    def template_models(self) -> set[str]:
        return {str(r[0]) for r in self._all("SELECT DISTINCT model FROM templates")}

    def counts(self, now: str) -> dict[str, int]:
        row = self._one(
            "SELECT (SELECT COUNT(*) FROM subjects), (SELECT COUNT(*) FROM templates), "
            "(SELECT COUNT(*) FROM consents WHERE withdrawn_at IS NULL AND given_at <= ? "
            "AND (expires_at IS NULL OR expires_at > ?)), "
            "(SELECT COUNT(*) FROM candidates WHERE status = 'pending')",
            (now, now),
        )
        assert row is not None
        return dict(zip(("subjects", "templates", "valid_consents", "pending_reviews"), map(int, row), strict=True))

    def delete_subject(self, subject_id: str) -> None:
        self._c.execute("DELETE FROM templates WHERE subject_id = ?", (subject_id,))
        self._c.execute("DELETE FROM subject_keys WHERE subject_id = ?", (subject_id,))
        self._c.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))

    def add_subject_key(self, key: SubjectKey) -> None:
        self._c.execute(
            "INSERT INTO subject_keys (id, subject_id, wrapped, master_key_id, created_at) VALUES (?, ?, ?, ?, ?)",
            (key.id, key.subject_id, key.wrapped, key.master_key_id, key.created_at),
        )

    def add_subjects(
        self, subjects: Sequence[Subject], keys: Sequence[SubjectKey], templates: Sequence[TemplateRecord]
    ) -> None:
        ids = {s.id for s in subjects}
        if len(ids) != len(subjects) or len({k.subject_id for k in keys}) != len(keys):
            raise ValueError("add_subjects: a subject, or a subject's key, is given twice")
        if stray := ({k.subject_id for k in keys} | {t.subject_id for t in templates}) - ids:
            raise ValueError(f"add_subjects: keys or templates of subjects not given: {sorted(stray)[:3]}")
        if error := self._insert_many(
            [
                (
                    "INSERT INTO subjects (id, gallery, created_at, created_by) VALUES (?, ?, ?, ?)",
                    [(s.id, s.gallery, s.created_at, s.created_by) for s in subjects],
                ),
                (
                    "INSERT INTO subject_keys (id, subject_id, wrapped, master_key_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(k.id, k.subject_id, k.wrapped, k.master_key_id, k.created_at) for k in keys],
                ),
                (
                    f"INSERT INTO templates ({_TEMPLATE_COLS}) VALUES ({', '.join('?' * 11)})",
                    [_row(t) for t in templates],
                ),
            ]
        ):
            raise DuplicateError(f"none of {len(subjects)} subjects added: {error}")

    def get_subject_key(self, subject_id: str) -> SubjectKey | None:
        row = self._one(
            "SELECT id, subject_id, wrapped, master_key_id, created_at FROM subject_keys WHERE subject_id = ?",
            (subject_id,),
        )
        return None if row is None else SubjectKey(row[0], row[1], bytes(row[2]), row[3], row[4])

    def list_subject_keys(self) -> list[SubjectKey]:
        rows = self._all("SELECT id, subject_id, wrapped, master_key_id, created_at FROM subject_keys ORDER BY id")
        return [SubjectKey(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def rewrap_subject_key(self, key_id: str, wrapped: bytes, master_key_id: str) -> None:
        self._c.execute(
            "UPDATE subject_keys SET wrapped = ?, master_key_id = ? WHERE id = ?", (wrapped, master_key_id, key_id)
        )

    # consents
    def add_consent(self, consent: Consent) -> None:
        if error := self._insert(
            f"INSERT INTO consents ({_CONSENT_COLS}) VALUES ({', '.join('?' * 14)})",
            (
                consent.id,
                consent.subject_id,
                consent.gallery,
                consent.collected_by,
                consent.legal_basis,
                consent.purpose,
                consent.evidence_ref,
                consent.given_at,
                consent.expires_at,
                consent.withdrawn_at,
                consent.ended_reason,
                consent.recorded_at,
                consent.recorded_by,
                consent.category,
            ),
        ):
            raise DuplicateError(f"consent {consent.id!r} cannot be recorded: {error}")

    def get_consent(self, consent_id: str) -> Consent | None:
        row = self._one(f"SELECT {_CONSENT_COLS} FROM consents WHERE id = ?", (consent_id,))
        return None if row is None else _consent(row)

    def list_consents(self, subject_id: str | None = None, gallery: str | None = None) -> list[Consent]:
        clauses, params = [], []
        if subject_id is not None:
            clauses.append("subject_id = ?")
            params.append(subject_id)
        if gallery is not None:
            clauses.append("gallery = ?")
            params.append(gallery)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return [
            _consent(r)
            for r in self._all(f"SELECT {_CONSENT_COLS} FROM consents{where} ORDER BY recorded_at, id", params)
        ]

    def end_consent(self, consent_id: str, withdrawn_at: str | None, reason: str) -> None:
        self._c.execute(
            "UPDATE consents SET withdrawn_at = COALESCE(?, withdrawn_at), ended_reason = ? WHERE id = ?",
            (withdrawn_at, reason, consent_id),
        )

    def delete_consent(self, consent_id: str) -> None:
        self._c.execute("DELETE FROM consents WHERE id = ?", (consent_id,))

    # templates
    def add_template(self, template: TemplateRecord) -> None:
        if self._insert(f"INSERT INTO templates ({_TEMPLATE_COLS}) VALUES ({', '.join('?' * 11)})", _row(template)):
            raise DuplicateError(
                f"subject {template.subject_id!r} already has a template from this image (face {template.face_index})"
            )

    def template_refs(self) -> list[TemplateRef]:
        return [TemplateRef(*r) for r in self._all("SELECT id, subject_id, model FROM templates ORDER BY id")]

    def templates_page(self, after_id: str, limit: int) -> list[tuple[TemplateRecord, SubjectKey | None]]:
        columns = ", ".join(f"t.{c.strip()}" for c in _TEMPLATE_COLS.split(","))
        rows = self._all(
            f"SELECT {columns}, k.id, k.subject_id, k.wrapped, k.master_key_id, k.created_at FROM templates t "
            "LEFT JOIN subject_keys k ON k.id = t.key_id WHERE t.id > ? ORDER BY t.id LIMIT ?",
            (after_id, limit),
        )
        return [
            (_template(r[:11]), None if r[11] is None else SubjectKey(r[11], r[12], bytes(r[13]), r[14], r[15]))
            for r in rows
        ]

    def get_templates(self, template_ids: Sequence[str]) -> list[TemplateRecord]:
        out: list[TemplateRecord] = []
        ids = list(template_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._all(
                f"SELECT {_TEMPLATE_COLS} FROM templates WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            )
            out.extend(_template(r) for r in rows)
        return out

    def templates_of(self, subject_id: str) -> list[TemplateRecord]:
        rows = self._all(
            f"SELECT {_TEMPLATE_COLS} FROM templates WHERE subject_id = ? ORDER BY created_at, id",
            (subject_id,),
        )
        return [_template(r) for r in rows]

    def sources_of(self, source_sha256: str) -> list[tuple[str, int]]:
        rows = self._all("SELECT subject_id, face_index FROM templates WHERE source_sha256 = ?", (source_sha256,))
        return [(r[0], int(r[1])) for r in rows]

    def templates_created_before(self, cutoff: str) -> list[TemplateRef]:
        rows = self._all("SELECT id, subject_id, model FROM templates WHERE created_at < ? ORDER BY id", (cutoff,))
        return [TemplateRef(*r) for r in rows]

    def delete_template(self, template_id: str) -> None:
        self._c.execute("DELETE FROM templates WHERE id = ?", (template_id,))

    # candidates and reviews
    def add_candidate(self, candidate: CandidateRecord) -> None:
        values = list(candidate.__dict__.values())
        values[8] = json.dumps(candidate.box)
        self._c.execute(f"INSERT INTO candidates ({_CANDIDATE_COLS}) VALUES ({', '.join('?' * 20)})", values)

    def get_candidate(self, candidate_id: str) -> CandidateRecord | None:
        row = self._one(f"SELECT {_CANDIDATE_COLS} FROM candidates WHERE id = ?", (candidate_id,))
        return None if row is None else _candidate(row)

    def list_candidates(
        self, status: CandidateStatus | None = None, gallery: str | None = None, subject_id: str | None = None
    ) -> list[CandidateRecord]:
        clauses, params = [], []
        for column, value in (("status", status), ("gallery", gallery), ("subject_id", subject_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._all(f"SELECT {_CANDIDATE_COLS} FROM candidates{where} ORDER BY created_at, rank, id", params)
        return [_candidate(r) for r in rows]

    def pending_candidates(self, gallery: str | None = None) -> list[tuple[CandidateRecord, int]]:
        where, params = ("status = 'pending' AND gallery = ?", [gallery]) if gallery else ("status = 'pending'", [])
        rows = self._all(
            f"SELECT {_CANDIDATE_COLS}, (SELECT COUNT(DISTINCT reviewer) FROM reviews r "
            f"WHERE r.candidate_id = candidates.id AND r.decision = 'confirm') "
            f"FROM candidates WHERE {where} ORDER BY created_at, rank, id",
            params,
        )
        return [(_candidate(r[:-1]), int(r[-1])) for r in rows]

    def set_candidate_status(self, candidate_id: str, status: CandidateStatus, decided_at: str | None) -> None:
        self._c.execute(
            "UPDATE candidates SET status = ?, decided_at = ? WHERE id = ?",
            (status, decided_at, candidate_id),
        )

    def delete_candidates_of(self, subject_id: str) -> int:
        return self._c.execute("DELETE FROM candidates WHERE subject_id = ?", (subject_id,)).rowcount

    def delete_candidates_before(self, cutoff: str) -> int:
        return self._c.execute("DELETE FROM candidates WHERE created_at < ?", (cutoff,)).rowcount

    def add_review(self, review: ReviewRecord) -> None:
        if self._insert(
            "INSERT INTO reviews (id, candidate_id, reviewer, decision, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                review.id,
                review.candidate_id,
                review.reviewer,
                review.decision,
                review.reason,
                review.created_at,
            ),
        ):
            raise DuplicateError(
                f"reviewer {review.reviewer!r} already reviewed candidate {review.candidate_id}; "
                "another reviewer must decide"
            )

    def reviews_of(self, candidate_id: str) -> list[ReviewRecord]:
        rows = self._all(
            "SELECT id, candidate_id, reviewer, decision, reason, created_at FROM reviews "
            "WHERE candidate_id = ? ORDER BY created_at, id",
            (candidate_id,),
        )
        return [ReviewRecord(*r) for r in rows]

    # audit
    def append_audit(self, draft: AuditDraft, ts: str) -> AuditEntry:
        # The head recorded by the previous append is the source of truth: if rows were deleted from the end
        # behind the store's back, the next entry still follows the recorded head and the gap stays visible.
        recorded = self.audit_head()
        if recorded is not None:
            seq, prev = recorded.seq + 1, recorded.hash
        else:
            last = self._one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            seq, prev = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
        entry = build_entry(draft, seq=seq, prev_hash=prev, ts=ts)
        data = entry.data
        self._c.execute(
            f"INSERT INTO audit ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.seq,
                data["ts"],
                data["action"],
                data["actor"],
                data["purpose"],
                data["gallery"],
                entry.body,
                entry.prev_hash,
                entry.hash,
            ),
        )
        self.set_meta("audit_head", f"{entry.seq}:{entry.hash}")
        return entry

    def audit_head(self) -> AuditHead | None:
        value = self.get_meta("audit_head")
        if not value:
            return None
        seq, _, digest = value.partition(":")
        return AuditHead(int(seq), digest)

    def audit_rows(self) -> Iterator[StoredAuditRow]:
        for row in self._c.execute(f"SELECT {_AUDIT_COLS} FROM audit ORDER BY seq"):
            yield StoredAuditRow(*row)

    def audit_entries(
        self, after_seq: int = 0, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        sql = "SELECT seq, body, prev_hash, hash FROM audit WHERE seq > ?"
        params: list[Any] = [after_seq]
        if action is not None:
            sql += " AND (action = ? OR action LIKE ?)"
            params += [action, f"{action}.%"]
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [AuditEntry(int(r[0]), r[1], r[2], r[3]) for r in self._all(sql, params)]

    def audit_activity(
        self, since: str | None = None, until: str | None = None
    ) -> tuple[list[ActivityRow], str | None, str | None]:
        where, params = "ts >= ? AND ts < ?", [since or "", until or "\uffff"]
        first, last = self._one(f"SELECT MIN(ts), MAX(ts) FROM audit WHERE {where}", params) or (None, None)
        added, status = self._json_int("templates_added"), self._json_text("status_after")
        rows = self._all(
            f"SELECT substr(ts, 1, 10) AS day, COALESCE(NULLIF(gallery, ''), '-') AS g, "
            "COALESCE(NULLIF(purpose, ''), '-') AS p, action, COUNT(*), "
            f"SUM({added}), SUM(CASE WHEN {added} > 0 THEN 1 ELSE 0 END), "
            f"SUM({self._json_int('faces')}), SUM({self._json_int('matched_faces')}), "
            f"SUM({self._json_length('candidates')}), "
            f"SUM(CASE WHEN {status} = 'confirmed' THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {status} = 'rejected' THEN 1 ELSE 0 END), SUM({self._json_length('consent_ids')}) "
            f"FROM audit WHERE {where} GROUP BY day, g, p, action ORDER BY day, g, p, action",
            params,
        )
        return [ActivityRow(*r[:4], *(int(v or 0) for v in r[4:])) for r in rows], first, last

    # the figures of an entry's details, read by the database (SQLite's JSON functions; PostgreSQL overrides)
    def _json_int(self, key: str) -> str:
        return f"COALESCE(CAST(json_extract(body, '$.details.{key}') AS INTEGER), 0)"

    def _json_text(self, key: str) -> str:
        return f"json_extract(body, '$.details.{key}')"

    def _json_length(self, key: str) -> str:
        return f"COALESCE(json_array_length(body, '$.details.{key}'), 0)"

    def purge_audit_before(self, cutoff: str) -> tuple[int, int, str] | None:
        last = self._one("SELECT MAX(seq) FROM audit WHERE ts < ?", (cutoff,))
        if last is None or last[0] is None:
            return None
        first = self._one("SELECT MIN(seq) FROM audit")
        last_row = self._one("SELECT hash FROM audit WHERE seq = ?", (last[0],))
        assert first is not None and last_row is not None
        self._c.execute("DELETE FROM audit WHERE seq <= ?", (last[0],))
        return int(first[0]), int(last[0]), str(last_row[0])

    # api keys
    def add_api_key(self, key: ApiKey) -> None:
        if error := self._insert(
            f"INSERT INTO api_keys ({_API_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.owner,
                key.role,
                key.secret_sha256,
                key.created_at,
                key.created_by,
                key.revoked_at,
            ),
        ):
            raise DuplicateError(f"API key {key.id!r} cannot be stored: {error}")

    def get_api_key(self, key_id: str) -> ApiKey | None:
        row = self._one(f"SELECT {_API_COLS} FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else ApiKey(*row)

    def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(*r) for r in self._all(f"SELECT {_API_COLS} FROM api_keys ORDER BY created_at, id")]

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None:
        self._c.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (revoked_at, key_id))

    # deployments and video sessions
    def add_deployment(self, deployment: DeploymentRecord) -> None:
        values = list(deployment.__dict__.values())
        values[5] = json.dumps(deployment.sources)
        values[11] = int(deployment.show_candidates)
        values[17] = None if deployment.evaluation is None else json.dumps(deployment.evaluation, sort_keys=True)
        error = self._insert(f"INSERT INTO deployments ({_DEPLOYMENT_COLS}) VALUES ({', '.join('?' * 18)})", values)
        if error:
            raise DuplicateError(f"deployment {deployment.name!r} cannot be recorded: {error}")

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        row = self._one(f"SELECT {_DEPLOYMENT_COLS} FROM deployments WHERE name = ?", (name,))
        return None if row is None else _deployment(row)

    def list_deployments(self) -> list[DeploymentRecord]:
        return [_deployment(r) for r in self._all(f"SELECT {_DEPLOYMENT_COLS} FROM deployments ORDER BY created_at")]

    def update_deployment(self, name: str, **changes: Any) -> None:
        allowed = {"valid_to", "sources", "max_watchlist", "ended_at", "ended_by", "ended_reason"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"deployment fields that cannot change: {sorted(unknown)}")
        if "sources" in changes:
            changes["sources"] = json.dumps(changes["sources"])
        sets = ", ".join(f"{column} = ?" for column in changes)
        self._c.execute(f"UPDATE deployments SET {sets} WHERE name = ?", [*changes.values(), name])

    def add_video_session(self, session: VideoSessionRecord) -> None:
        self._c.execute(
            f"INSERT INTO video_sessions ({_SESSION_COLS}) VALUES ({', '.join('?' * 13)})",
            list(session.__dict__.values()),
        )

    def update_video_session(self, session_id: str, **changes: Any) -> None:
        allowed = {"heartbeat_at", "stopped_at", "stop_reason", "frames", "tracks", "candidates", "dropped", "gaps"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"session fields that cannot change: {sorted(unknown)}")
        sets = ", ".join(f"{column} = ?" for column in changes)
        self._c.execute(f"UPDATE video_sessions SET {sets} WHERE id = ?", [*changes.values(), session_id])

    def list_video_sessions(self, running_only: bool = False) -> list[VideoSessionRecord]:
        where = " WHERE stopped_at IS NULL" if running_only else ""
        rows = self._all(f"SELECT {_SESSION_COLS} FROM video_sessions{where} ORDER BY started_at, id")
        return [VideoSessionRecord(*r) for r in rows]


def _row(t: TemplateRecord) -> tuple[Any, ...]:
    """A template's values in the order of ``_TEMPLATE_COLS``."""
    return (
        t.id, t.subject_id, t.key_id, t.model, t.dim, t.nonce, t.ciphertext, t.source_sha256, t.face_index,
        t.quality, t.created_at,
    )  # fmt: skip


def _template(row: tuple[Any, ...]) -> TemplateRecord:
    values = list(row)
    values[5] = bytes(values[5])
    values[6] = bytes(values[6])
    return TemplateRecord(*values)
