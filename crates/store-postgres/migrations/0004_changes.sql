-- Version 4: the change log. Every workspace mutation (created, settings, re-keyed, master key
-- rotated, deleted; later revocations and policies) appends one row per workspace it changes, in
-- its own transaction, after taking the change-log advisory lock (src/lib.rs, `record_change`):
-- versions therefore commit in increasing order, and a replica that polls `version > v` never
-- skips a row that commits late. Replicas poll it to drop or reload exactly what changed.
-- Expand only: an older build ignores the table.

CREATE TABLE changes (
    version BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL
);
