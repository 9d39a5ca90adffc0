-- uplink's PostgreSQL schema, version 1. Applied once, in a transaction, under the migration
-- advisory lock (see src/migrate.rs). Later versions add files; none edits an applied one.

CREATE TABLE workspaces (
    name TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    public_port INTEGER NOT NULL,
    ca_cert_pem TEXT NOT NULL,
    ca_key_pem TEXT NOT NULL,
    ca_sha256 TEXT NOT NULL,
    access_key_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE sensors (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor_id TEXT NOT NULL UNIQUE,
    workspace TEXT NOT NULL REFERENCES workspaces (name),
    name TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    -- SHA-256 of the public key: one key, one sensor per workspace (a replayed CSR is refused).
    key_sha256 TEXT,
    enrolled_at BIGINT NOT NULL,
    -- Written in batches every few seconds, not by each request.
    last_seen BIGINT
);
CREATE INDEX sensors_by_workspace ON sensors (workspace);
CREATE UNIQUE INDEX sensors_by_key ON sensors (workspace, key_sha256);

-- Each (sensor, seq) once: retried batches insert nothing twice.
CREATE TABLE events (
    sensor BIGINT NOT NULL REFERENCES sensors (id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (sensor, seq)
);

-- Event counts per sensor and kind, updated in the statement that inserts the events. Keyed by
-- sensor, so concurrent batches of different sensors never update the same row (no hot counter
-- row); `workspace stats` sums a workspace's rows: its cost grows with sensors × kinds, never
-- with events.
CREATE TABLE kind_counts (
    sensor BIGINT NOT NULL REFERENCES sensors (id),
    kind TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (sensor, kind)
);
