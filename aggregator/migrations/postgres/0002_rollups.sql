-- Rollups of samples per series and bucket (1 minute, 1 hour), partitioned
-- by time like samples so retention drops whole partitions.
CREATE TABLE samples_1m (
    series_id bigint NOT NULL,
    ts        bigint NOT NULL,            -- bucket start, ms
    min       double precision,
    max       double precision,
    sum       double precision,
    count     bigint NOT NULL,
    last      double precision,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE samples_1h (
    series_id bigint NOT NULL,
    ts        bigint NOT NULL,
    min       double precision,
    max       double precision,
    sum       double precision,
    count     bigint NOT NULL,
    last      double precision,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

-- Per resolution: raw samples before upto_ms are rolled up.
CREATE TABLE rollup_watermarks (
    resolution text PRIMARY KEY,
    upto_ms    bigint NOT NULL
);

-- Creates the partition of `parent` covering [range_start, range_start + width).
CREATE FUNCTION vigil_ensure_range_partition(parent text, range_start bigint, width bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := parent || '_p' || range_start;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vigil_samples_partitions'));
    IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                       part, parent, range_start, range_start + width);
    END IF;
END
$$;

-- Drops every partition of `parent` whose upper bound is at or before
-- `before_ms`; returns how many were dropped.
CREATE FUNCTION vigil_drop_partitions_before(parent text, before_ms bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    upper bigint;
    dropped integer := 0;
BEGIN
    FOR r IN SELECT c.oid::regclass::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = parent::regclass
    LOOP
        upper := (regexp_match(r.bound, 'TO \(''?(-?[0-9]+)''?\)'))[1]::bigint;
        IF upper IS NOT NULL AND upper <= before_ms THEN
            EXECUTE format('DROP TABLE %s', r.name);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END
$$;
