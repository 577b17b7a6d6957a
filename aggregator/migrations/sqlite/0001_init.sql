-- Vigil schema, SQLite. Timestamps are milliseconds since the Unix epoch.

CREATE TABLE agents (
    agent_id         TEXT PRIMARY KEY,
    public_key       BLOB NOT NULL CHECK (length(public_key) = 32),
    registered_at_ms INTEGER NOT NULL,
    revoked_at_ms    INTEGER
);

CREATE TABLE hosts (
    agent_id       TEXT PRIMARY KEY,
    hostname       TEXT NOT NULL,
    roles          TEXT NOT NULL,          -- JSON array of strings
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    samples_stored INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE ingested_batches (
    agent_id       TEXT NOT NULL,
    boot_id        BLOB NOT NULL,
    sequence       INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    samples        INTEGER NOT NULL,
    PRIMARY KEY (agent_id, boot_id, sequence)
) WITHOUT ROWID;

CREATE TABLE series (
    id     INTEGER PRIMARY KEY,
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (metric, labels)
);

-- value is NULL for NaN: SQLite turns NaN into NULL on its own.
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE api_tokens (
    name          TEXT PRIMARY KEY,
    token_sha256  BLOB NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
