-- faceledger schema, version 7: request rate limits shared by every service process of a database.
--
-- One token bucket per API key: the tokens left and when they were counted (seconds since the epoch, from the
-- clock of the host that counted). Used by the PostgreSQL store, where service processes on several hosts must
-- hold one limit together; an SQLite database (one host) has the table but its processes keep their buckets in
-- memory. Holds no personal data: key ids only, and nothing here is on the ledger.

CREATE TABLE rate_buckets (
    key     TEXT PRIMARY KEY,
    tokens  REAL NOT NULL,
    counted REAL NOT NULL
);
