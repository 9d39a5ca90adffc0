-- Version 3: workspace settings, retention, and events partitioned by day.
--
-- Events are partitioned by RANGE (received_at), one partition per UTC day (`events_pDAY`,
-- DAY = days since 1970-01-01), created on demand by the store; retention drops a day's
-- partition whole once it is past every workspace's retention, and deletes in chunks otherwise.
--
-- A unique index on a partitioned table must include the partition key, so (sensor, seq) is
-- kept unique by its own, unpartitioned table, `seen`: ingest inserts there first
-- (ON CONFLICT DO NOTHING) and stores only the events whose row it inserted. When retention
-- removes events it raises the sensor's watermark (`sensors.pruned_through`, the highest seq
-- removed); ingest treats seqs at or below it as duplicates, so the `seen` rows below it can go.
-- docs/storage.md explains why this is exact for sensors, which upload in seq order.
--
-- Existing events are kept where they are: their table becomes one partition (`events_legacy`)
-- covering every time up to the end of the day of the migration (or of its newest event), or
-- is dropped when it holds none (a new database). No event is copied,
-- only their (sensor, seq) into `seen`, and the table is scanned to validate the partition's
-- bound and to build the partitioned indexes on it. It is dropped whole once all of it is past
-- retention. Older builds' `ON CONFLICT (sensor, seq)` has no unique index to use on the new
-- table: this version cannot run beside version 2 (compatible_back_to = 3).

ALTER TABLE workspaces
    ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 30,
    ADD COLUMN disconnected_after_secs BIGINT NOT NULL DEFAULT 600;

ALTER TABLE sensors ADD COLUMN pruned_through BIGINT;

CREATE TABLE seen (
    sensor BIGINT NOT NULL REFERENCES sensors (id),
    seq BIGINT NOT NULL,
    PRIMARY KEY (sensor, seq)
);
INSERT INTO seen (sensor, seq) SELECT sensor, seq FROM events;

ALTER TABLE events RENAME TO events_legacy;
-- A partition takes its parent's primary key: (sensor, seq) alone gives way to `seen`.
ALTER TABLE events_legacy DROP CONSTRAINT events_pkey;
ALTER TABLE events_legacy RENAME CONSTRAINT events_sensor_fkey TO events_legacy_sensor_fkey;

CREATE TABLE events (
    sensor BIGINT NOT NULL REFERENCES sensors (id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (sensor, seq, received_at)
) PARTITION BY RANGE (received_at);
-- Retention's chunked deletes: a sensor's oldest events.
CREATE INDEX events_by_age ON events (sensor, received_at);

DO $$
DECLARE
    until BIGINT;
BEGIN
    SELECT GREATEST(
        (floor(extract(epoch FROM now()) / 86400)::bigint + 1) * 86400000,
        COALESCE((max(received_at) / 86400000 + 1) * 86400000, 0))
    INTO until FROM events_legacy;
    IF EXISTS (SELECT 1 FROM events_legacy) THEN
        EXECUTE format('ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%s)', until);
        INSERT INTO uplink_meta (key, value) VALUES ('events_legacy_until', until::text);
    ELSE
        -- A new database (or one without events): day partitions only.
        DROP TABLE events_legacy;
    END IF;
END $$;
