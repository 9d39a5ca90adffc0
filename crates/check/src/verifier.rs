//! The recording verifier lives in `uplink-client` ([`uplink_client::verifier`]), shared with the
//! sensor so both name a failed chain's issuer the same way; re-exported under the old path.

pub use uplink_client::verifier::*;
