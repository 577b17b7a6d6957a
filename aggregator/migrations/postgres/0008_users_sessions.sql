-- Operator accounts and web sessions (aggregator/src/store/users.rs).

-- One row per operator. `password_hash` is an Argon2id PHC string; the
-- password itself is never stored. Disabled users cannot sign in.
CREATE TABLE users (
    name          text PRIMARY KEY,
    role          text NOT NULL,
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- Signed-in browsers. The key is the SHA-256 of the session id the cookie
-- holds, so a leaked table cannot be replayed as cookies. A session ends at
-- `expires_at_ms` (absolute lifetime) or when `last_seen_ms` is older than
-- the idle timeout; expired rows are pruned.
CREATE TABLE sessions (
    id_sha256     bytea PRIMARY KEY,
    user_name     text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at_ms bigint NOT NULL,
    last_seen_ms  bigint NOT NULL,
    expires_at_ms bigint NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_expires ON sessions (expires_at_ms);
