-- Creating a partition raced: two sessions asking for the same new day could
-- both see it missing (to_regclass after the advisory lock may still answer
-- from a catalog cache that has not seen the other session's commit), and
-- the second CREATE failed with "already exists" (the batch was refused as
-- unavailable and retried: nothing lost, but a needless error). A partition
-- that appeared meanwhile is now what was asked for.
CREATE OR REPLACE FUNCTION vigil_ensure_partition(day_start bigint) RETURNS void
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
EXCEPTION WHEN duplicate_table THEN
    NULL;
END
$$;

CREATE OR REPLACE FUNCTION vigil_ensure_range_partition(parent text, range_start bigint, width bigint) RETURNS void
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
EXCEPTION WHEN duplicate_table THEN
    NULL;
END
$$;
