-- Version 9: central policy (issue #26). Every version of each workspace's policy, kept: `doc` is
-- the policy as JSON without its password (NULL: this version cleared the policy), `password` the
-- proxy password sealed under the master key. Setting or clearing appends a 'policy' entry to the
-- change log in the same transaction, so every replica answers the new version at its next poll.
-- Version 8 is another piece of work's. Expand only: an older build ignores the table.

CREATE TABLE policies (
    workspace TEXT NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    set_at BIGINT NOT NULL,
    doc TEXT,
    password TEXT,
    PRIMARY KEY (workspace, version)
);
