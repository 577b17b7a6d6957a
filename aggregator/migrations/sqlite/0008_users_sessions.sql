-- Operator accounts and web sessions (aggregator/src/store/users.rs).

-- One row per operator. `password_hash` is an Argon2id PHC string; the
-- password itself is never stored. Disabled users cannot sign in.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- Signed-in browsers. The key is the SHA-256 of the session id the cookie
-- holds, so a leaked table cannot be replayed as cookies. A session ends at
-- `expires_at_ms` (absolute lifetime) or when `last_seen_ms` is older than
-- the idle timeout; expired rows are pruned.
CREATE TABLE sessions (
    id_sha256     BLOB PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_expires ON sessions (expires_at_ms);
