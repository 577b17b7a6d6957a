-- Agent enrollment and key rotation (aggregator/src/store/enroll.rs).

-- One-time enrollment tokens. Only the SHA-256 of a token is stored; `id`
-- (the first 12 hex characters of that hash) names it in listings and
-- revocation. A token is live while unused, unrevoked and unexpired;
-- `agent_id`, when set, is the only id it may enroll (and it may re-key an
-- existing agent of that id).
CREATE TABLE enroll_tokens (
    id            TEXT PRIMARY KEY,
    sha256        BLOB NOT NULL UNIQUE,
    agent_id      TEXT,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER,
    used_by       TEXT,
    revoked_at_ms INTEGER
);

-- After a rotation the previous signing key is still accepted until
-- `previous_valid_until_ms`, so batches the agent spooled before it are not lost.
ALTER TABLE agents ADD COLUMN previous_public_key BLOB
    CHECK (previous_public_key IS NULL OR length(previous_public_key) = 32);
ALTER TABLE agents ADD COLUMN previous_valid_until_ms INTEGER;
