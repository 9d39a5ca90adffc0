//! The sensor API wire protocol, version 1 (see `docs/protocol.md`).
//!
//! Everything here is pure: request and response bodies, the NDJSON event-batch parser, body
//! decoding under size limits, and the naming rules for workspaces and their host names. The
//! service and the sensor both depend on this crate, so the two ends cannot drift apart.
//!
//! Deliberately absent: sockets, TLS, storage. The service's handlers buffer a body and call
//! [`batch::parse`]; the sensor builds lines with [`batch::encode_line`].

pub mod batch;
pub mod body;
pub mod heartbeat;
pub mod names;

use serde::{Deserialize, Serialize};

/// The protocol version spoken by this build. Sent as the `uplink-protocol` header.
pub const VERSION: u32 = 1;
/// Header naming the protocol version of a request or response.
pub const VERSION_HEADER: &str = "uplink-protocol";

/// Liveness check, answered `200 Ok` with or without a client certificate (as the seeds' sensor API).
pub const PING_PATH: &str = "/tri/sensor/api/ping";
/// Enrollment: access key + CSR in, client certificate out.
pub const ENROLL_PATH: &str = "/api/v1/enroll";
/// Event ingest: an NDJSON batch in, committed counts out. Requires a client certificate.
pub const EVENTS_PATH: &str = "/api/v1/events";
/// Certificate renewal: a new CSR in, a new certificate for the same sensor out. Requires the
/// sensor's current (unexpired) client certificate.
pub const RENEW_PATH: &str = "/api/v1/renew";
/// The sensor's report: a [`heartbeat::Heartbeat`] body in, `204` out once it is stored.
/// Requires a client certificate. Sent first on each new connection, before any backlog.
pub const HEARTBEAT_PATH: &str = "/api/v1/heartbeat";
/// The sensor says it is being uninstalled (`uplink sensor uninstall`): no body, `204` out once
/// the service has revoked its certificate and marked it `uninstalled`. Requires a client
/// certificate. Best effort: an uninstall goes on when the service cannot be told.
pub const UNINSTALL_PATH: &str = "/api/v1/uninstall";
/// CA rotation (issue #24): the workspace's trust set, PEM, the current CA first (mutual TLS).
pub const TRUST_PATH: &str = "/api/v1/trust";
/// CA rotation: the header on every answer of the sensor API naming the digest of the
/// workspace's trust set (`uplink_pki::trust_digest`); a sensor whose CAs differ fetches
/// [`TRUST_PATH`].
pub const TRUST_HEADER: &str = "x-uplink-trust";

/// `POST /api/v1/renew` request body. The answer is an [`EnrollResponse`] for the same sensor.
#[derive(Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    /// A PKCS#10 certificate signing request for the sensor's new key, in PEM.
    pub csr_pem: String,
}

impl std::fmt::Debug for RenewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewRequest")
            .field("csr_pem", &format_args!("<{} bytes>", self.csr_pem.len()))
            .finish()
    }
}

/// `POST /api/v1/enroll` request body.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The workspace's access key, from its enrollment bundle.
    pub access_key: String,
    /// A PKCS#10 certificate signing request in PEM. Only its public key is used.
    pub csr_pem: String,
    /// A display name for the sensor (usually the host name).
    #[serde(default)]
    pub name: String,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("access_key", &"<redacted>")
            .field("csr_pem", &format_args!("<{} bytes>", self.csr_pem.len()))
            .field("name", &self.name)
            .finish()
    }
}

/// `POST /api/v1/enroll` response body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub workspace: String,
    /// The identifier the service assigned; it is also the client certificate's subject CN.
    pub sensor_id: String,
    /// The client certificate in PEM.
    pub certificate_pem: String,
    /// The chain up to (and including) the workspace CA, in PEM.
    pub chain_pem: String,
    /// RFC 3339 expiry of the client certificate.
    pub not_after: String,
}

/// `POST /api/v1/events` success body: sent only after the batch is durably committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsResponse {
    /// Events stored by this request.
    pub accepted: u64,
    /// Events of this request that were already stored (a retry): not stored again.
    pub duplicates: u64,
}

/// The body of every error answer from the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code (see `uplink-diag`), e.g. `MTLS_REJECTED`.
    pub code: String,
    /// What failed and what to do.
    pub message: String,
}
