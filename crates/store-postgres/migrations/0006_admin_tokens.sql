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

-- Webhooks of a workspace and their delivery log (issue #23). A fleet evaluation records one
-- delivery per webhook for each issue it opens, closes or reopens, in its own transaction;
-- replicas claim due deliveries with a lease (FOR UPDATE SKIP LOCKED), so each is sent by one.
CREATE TABLE webhooks (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    PRIMARY KEY (workspace, url)
);
CREATE TABLE webhook_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
