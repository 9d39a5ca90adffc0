//! `status.json`: what the uploader last did, for `uplink sensor status` (and, later, heartbeats).
//!
//! Written atomically (temporary file + rename) by the uploader; read by anyone. It never holds a
//! secret: errors come from typed errors that carry none.

use std::path::Path;

use serde::{Deserialize, Serialize};
use uplink_diag::Code;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The route last used: `DIRECT` or `PROXY host:port`.
    pub route: Option<String>,
    /// Why the route is not the first candidate (a proxy could not be reached), if it is not.
    #[serde(default)]
    pub route_note: Option<String>,
    /// The proxy authentication scheme in use (`Basic`, `Digest`, `NTLM`), if any.
    #[serde(default)]
    pub proxy_auth: Option<String>,
    /// RFC 3339 time of the last batch the service committed.
    pub last_success: Option<String>,
    pub last_error: Option<LastError>,
    /// Events the uploader has delivered since it started.
    #[serde(default)]
    pub delivered: u64,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: String,
}

impl LastError {
    pub fn new(code: Code, message: String) -> Self {
        LastError {
            code: code.as_str().to_owned(),
            message,
            at: now_rfc3339(),
        }
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Status {
    pub fn load(path: &Path) -> Status {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn store(&mut self, path: &Path) -> std::io::Result<()> {
        self.updated_at = Some(now_rfc3339());
        crate::fsutil::write_public(
            path,
            &serde_json::to_vec_pretty(self).expect("status serialises"),
        )
    }
}
