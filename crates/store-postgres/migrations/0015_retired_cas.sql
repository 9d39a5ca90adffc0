-- Version 15: the CAs a rotation retired (`rotate-ca --retire-old`), so that a copy made during
-- the rotation (`store restore`, `store migrate`) cannot make them trusted again
-- (`import_previous_ca` refuses them). Expand only: an older build ignores the table.

CREATE TABLE retired_cas (
    workspace TEXT NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
    ca_sha256 TEXT NOT NULL,
    retired_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, ca_sha256)
);
