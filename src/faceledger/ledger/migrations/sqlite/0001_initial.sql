-- faceledger schema, version 1.
--
-- Written in the common subset of SQLite and PostgreSQL where possible so that a PostgreSQL store can follow:
-- timestamps are TEXT in ISO 8601 UTC (fixed width, so text order is time order), binary values are BLOB
-- (BYTEA in PostgreSQL), JSON values are TEXT, ids are TEXT chosen by the application (no AUTOINCREMENT).
-- The trigger at the end is SQLite syntax; PostgreSQL needs a plpgsql function for the same rule.

-- Key/value facts about this database: data_version (bumped whenever templates change, so search
-- indexes in other processes know to reload), audit head, master key id, active policy hash, recognizer.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every policy that was ever in force, by the SHA-256 of its text. meta.policy_hash names the active one.
CREATE TABLE policies (
    hash       TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE galleries (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- A subject exists while it has enrolled templates (or is being enrolled). Erasure deletes the row.
CREATE TABLE subjects (
    id         TEXT PRIMARY KEY,
    gallery    TEXT NOT NULL REFERENCES galleries (name),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

-- The subject's data key (AES-256-GCM), wrapped by the master key. Destroying this row makes every copy of the
-- subject's templates (backups, old WAL pages) unreadable.
CREATE TABLE subject_keys (
    id            TEXT PRIMARY KEY,
    subject_id    TEXT NOT NULL UNIQUE REFERENCES subjects (id) ON DELETE CASCADE,
    wrapped       BLOB NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- Consent records outlive the templates they allowed (to prove past processing was lawful) until the consent
-- retention period after they end; they hold no biometric data, so subject_id is not a foreign key.
CREATE TABLE consents (
    id           TEXT PRIMARY KEY,
    subject_id   TEXT NOT NULL,
    gallery      TEXT NOT NULL REFERENCES galleries (name),
    collected_by TEXT NOT NULL,
    legal_basis  TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    evidence_ref TEXT NOT NULL,
    given_at     TEXT NOT NULL,
    expires_at   TEXT,
    withdrawn_at TEXT,
    ended_reason TEXT,
    recorded_at  TEXT NOT NULL,
    recorded_by  TEXT NOT NULL
);
CREATE INDEX consents_subject ON consents (subject_id);

-- Encrypted face templates: AES-256-GCM with the subject's data key, AAD binding subject id and template id.
CREATE TABLE templates (
    id            TEXT PRIMARY KEY,
    subject_id    TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL REFERENCES subject_keys (id) ON DELETE CASCADE,
    model         TEXT NOT NULL,
    dim           INTEGER NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    source_sha256 TEXT NOT NULL,
    face_index    INTEGER NOT NULL,
    quality       REAL NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (subject_id, source_sha256, face_index)
);
CREATE INDEX templates_source ON templates (source_sha256);
CREATE INDEX templates_created ON templates (created_at);

-- Identification results at or above the threshold, waiting for (or decided by) human review.
CREATE TABLE candidates (
    id           TEXT PRIMARY KEY,
    search_id    TEXT NOT NULL,
    audit_seq    INTEGER NOT NULL,
    gallery      TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    actor        TEXT NOT NULL,
    probe_sha256 TEXT NOT NULL,
    face_index   INTEGER NOT NULL,
    box          TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    similarity   REAL NOT NULL,
    rank         INTEGER NOT NULL,
    threshold    REAL NOT NULL,
    policy_hash  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected')),
    created_at   TEXT NOT NULL,
    decided_at   TEXT
);
CREATE INDEX candidates_status ON candidates (status, created_at);
CREATE INDEX candidates_subject ON candidates (subject_id);

CREATE TABLE reviews (
    id           TEXT PRIMARY KEY,
    candidate_id TEXT NOT NULL REFERENCES candidates (id) ON DELETE CASCADE,
    reviewer     TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('confirm', 'reject')),
    reason       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    UNIQUE (candidate_id, reviewer)
);

-- The hash-chained audit ledger. body is the canonical JSON of the entry (it includes seq and prev_hash);
-- hash = sha256(body). The other columns repeat fields of body for querying and are checked by verify.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    action    TEXT NOT NULL,
    actor     TEXT NOT NULL,
    purpose   TEXT NOT NULL,
    gallery   TEXT,
    body      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit (ts);
CREATE INDEX audit_action ON audit (action);

CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

-- API keys of the REST service. Only the SHA-256 of the token is stored.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'enroller', 'operator', 'reviewer', 'auditor')),
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    TEXT
);
