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
