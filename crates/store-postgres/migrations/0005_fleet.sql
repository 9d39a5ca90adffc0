-- Fleet health (issue #22): each sensor's last report, state and health; its outage log; health
-- issues. Expand only: older builds ignore these tables.

CREATE TABLE fleet_sensors (
    sensor_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    -- The last report (heartbeat JSON) by the sensor's clock, and when it was received.
    body TEXT,
    sensor_time BIGINT,
    received_at BIGINT,
    -- As of the last evaluation.
    state TEXT,
    health TEXT,
    evaluated_at BIGINT
);

CREATE TABLE fleet_outages (
    sensor_id TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT,
    codes TEXT NOT NULL,
    proxy TEXT,
    failures BIGINT NOT NULL,
    PRIMARY KEY (sensor_id, start_ms)
);

-- One row per (sensor, kind), its id derived from them (the same in every backend).
CREATE TABLE fleet_issues (
    issue_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    sensor_id TEXT,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT,
    occurrences BIGINT NOT NULL,
    description TEXT NOT NULL,
    fix TEXT NOT NULL,
    suppressed_until BIGINT,
    suppress_reason TEXT,
    suppressed_by TEXT
);
CREATE INDEX fleet_issues_by_workspace ON fleet_issues (workspace, sensor_id);
