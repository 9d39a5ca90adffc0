-- Version 13: ingest without per-row foreign-key triggers on `events` and `seen`.
--
-- A foreign key costs a trigger per inserted row: each event ran two lookups of its sensor's row
-- (`SELECT 1 FROM sensors WHERE id = $1 FOR KEY SHARE`, once for `seen`, once for `events`),
-- about 40 % of PostgreSQL's CPU per stored event (bench/ingest.sh; docs/scale-out.md). The one
-- statement that writes these tables, INSERT_EVENTS (src/lib.rs), already reads the sensor's row
-- FOR KEY SHARE once per batch and stores nothing when it is missing, and the only deletion of
-- sensors (a workspace deleted, src/retention.rs) locks their rows FOR UPDATE before deleting
-- their events and `seen` rows: the same guarantee, once per batch instead of twice per event.
-- `kind_counts` (one row per sensor and kind, one write per batch) keeps its foreign key.
--
-- Nothing is copied or rewritten: dropping a constraint is a catalog change. Older builds
-- (version 3 and later) write and delete these tables in the same way and run on it unchanged.

ALTER TABLE events DROP CONSTRAINT IF EXISTS events_sensor_fkey;
ALTER TABLE seen DROP CONSTRAINT IF EXISTS seen_sensor_fkey;

-- The partition holding the events from before version 3 (when there is one) kept its own
-- foreign key unless it was merged into the parent's when attached (then it went with it).
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'events_legacy_sensor_fkey' AND conrelid = 'events_legacy'::regclass
    ) THEN
        ALTER TABLE events_legacy DROP CONSTRAINT events_legacy_sensor_fkey;
    END IF;
EXCEPTION WHEN undefined_table THEN
    NULL;
END $$;
