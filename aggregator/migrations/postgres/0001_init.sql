-- Vigil schema, PostgreSQL. Timestamps are milliseconds since the Unix epoch.

CREATE TABLE agents (
    agent_id         text PRIMARY KEY,
    public_key       bytea NOT NULL CHECK (length(public_key) = 32),
    registered_at_ms bigint NOT NULL,
    revoked_at_ms    bigint
);

CREATE TABLE hosts (
    agent_id       text PRIMARY KEY,
    hostname       text NOT NULL,
    roles          text NOT NULL,          -- JSON array of strings
    first_seen_ms  bigint NOT NULL,
    last_seen_ms   bigint NOT NULL,
    samples_stored bigint NOT NULL DEFAULT 0
);

-- One row per committed batch: the dedup key for retries and replays.
CREATE TABLE ingested_batches (
    agent_id       text NOT NULL,
    boot_id        bytea NOT NULL,
    sequence       bigint NOT NULL,
    received_at_ms bigint NOT NULL,
    samples        bigint NOT NULL,
    PRIMARY KEY (agent_id, boot_id, sequence)
);

CREATE TABLE series (
    id     bigserial PRIMARY KEY,
    metric text NOT NULL,
    labels text NOT NULL                   -- canonical JSON object, keys sorted
);
-- md5 keeps the index entry small whatever the label set's size.
CREATE UNIQUE INDEX series_identity ON series (metric, md5(labels));

-- Partitioned by day on ts; partitions are created on demand by
-- vigil_ensure_partition and dropped whole by retention.
CREATE TABLE samples (
    series_id bigint NOT NULL,
    ts        bigint NOT NULL,
    value     double precision NOT NULL,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE api_tokens (
    name          text PRIMARY KEY,
    token_sha256  bytea NOT NULL UNIQUE,
    role          text NOT NULL,
    created_at_ms bigint NOT NULL
);

-- Creates the partition of `samples` holding the UTC day that starts at
-- day_start (ms), if it does not exist. The advisory lock serialises
-- concurrent creators so none fails with "already exists".
CREATE FUNCTION vigil_ensure_partition(day_start bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'samples_' || to_char(to_timestamp(day_start / 1000.0) AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vigil_samples_partitions'));
    IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF samples FOR VALUES FROM (%s) TO (%s)',
                       part, day_start, day_start + 86400000);
    END IF;
END
$$;
