-- faceledger schema, version 3: evidence a reviewer can look at. PostgreSQL (the same as migrations/sqlite/0003_evidence.sql).
--
-- Evidence: the face that raised a candidate (its aligned crop and a bounded context crop around it, other faces in
-- the context blurred), encrypted with a key of its own that the master key wraps. Deleted with the candidate
-- (rejection, erasure, retention); never written for a face that matched no one.
-- Reference faces: the aligned crop of each enrolled image, encrypted with the subject's data key, so erasure
-- (which destroys that key and deletes the rows) shreds them with the templates.

CREATE TABLE evidence (
    candidate_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES candidates (id) ON DELETE CASCADE,
    key_id        TEXT COLLATE "C" NOT NULL,
    wrapped_key   BYTEA NOT NULL,
    master_key_id TEXT COLLATE "C" NOT NULL,
    face_nonce    BYTEA NOT NULL,
    face          BYTEA NOT NULL,   -- aligned crop, JPEG, encrypted
    context_nonce BYTEA NOT NULL,
    context       BYTEA NOT NULL,   -- context crop, JPEG of bounded size, encrypted
    quality       DOUBLE PRECISION NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE reference_faces (
    template_id TEXT COLLATE "C" PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    subject_id  TEXT COLLATE "C" NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    nonce       BYTEA NOT NULL,
    image       BYTEA NOT NULL,     -- aligned crop, JPEG, encrypted with the subject's data key
    created_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX reference_faces_subject ON reference_faces (subject_id);
