//! Sensor lifecycle (issue #24): revocation and decommissioning as stored.
//!
//! A revocation is one row per sensor, kept beside the sensor (and removed with it when its
//! workspace is deleted). Revoking appends a [`crate::ChangeKind::Revoked`] entry to the change
//! log in the same transaction, so every replica reloads the workspace's revoked set within one
//! poll and refuses the sensor on new and kept-alive connections alike (the service checks the
//! set in memory on every request; it never reads the store per request).
//!
//! What this module does not do: issue CRLs (`uplink-pki` signs them from the revoked serials the
//! service reads here), or delete anything — a decommissioned sensor's events stay until
//! retention removes them.

/// A revoked sensor, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub workspace: String,
    pub sensor_id: String,
    /// Why, as the administrator gave it.
    pub reason: String,
    /// Unix milliseconds of the first revocation (revoking again keeps it).
    pub revoked_at: i64,
    /// Also decommissioned: the machine is gone, hidden from the default `fleet list`.
    pub decommissioned: bool,
    /// The SHA-256 of the certificate the sensor held when it was revoked.
    pub cert_sha256: String,
}

/// One entry of a workspace's audit trail: who did what to which sensor, from where, with what
/// result. Never holds a secret (no access key, no certificate key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub workspace: String,
    /// Unix milliseconds.
    pub at: i64,
    /// Who: `sensor <id>`, `access key holder` (an enrollment), or the administrator's user name.
    pub actor: String,
    /// From where: the client's address (for requests), `cli@<host>` for commands.
    pub source: String,
    /// `enroll`, `renew`, `revoke`, `decommission`, … ([`AUDIT_ACTIONS`]).
    pub action: String,
    pub sensor_id: Option<String>,
    /// `ok`, or `refused` with the code in `detail`.
    pub result: String,
    pub detail: String,
}

/// The actions recorded so far (others are added by the admin API and rotations).
pub const AUDIT_ACTIONS: &[&str] = &[
    "enroll",
    "renew",
    "revoke",
    "decommission",
    "rotate_access_key",
];
/// The longest `detail` stored (longer ones are cut at a character boundary).
pub const MAX_AUDIT_DETAIL: usize = 2000;

/// `detail` cut to [`MAX_AUDIT_DETAIL`] bytes at a character boundary. Pure.
pub fn audit_detail(detail: &str) -> String {
    if detail.len() <= MAX_AUDIT_DETAIL {
        return detail.to_owned();
    }
    let mut end = MAX_AUDIT_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &detail[..end])
}

/// A revoked certificate, as a CRL lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedSerial {
    /// The certificate's serial number, lowercase hex.
    pub serial_hex: String,
    /// Unix milliseconds of the sensor's revocation.
    pub revoked_at: i64,
}

/// A sensor's lifecycle as `uplink fleet` shows it (the `lifecycle` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Active,
    Revoked,
    Decommissioned,
}

impl Lifecycle {
    /// The lifecycle of a sensor given its revocation, if any. Pure.
    pub fn of(revocation: Option<&Revocation>) -> Lifecycle {
        match revocation {
            None => Lifecycle::Active,
            Some(r) if r.decommissioned => Lifecycle::Decommissioned,
            Some(_) => Lifecycle::Revoked,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Revoked => "revoked",
            Lifecycle::Decommissioned => "decommissioned",
        }
    }
}

/// The longest reason stored (longer ones are refused: the reason is for people, not logs).
pub const MAX_REASON: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_details_are_bounded_at_a_character_boundary() {
        assert_eq!(audit_detail("short"), "short");
        let long = "é".repeat(MAX_AUDIT_DETAIL);
        let cut = audit_detail(&long);
        assert!(cut.len() <= MAX_AUDIT_DETAIL + "…".len(), "{}", cut.len());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn lifecycle_of_a_revocation() {
        let r = |decommissioned| Revocation {
            workspace: "w".into(),
            sensor_id: "s".into(),
            reason: "lost laptop".into(),
            revoked_at: 1,
            decommissioned,
            cert_sha256: "ab".into(),
        };
        for (rev, want) in [
            (None, "active"),
            (Some(r(false)), "revoked"),
            (Some(r(true)), "decommissioned"),
        ] {
            assert_eq!(Lifecycle::of(rev.as_ref()).as_str(), want);
        }
    }
}
