-- faceledger schema, version 7: request rate limits shared by every service process of a database. PostgreSQL (the same as migrations/sqlite/0007_rate_limits.sql).
--
-- One token bucket per API key: the tokens left and when they were counted (seconds since the epoch, from the
-- clock of the host that counted). Service processes on several hosts take their tokens here, each in a short
-- transaction of its own that locks the key's row only (not the ledger's write lock). Holds no personal data: key
-- ids only, and nothing here is on the ledger.

CREATE TABLE rate_buckets (
    key     TEXT COLLATE "C" PRIMARY KEY,
    tokens  DOUBLE PRECISION NOT NULL,
    counted DOUBLE PRECISION NOT NULL
);
