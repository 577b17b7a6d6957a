-- The audit log (aggregator/src/audit/): one row per state change made by an
-- operator, a token, the CLI or the aggregator itself. Rows are only ever
-- inserted; `details` is JSON text that never holds a secret.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at_ms      bigint NOT NULL,
    actor_kind text NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    details    text NOT NULL,
    source     text
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
