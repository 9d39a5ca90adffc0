-- Version 2: store-wide values; the first is the check value of the master key the CA keys
-- are sealed with (crates/store/src/master.rs). From this version on, workspaces.ca_key_pem
-- holds sealed values, which a version-1 build would take for PEM: it cannot run on this schema.
-- The access key is kept too, sealed, so that any replica can remake a workspace's bundle.

CREATE TABLE uplink_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

ALTER TABLE workspaces ADD COLUMN access_key TEXT;
