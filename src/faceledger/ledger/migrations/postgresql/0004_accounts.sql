-- faceledger schema, version 4: people who sign in to the web UI. PostgreSQL (the same as migrations/sqlite/0004_accounts.sql).
--
-- Users: a name, one of the five roles, an argon2id password hash (never the password). Web sessions: only the
-- SHA-256 of the session cookie is stored; the role is read again from the user or API key at every request, so a
-- disabled user or a revoked key is signed out at once.

CREATE TABLE users (
    name          TEXT COLLATE "C" PRIMARY KEY,
    role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'enroller', 'operator', 'reviewer', 'auditor')),
    password_hash TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    created_by    TEXT COLLATE "C" NOT NULL,
    disabled_at   TEXT COLLATE "C"
);

CREATE TABLE web_sessions (
    id_sha256  TEXT COLLATE "C" PRIMARY KEY,
    user_name  TEXT COLLATE "C" REFERENCES users (name),
    key_id     TEXT COLLATE "C" REFERENCES api_keys (id),
    csrf       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL,
    ended_at   TEXT COLLATE "C",
    CHECK ((user_name IS NULL) <> (key_id IS NULL))
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
