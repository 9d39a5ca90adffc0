-- Version 6: admin API tokens (issue #23). Only the SHA-256 of each secret is stored (the secret
-- is 256 random bits: a plain hash cannot be reversed by guessing). A workspace's deletion removes
-- its tokens (ON DELETE CASCADE). Expand only: an older build ignores the table.

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace, name)
);
