-- The notification outbox: one row per notification and receiver
-- integration, kept until delivered (then pruned after a week).
-- status: pending -> delivered | skipped | failed | superseded (a newer
-- notification of the same group went out first).
CREATE TABLE notification_outbox (
    id                 BIGSERIAL PRIMARY KEY,
    dedup_key          TEXT NOT NULL,
    receiver           TEXT NOT NULL,
    integration        TEXT NOT NULL,
    group_key          TEXT NOT NULL,
    payload            TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'pending',
    created_at_ms      BIGINT NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    last_error         TEXT,
    delivered_at_ms    BIGINT,
    UNIQUE (dedup_key, integration)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at_ms)
    WHERE status = 'pending';
CREATE INDEX notification_outbox_created ON notification_outbox (created_at_ms);
