-- faceledger schema, version 8: a log of the rows a search index depends on, so that a process whose index is
-- loaded brings it up to date by reading what changed since its last search, not every template of the gallery.
--
-- One row per template added, deleted or altered (with its subject) and per subject or consent row added,
-- deleted or altered (template_id NULL), written by triggers: a change made outside faceledger is logged too.
-- seq only grows (AUTOINCREMENT: a pruned number is never given again). The store keeps the latest rows only
-- (meta index_changes_pruned: the last seq pruned); an index older than that loads the whole gallery again.
-- Holds no biometric data: ids only, as the ledger's own entries.

CREATE TABLE index_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id  TEXT NOT NULL,
    template_id TEXT
);

CREATE TRIGGER index_changes_template_added AFTER INSERT ON templates
BEGIN
    INSERT INTO index_changes (subject_id, template_id) VALUES (NEW.subject_id, NEW.id);
END;

CREATE TRIGGER index_changes_template_deleted AFTER DELETE ON templates
BEGIN
    INSERT INTO index_changes (subject_id, template_id) VALUES (OLD.subject_id, OLD.id);
END;

CREATE TRIGGER index_changes_template_altered AFTER UPDATE ON templates
BEGIN
    INSERT INTO index_changes (subject_id, template_id) VALUES (OLD.subject_id, OLD.id), (NEW.subject_id, NEW.id);
END;

CREATE TRIGGER index_changes_subject_added AFTER INSERT ON subjects
BEGIN
    INSERT INTO index_changes (subject_id) VALUES (NEW.id);
END;

CREATE TRIGGER index_changes_subject_deleted AFTER DELETE ON subjects
BEGIN
    INSERT INTO index_changes (subject_id) VALUES (OLD.id);
END;

CREATE TRIGGER index_changes_subject_altered AFTER UPDATE ON subjects
BEGIN
    INSERT INTO index_changes (subject_id) VALUES (OLD.id), (NEW.id);
END;

CREATE TRIGGER index_changes_consent_added AFTER INSERT ON consents
BEGIN
    INSERT INTO index_changes (subject_id) VALUES (NEW.subject_id);
END;

CREATE TRIGGER index_changes_consent_deleted AFTER DELETE ON consents
BEGIN
    INSERT INTO index_changes (subject_id) VALUES (OLD.subject_id);
END;

CREATE TRIGGER index_changes_consent_altered AFTER UPDATE ON consents
BEGIN
    INSERT INTO index_changes (subject_id) VALUES (OLD.subject_id), (NEW.subject_id);
END;
