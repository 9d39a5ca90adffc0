-- Version 11: CA rotation (issue #24). The CAs a rotation replaced and that are not retired yet
-- (their keys sealed under the master key like the current one), and which CA issued each
-- client certificate (so `rotate-ca --retire-old` can name the sensors still on an old CA).
-- Versions 8 and 9 are other pieces of work. Expand only: an older build ignores both tables.

CREATE TABLE previous_cas (
    workspace TEXT NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
    ca_sha256 TEXT NOT NULL,
    ca_cert_pem TEXT NOT NULL,
    ca_key_pem TEXT NOT NULL,
    replaced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, ca_sha256)
);

CREATE TABLE cert_issuers (
    cert_sha256 TEXT PRIMARY KEY,
    ca_sha256 TEXT NOT NULL
);
