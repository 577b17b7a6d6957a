-- Type, help and unit per metric name (last written wins), for the
-- Prometheus API's /metadata. Agents resend it with every batch; the
-- aggregator writes only what changed.
CREATE TABLE metric_metadata (
    name text PRIMARY KEY,
    type text NOT NULL,
    help text NOT NULL,
    unit text NOT NULL,
    updated_at_ms bigint NOT NULL
);
