-- faceledger schema, version 3: evidence a reviewer can look at.
--
-- Evidence: the face that raised a candidate (its aligned crop and a bounded context crop around it, other faces in
-- the context blurred), encrypted with a key of its own that the master key wraps. Deleted with the candidate
-- (rejection, erasure, retention); never written for a face that matched no one.
-- Reference faces: the aligned crop of each enrolled image, encrypted with the subject's data key, so erasure
-- (which destroys that key and deletes the rows) shreds them with the templates.

CREATE TABLE evidence (
    candidate_id  TEXT PRIMARY KEY REFERENCES candidates (id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    wrapped_key   BLOB NOT NULL,
    master_key_id TEXT NOT NULL,
    face_nonce    BLOB NOT NULL,
    face          BLOB NOT NULL,   -- aligned crop, JPEG, encrypted
    context_nonce BLOB NOT NULL,
    context       BLOB NOT NULL,   -- context crop, JPEG of bounded size, encrypted
    quality       REAL NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE reference_faces (
    template_id TEXT PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    subject_id  TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    nonce       BLOB NOT NULL,
    image       BLOB NOT NULL,     -- aligned crop, JPEG, encrypted with the subject's data key
    created_at  TEXT NOT NULL
);
CREATE INDEX reference_faces_subject ON reference_faces (subject_id);
