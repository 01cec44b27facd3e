-- faceledger schema, version 8: a log of the rows a search index depends on. PostgreSQL (the same as
-- migrations/sqlite/0008_index_changes.sql).
--
-- One row per template added, deleted or altered (with its subject) and per subject or consent row added,
-- deleted or altered (template_id NULL), written by statement-level triggers over the statement's transition
-- tables (one INSERT ... SELECT per statement: a bulk insert of a million templates logs them in one statement);
-- a change made outside faceledger is logged too. seq is handed out in order and faceledger's writers commit one
-- at a time (the write lock), so a reader never sees a later seq without the earlier ones. The store keeps the
-- latest rows only (meta index_changes_pruned: the last seq pruned); an index older than that loads the whole
-- gallery again. Holds no biometric data: ids only, as the ledger's own entries.

CREATE TABLE index_changes (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id  TEXT COLLATE "C" NOT NULL,
    template_id TEXT COLLATE "C"
);

-- TG_TABLE_NAME tells which table, TG_OP which transition tables exist (old_rows on DELETE and UPDATE, new_rows
-- on INSERT and UPDATE); PostgreSQL allows transition tables on single-event triggers only, hence three each
CREATE FUNCTION faceledger_index_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF TG_TABLE_NAME = 'templates' THEN
            INSERT INTO index_changes (subject_id, template_id) SELECT subject_id, id FROM old_rows;
        ELSIF TG_TABLE_NAME = 'subjects' THEN
            INSERT INTO index_changes (subject_id) SELECT id FROM old_rows;
        ELSE
            INSERT INTO index_changes (subject_id) SELECT subject_id FROM old_rows;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF TG_TABLE_NAME = 'templates' THEN
            INSERT INTO index_changes (subject_id, template_id) SELECT subject_id, id FROM new_rows;
        ELSIF TG_TABLE_NAME = 'subjects' THEN
            INSERT INTO index_changes (subject_id) SELECT id FROM new_rows;
        ELSE
            INSERT INTO index_changes (subject_id) SELECT subject_id FROM new_rows;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER index_changes_template_added AFTER INSERT ON templates
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();
CREATE TRIGGER index_changes_template_deleted AFTER DELETE ON templates
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();
CREATE TRIGGER index_changes_template_altered AFTER UPDATE ON templates
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();

CREATE TRIGGER index_changes_subject_added AFTER INSERT ON subjects
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();
CREATE TRIGGER index_changes_subject_deleted AFTER DELETE ON subjects
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();
CREATE TRIGGER index_changes_subject_altered AFTER UPDATE ON subjects
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();

CREATE TRIGGER index_changes_consent_added AFTER INSERT ON consents
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();
CREATE TRIGGER index_changes_consent_deleted AFTER DELETE ON consents
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();
CREATE TRIGGER index_changes_consent_altered AFTER UPDATE ON consents
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION faceledger_index_changes();
