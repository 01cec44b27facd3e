-- faceledger schema, version 2: video.
--
-- Deployments: the authorisation a live or post-event identification runs under (who authorised it, where, when,
-- which watchlist, how large it may be). Sessions: every `watch` run, its counts and a heartbeat (a session whose
-- heartbeat stopped ended without saying so). Candidates found in video say where and when they were seen.
-- Watchlist entries (enrolled without the person's consent, e.g. under a court order) name their category.

CREATE TABLE deployments (
    name              TEXT PRIMARY KEY,
    gallery           TEXT NOT NULL REFERENCES galleries (name),
    purpose           TEXT NOT NULL,
    legal_basis       TEXT NOT NULL,
    location          TEXT NOT NULL,
    sources           TEXT NOT NULL,  -- JSON list of source patterns, credentials removed
    authorised_by     TEXT NOT NULL,
    authorisation_ref TEXT NOT NULL,
    valid_from        TEXT NOT NULL,
    valid_to          TEXT NOT NULL,
    max_watchlist     INTEGER NOT NULL CHECK (max_watchlist >= 1),
    show_candidates   INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    ended_at          TEXT,
    ended_by          TEXT,
    ended_reason      TEXT
);

CREATE TABLE video_sessions (
    id           TEXT PRIMARY KEY,
    deployment   TEXT NOT NULL REFERENCES deployments (name),
    source       TEXT NOT NULL,  -- credentials removed
    actor        TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at   TEXT,
    stop_reason  TEXT,
    frames       INTEGER NOT NULL DEFAULT 0,
    tracks       INTEGER NOT NULL DEFAULT 0,
    candidates   INTEGER NOT NULL DEFAULT 0,
    dropped      INTEGER NOT NULL DEFAULT 0,
    gaps         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX video_sessions_running ON video_sessions (stopped_at, heartbeat_at);

ALTER TABLE candidates ADD COLUMN source TEXT;
ALTER TABLE candidates ADD COLUMN track INTEGER;
ALTER TABLE candidates ADD COLUMN seen_at TEXT;

ALTER TABLE consents ADD COLUMN category TEXT;
