//! Records the store-sqlite integration tests share.

use uplink_store::*;

#[allow(dead_code)] // each test file uses a part
pub mod kept;

/// A workspace named `name` (its CA key a recognisable fake secret).
pub fn workspace(name: &str) -> WorkspaceRecord {
    WorkspaceRecord {
        name: name.into(),
        domain: "uplink.localhost".into(),
        public_port: 443,
        ca_cert_pem: "cert".into(),
        ca_key_pem: "-----BEGIN PRIVATE KEY-----secret".into(),
        ca_sha256: "00".repeat(32),
        access_key_sha256: "11".repeat(32),
        created_at: now_ms(),
        access_key: Some("the-access-key".into()),
    }
}

/// A sensor of workspace `w`.
pub fn sensor(id: &str) -> SensorRecord {
    SensorRecord {
        sensor_id: id.into(),
        workspace: "w".into(),
        name: "host".into(),
        cert_sha256: "22".repeat(32),
        key_sha256: Some(format!("key-of-{id}")),
        enrolled_at: now_ms(),
        last_seen: None,
    }
}
