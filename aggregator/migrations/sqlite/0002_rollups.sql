-- Rollups of samples per series and bucket (1 minute, 1 hour). SQLite has
-- no partitions: retention deletes by time range in batches.
CREATE TABLE samples_1m (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    min       REAL,
    max       REAL,
    sum       REAL,
    count     INTEGER NOT NULL,
    last      REAL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE samples_1h (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    min       REAL,
    max       REAL,
    sum       REAL,
    count     INTEGER NOT NULL,
    last      REAL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE rollup_watermarks (
    resolution TEXT PRIMARY KEY,
    upto_ms    INTEGER NOT NULL
);
