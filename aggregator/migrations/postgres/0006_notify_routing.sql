-- Notification routing state (aggregator/src/notify/): silences,
-- maintenance windows, and the notification log that keeps a restart from
-- re-sending a group state that was already notified.

-- Alertmanager-style silences. Expired ones stay (history) until GC'd.
CREATE TABLE silences (
    id text PRIMARY KEY,
    -- JSON array of {name, value, isRegex, isEqual}.
    matchers text NOT NULL,
    starts_at_ms bigint NOT NULL,
    ends_at_ms bigint NOT NULL,
    created_by text NOT NULL,
    comment text NOT NULL,
    updated_at_ms bigint NOT NULL
);
CREATE INDEX silences_ends_at ON silences (ends_at_ms);

-- Maintenance: one host (host set) or everything (host NULL).
CREATE TABLE maintenance_windows (
    id text PRIMARY KEY,
    host text,
    starts_at_ms bigint NOT NULL,
    -- NULL: until stopped.
    ends_at_ms bigint,
    comment text NOT NULL,
    created_by text NOT NULL,
    stopped_at_ms bigint,
    stopped_by text
);

-- Alertmanager's nflog: the last notification per (group, receiver).
CREATE TABLE notification_log (
    group_key text NOT NULL,
    receiver text NOT NULL,
    -- JSON arrays of alert fingerprints (decimal strings).
    firing text NOT NULL,
    resolved text NOT NULL,
    -- Notifications sent for this (group, receiver) so far: part of the
    -- dedup key, so a re-enqueue after a crash is recognised by the outbox.
    seq bigint NOT NULL,
    sent_at_ms bigint NOT NULL,
    PRIMARY KEY (group_key, receiver)
);
