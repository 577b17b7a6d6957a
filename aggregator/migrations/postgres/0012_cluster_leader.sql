-- Two or more aggregators on one database elect one leader (cluster/): the
-- leader holds the session advisory lock hashtext('vigil_aggregator_leader')
-- on a dedicated connection and, on taking it, bumps the epoch in this
-- one-row table. Writes that must come from the leader only (outbox claims
-- and inserts) check the epoch in the same statement, so an old leader that
-- has not yet noticed it lost the lock is fenced off.
CREATE TABLE cluster_leader (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    epoch    BIGINT NOT NULL,
    node     TEXT NOT NULL,
    since_ms BIGINT NOT NULL
);

-- The epoch of the leader that claimed a row for sending (NULL: not in
-- flight). A new leader makes rows claimed under an older epoch due again
-- soon after it takes over, instead of waiting out the 5-minute lease.
ALTER TABLE notification_outbox ADD COLUMN claimed_epoch BIGINT;
