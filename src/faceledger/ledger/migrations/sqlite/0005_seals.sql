-- faceledger schema, version 5: seals binding the records that decide who may be searched, and what a search means,
-- to the audit entry that last created or changed them (see faceledger/ledger/seals.py).
--
-- One row per sealed record: its kind ('consent', 'api_key', 'user', 'candidate', 'review', 'deployment',
-- 'subject'), its key (the record's id or name), the seq of the entry of the transaction that last wrote it, and an
-- HMAC-SHA256 over the kind, key, seq and the record's fields, with a key derived from the master key. Someone who
-- can write the database but does not hold the master key cannot make a seal for a record they changed or inserted.
-- A seal without its record is a record deleted outside faceledger.

CREATE TABLE seals (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    mac  TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
