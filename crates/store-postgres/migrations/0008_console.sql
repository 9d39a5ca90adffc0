-- Version 8: the web console (issue #25): local accounts (an Argon2id hash each, never the
-- password), sessions (the SHA-256 of the cookie's secret, never the secret) and consecutive
-- failed logins per name, shared by every replica. A workspace's deletion removes them all; a
-- user's removal removes its sessions. Expand only: an older build ignores the tables.

CREATE TABLE console_users (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, name)
);
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    FOREIGN KEY (workspace, username) REFERENCES console_users(workspace, name) ON DELETE CASCADE
);
CREATE TABLE console_login_failures (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, name)
);
