-- SQLite is single-node (one writer, one file): there is no leader election,
-- but the outbox statements are shared with PostgreSQL, so the column that
-- records which leader epoch claimed a row exists here too (always 0).
ALTER TABLE notification_outbox ADD COLUMN claimed_epoch BIGINT;
