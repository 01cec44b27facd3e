-- faceledger schema, version 4: people who sign in to the web UI.
--
-- Users: a name, one of the five roles, an argon2id password hash (never the password). Web sessions: only the
-- SHA-256 of the session cookie is stored; the role is read again from the user or API key at every request, so a
-- disabled user or a revoked key is signed out at once.

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'enroller', 'operator', 'reviewer', 'auditor')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    disabled_at   TEXT
);

CREATE TABLE web_sessions (
    id_sha256  TEXT PRIMARY KEY,
    user_name  TEXT REFERENCES users (name),
    key_id     TEXT REFERENCES api_keys (id),
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    ended_at   TEXT,
    CHECK ((user_name IS NULL) <> (key_id IS NULL))
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
