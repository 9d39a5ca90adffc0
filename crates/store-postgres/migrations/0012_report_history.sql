-- Version 12: each sensor's report history for the console's charts (issue #25): one row per
-- sensor per bucket of time, upserted with each report, rows older than 7 days removed in the
-- same write. Version 11 is another piece of work's. Expand only: an older build ignores it.
-- A workspace's deletion removes its points; a decommissioned sensor's age out with the rest.

CREATE TABLE report_points (
    sensor_id TEXT NOT NULL,
    workspace TEXT NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
    bucket BIGINT NOT NULL,
    at BIGINT NOT NULL,
    backlog BIGINT NOT NULL,
    delivered BIGINT,
    latency_secs BIGINT,
    first_route TEXT NOT NULL,
    route TEXT NOT NULL,
    route_changes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor_id, bucket)
);
CREATE INDEX report_points_by_bucket ON report_points (bucket);
