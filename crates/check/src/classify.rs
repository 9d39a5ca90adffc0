//! Failures → stable codes: the one classifier lives in `uplink-diag` ([`uplink_diag::classify`],
//! shared with the sensor's client and the tunnel's TLS to HTTPS proxies); re-exported here
//! under the analyzer's old path.

pub use uplink_diag::classify::*;
