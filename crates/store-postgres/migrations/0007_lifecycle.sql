-- Version 7: sensor lifecycle (issue #24). One row per revoked sensor, removed with the sensor;
-- revoking appends a 'revoked' entry to the change log in the same transaction, so every replica
-- reloads the workspace's revoked set at its next poll. Version 6 is the admin API's (#23).
-- Expand only: an older build ignores the table (and keeps serving revoked sensors until it is
-- upgraded).

CREATE TABLE revocations (
    sensor_id TEXT PRIMARY KEY REFERENCES sensors (sensor_id) ON DELETE CASCADE,
    workspace TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    decommissioned BOOLEAN NOT NULL DEFAULT FALSE,
    cert_sha256 TEXT NOT NULL
);
CREATE INDEX revocations_by_workspace ON revocations (workspace);

-- Every certificate issued to a sensor (enrollment, renewal), so the workspace's CRL lists every
-- certificate of a revoked sensor, not only its last one.
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    sensor_id TEXT NOT NULL REFERENCES sensors (sensor_id) ON DELETE CASCADE,
    cert_sha256 TEXT NOT NULL,
    issued_at BIGINT NOT NULL
);
CREATE INDEX certificates_by_sensor ON certificates (sensor_id);

-- The audit trail: enrollments (and refused ones), renewals, revocations, decommissions; who,
-- from where, with what result. Kept when a workspace is deleted (it is the record of what
-- happened).
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    sensor_id TEXT,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_workspace ON audit (workspace, id);
