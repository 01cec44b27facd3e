-- faceledger schema, version 2: video. PostgreSQL (the same as migrations/sqlite/0002_video.sql).
--
-- Deployments: the authorisation a live or post-event identification runs under (who authorised it, where, when,
-- which watchlist, how large it may be). Sessions: every `watch` run, its counts and a heartbeat (a session whose
-- heartbeat stopped ended without saying so). Candidates found in video say where and when they were seen.
-- Watchlist entries (enrolled without the person's consent, e.g. under a court order) name their category.

CREATE TABLE deployments (
    name              TEXT COLLATE "C" PRIMARY KEY,
    gallery           TEXT COLLATE "C" NOT NULL REFERENCES galleries (name),
    purpose           TEXT COLLATE "C" NOT NULL,
    legal_basis       TEXT COLLATE "C" NOT NULL,
    location          TEXT COLLATE "C" NOT NULL,
    sources           TEXT COLLATE "C" NOT NULL,  -- JSON list of source patterns, credentials removed
    authorised_by     TEXT COLLATE "C" NOT NULL,
    authorisation_ref TEXT COLLATE "C" NOT NULL,
    valid_from        TEXT COLLATE "C" NOT NULL,
    valid_to          TEXT COLLATE "C" NOT NULL,
    max_watchlist     BIGINT NOT NULL CHECK (max_watchlist >= 1),
    show_candidates   BIGINT NOT NULL DEFAULT 0,
    created_at        TEXT COLLATE "C" NOT NULL,
    created_by        TEXT COLLATE "C" NOT NULL,
    ended_at          TEXT COLLATE "C",
    ended_by          TEXT COLLATE "C",
    ended_reason      TEXT COLLATE "C"
);

CREATE TABLE video_sessions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    deployment   TEXT COLLATE "C" NOT NULL REFERENCES deployments (name),
    source       TEXT COLLATE "C" NOT NULL,  -- credentials removed
    actor        TEXT COLLATE "C" NOT NULL,
    started_at   TEXT COLLATE "C" NOT NULL,
    heartbeat_at TEXT COLLATE "C" NOT NULL,
    stopped_at   TEXT COLLATE "C",
    stop_reason  TEXT COLLATE "C",
    frames       BIGINT NOT NULL DEFAULT 0,
    tracks       BIGINT NOT NULL DEFAULT 0,
    candidates   BIGINT NOT NULL DEFAULT 0,
    dropped      BIGINT NOT NULL DEFAULT 0,
    gaps         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX video_sessions_running ON video_sessions (stopped_at, heartbeat_at);

ALTER TABLE candidates ADD COLUMN source TEXT COLLATE "C";
ALTER TABLE candidates ADD COLUMN track BIGINT;
ALTER TABLE candidates ADD COLUMN seen_at TEXT COLLATE "C";

ALTER TABLE consents ADD COLUMN category TEXT COLLATE "C";
