-- Version 10: sensor lifecycle, part 2 (issue #24). Sensors that uninstalled themselves; a workspace's lifecycle settings (client
-- certificate validity, enrollment limits; NULL: the default), so every replica issues and
-- limits alike; and the fixed-window counters of those limits, shared by the replicas (a row per
-- scope and window, removed once the window ended). Versions 8 and 9 are other pieces of work.
-- Expand only: an older build ignores both tables (and keeps its per-process validity flag).

CREATE TABLE lifecycle_settings (
    workspace TEXT PRIMARY KEY REFERENCES workspaces (name) ON DELETE CASCADE,
    client_cert_validity_secs BIGINT,
    enroll_limit BIGINT,
    failed_enroll_limit BIGINT,
    enroll_window_secs BIGINT
);

CREATE TABLE rate_windows (
    scope TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (scope, window_start)
);
CREATE INDEX rate_windows_by_end ON rate_windows (window_end);

-- A sensor that uninstalled itself (`uplink sensor uninstall` tells the service): revoked, and
-- marked so that the fleet shows it `uninstalled`.
ALTER TABLE revocations ADD COLUMN uninstalled BOOLEAN NOT NULL DEFAULT FALSE;
