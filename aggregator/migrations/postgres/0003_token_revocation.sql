-- API tokens can be revoked (kept for the audit trail, rejected from then on).
ALTER TABLE api_tokens ADD COLUMN revoked_at_ms bigint;
