-- faceledger schema, version 1, PostgreSQL (migrations/sqlite/0001_initial.sql is the same schema for SQLite).
--
-- The tables, columns and constraints are those of the SQLite schema, so the queries (faceledger/ledger/sql_tx.py)
-- are written once: timestamps are TEXT in ISO 8601 UTC (fixed width, so text order is time order), binary values
-- BYTEA, JSON values TEXT, ids TEXT chosen by the application (no sequences), integers BIGINT, real numbers DOUBLE
-- PRECISION (SQLite's REAL is 8 bytes too). Text columns use the "C" collation: byte order, as in SQLite, whatever
-- locale the database was created with, so listings, range conditions on timestamps and seals agree on both.
-- The append-only rule of the audit table is a plpgsql trigger function at the end.

-- Key/value facts about this database: data_version (bumped whenever templates change, so search
-- indexes in other processes know to reload), audit head, master key id, active policy hash, recognizer.
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

-- Every policy that was ever in force, by the SHA-256 of its text. meta.policy_hash names the active one.
CREATE TABLE policies (
    hash       TEXT COLLATE "C" PRIMARY KEY,
    body       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL
);

CREATE TABLE galleries (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_at TEXT COLLATE "C" NOT NULL
);

-- A subject exists while it has enrolled templates (or is being enrolled). Erasure deletes the row.
CREATE TABLE subjects (
    id         TEXT COLLATE "C" PRIMARY KEY,
    gallery    TEXT COLLATE "C" NOT NULL REFERENCES galleries (name),
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL
);

-- The subject's data key (AES-256-GCM), wrapped by the master key. Destroying this row makes every copy of the
-- subject's templates (backups, old WAL pages) unreadable.
CREATE TABLE subject_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    subject_id    TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES subjects (id) ON DELETE CASCADE,
    wrapped       BYTEA NOT NULL,
    master_key_id TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL
);

-- Consent records outlive the templates they allowed (to prove past processing was lawful) until the consent
-- retention period after they end; they hold no biometric data, so subject_id is not a foreign key.
CREATE TABLE consents (
    id           TEXT COLLATE "C" PRIMARY KEY,
    subject_id   TEXT COLLATE "C" NOT NULL,
    gallery      TEXT COLLATE "C" NOT NULL REFERENCES galleries (name),
    collected_by TEXT COLLATE "C" NOT NULL,
    legal_basis  TEXT COLLATE "C" NOT NULL,
    purpose      TEXT COLLATE "C" NOT NULL,
    evidence_ref TEXT COLLATE "C" NOT NULL,
    given_at     TEXT COLLATE "C" NOT NULL,
    expires_at   TEXT COLLATE "C",
    withdrawn_at TEXT COLLATE "C",
    ended_reason TEXT COLLATE "C",
    recorded_at  TEXT COLLATE "C" NOT NULL,
    recorded_by  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX consents_subject ON consents (subject_id);

-- Encrypted face templates: AES-256-GCM with the subject's data key, AAD binding subject id and template id.
CREATE TABLE templates (
    id            TEXT COLLATE "C" PRIMARY KEY,
    subject_id    TEXT COLLATE "C" NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    key_id        TEXT COLLATE "C" NOT NULL REFERENCES subject_keys (id) ON DELETE CASCADE,
    model         TEXT COLLATE "C" NOT NULL,
    dim           BIGINT NOT NULL,
    nonce         BYTEA NOT NULL,
    ciphertext    BYTEA NOT NULL,
    source_sha256 TEXT COLLATE "C" NOT NULL,
    face_index    BIGINT NOT NULL,
    quality       DOUBLE PRECISION NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    UNIQUE (subject_id, source_sha256, face_index)
);
CREATE INDEX templates_source ON templates (source_sha256);
CREATE INDEX templates_created ON templates (created_at);

-- Identification results at or above the threshold, waiting for (or decided by) human review.
CREATE TABLE candidates (
    id           TEXT COLLATE "C" PRIMARY KEY,
    search_id    TEXT COLLATE "C" NOT NULL,
    audit_seq    BIGINT NOT NULL,
    gallery      TEXT COLLATE "C" NOT NULL,
    purpose      TEXT COLLATE "C" NOT NULL,
    actor        TEXT COLLATE "C" NOT NULL,
    probe_sha256 TEXT COLLATE "C" NOT NULL,
    face_index   BIGINT NOT NULL,
    box          TEXT COLLATE "C" NOT NULL,
    subject_id   TEXT COLLATE "C" NOT NULL,
    similarity   DOUBLE PRECISION NOT NULL,
    rank         BIGINT NOT NULL,
    threshold    DOUBLE PRECISION NOT NULL,
    policy_hash  TEXT COLLATE "C" NOT NULL,
    status       TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected')),
    created_at   TEXT COLLATE "C" NOT NULL,
    decided_at   TEXT COLLATE "C"
);
CREATE INDEX candidates_status ON candidates (status, created_at);
CREATE INDEX candidates_subject ON candidates (subject_id);

CREATE TABLE reviews (
    id           TEXT COLLATE "C" PRIMARY KEY,
    candidate_id TEXT COLLATE "C" NOT NULL REFERENCES candidates (id) ON DELETE CASCADE,
    reviewer     TEXT COLLATE "C" NOT NULL,
    decision     TEXT COLLATE "C" NOT NULL CHECK (decision IN ('confirm', 'reject')),
    reason       TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    UNIQUE (candidate_id, reviewer)
);

-- The hash-chained audit ledger. body is the canonical JSON of the entry (it includes seq and prev_hash);
-- hash = sha256(body). The other columns repeat fields of body for querying and are checked by verify.
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    ts        TEXT COLLATE "C" NOT NULL,
    action    TEXT COLLATE "C" NOT NULL,
    actor     TEXT COLLATE "C" NOT NULL,
    purpose   TEXT COLLATE "C" NOT NULL,
    gallery   TEXT COLLATE "C",
    body      TEXT COLLATE "C" NOT NULL,
    prev_hash TEXT COLLATE "C" NOT NULL,
    hash      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_ts ON audit (ts);
CREATE INDEX audit_action ON audit (action);

CREATE FUNCTION faceledger_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only' USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
FOR EACH ROW EXECUTE FUNCTION faceledger_audit_append_only();

-- API keys of the REST service. Only the SHA-256 of the token is stored.
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL,
    role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'enroller', 'operator', 'reviewer', 'auditor')),
    secret_sha256 TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at    TEXT COLLATE "C" NOT NULL,
    created_by    TEXT COLLATE "C" NOT NULL,
    revoked_at    TEXT COLLATE "C"
);
