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
    /// Uninstalled by the sensor itself (`uplink sensor uninstall` told the service): its key
    /// is gone, so its certificate is revoked like any other.
    pub uninstalled: bool,
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

/// The actions recorded: by sensors (enroll, renew, uninstall) and by administrators through the
/// CLI, the admin API or the console (the rest).
pub const AUDIT_ACTIONS: &[&str] = &[
    "enroll",
    "renew",
    "revoke",
    "decommission",
    "rotate_access_key",
    "uninstall",
    "console_login",
    "suppress",
    "unsuppress",
    "settings",
    "token_create",
    "token_revoke",
    "policy_set",
    "policy_clear",
    "rotate_ca",
    "retire_ca",
    "user_add",
    "user_remove",
    "webhook_test",
];

impl AuditEntry {
    /// The entry as `uplink fleet audit --json` and the admin API's `GET audit` answer it:
    /// `{"at","actor","source","action","sensor_id","result","detail"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "at": uplink_fleet::rfc3339(self.at),
            "actor": self.actor,
            "source": self.source,
            "action": self.action,
            "sensor_id": self.sensor_id,
            "result": self.result,
            "detail": self.detail,
        })
    }
}
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
    /// The sensor was uninstalled (`uplink sensor uninstall`) and said so.
    Uninstalled,
}

impl Lifecycle {
    /// The lifecycle of a sensor given its revocation, if any. Pure.
    pub fn of(revocation: Option<&Revocation>) -> Lifecycle {
        match revocation {
            None => Lifecycle::Active,
            Some(r) if r.decommissioned => Lifecycle::Decommissioned,
            Some(r) if r.uninstalled => Lifecycle::Uninstalled,
            Some(_) => Lifecycle::Revoked,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Revoked => "revoked",
            Lifecycle::Decommissioned => "decommissioned",
            Lifecycle::Uninstalled => "uninstalled",
        }
    }
}

/// The reason stored for a sensor that uninstalled itself.
pub const UNINSTALLED_REASON: &str = "uninstalled (uplink sensor uninstall told the service)";

/// The longest reason stored (longer ones are refused: the reason is for people, not logs).
pub const MAX_REASON: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Enrollment limits and certificate validity (issue #24): workspace settings of the lifecycle,
// stored beside the workspace (SQLite format 11, PostgreSQL migration 0010) so every replica
// applies the same ones, and the fixed-window counters replicas share to enforce the limits.

/// Default validity of the client certificates a workspace issues: 30 days.
pub const DEFAULT_CLIENT_CERT_VALIDITY_SECS: u64 = 30 * 86_400;
/// Bounds of the validity: 10 seconds (renewal drills and tests) to 825 days.
pub const CLIENT_CERT_VALIDITY_SECS: std::ops::RangeInclusive<u64> = 10..=825 * 86_400;
/// Default successful enrollments per workspace per window (a mass deployment of 10,000
/// machines behind one proxy spreads over about 17 minutes; `uplink sensor install` waits).
pub const DEFAULT_ENROLL_LIMIT: u32 = 600;
/// Default failed enrollments per source address per window.
pub const DEFAULT_FAILED_ENROLL_LIMIT: u32 = 30;
/// Default length of a rate-limit window: one minute.
pub const DEFAULT_ENROLL_WINDOW_SECS: u64 = 60;
/// Bounds of the limits (0 would refuse every enrollment: not a limit but an outage).
pub const ENROLL_LIMITS: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// Bounds of the window: 1 second to 1 day.
pub const ENROLL_WINDOW_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;

/// A workspace's lifecycle settings, as stored (defaults until set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LifecycleSettings {
    /// Validity of the client certificates issued at enrollment and renewal.
    pub client_cert_validity_secs: u64,
    /// Successful enrollments into the workspace per window (all addresses together: sites
    /// behind one proxy share an address).
    pub enroll_limit: u32,
    /// Failed enrollments per source address per window.
    pub failed_enroll_limit: u32,
    /// The window both limits count in.
    pub enroll_window_secs: u64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            client_cert_validity_secs: DEFAULT_CLIENT_CERT_VALIDITY_SECS,
            enroll_limit: DEFAULT_ENROLL_LIMIT,
            failed_enroll_limit: DEFAULT_FAILED_ENROLL_LIMIT,
            enroll_window_secs: DEFAULT_ENROLL_WINDOW_SECS,
        }
    }
}

/// What `uplink workspace set` changes of them; `None` keeps the stored value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifecycleChange {
    pub client_cert_validity_secs: Option<u64>,
    pub enroll_limit: Option<u32>,
    pub failed_enroll_limit: Option<u32>,
    pub enroll_window_secs: Option<u64>,
}

impl LifecycleChange {
    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        *self == LifecycleChange::default()
    }

    /// Refuses values out of bounds, saying which and what is allowed.
    pub fn validate(&self) -> Result<(), crate::StoreError> {
        let bad = |m: String| Err(crate::StoreError::Settings(m));
        if let Some(v) = self
            .client_cert_validity_secs
            .filter(|v| !CLIENT_CERT_VALIDITY_SECS.contains(v))
        {
            return bad(format!(
                "a client certificate validity of {v}s is out of range: give 10s to 825d"
            ));
        }
        for (what, v) in [
            ("enroll-limit", self.enroll_limit),
            ("failed-enroll-limit", self.failed_enroll_limit),
        ] {
            if let Some(v) = v.filter(|v| !ENROLL_LIMITS.contains(v)) {
                return bad(format!(
                    "{what} {v} is out of range: give {} to {} enrollments per window",
                    ENROLL_LIMITS.start(),
                    ENROLL_LIMITS.end()
                ));
            }
        }
        if let Some(v) = self
            .enroll_window_secs
            .filter(|v| !ENROLL_WINDOW_SECS.contains(v))
        {
            return bad(format!(
                "an enrollment window of {v}s is out of range: give 1s to 1d"
            ));
        }
        Ok(())
    }

    /// The settings after this change.
    pub fn apply(&self, to: LifecycleSettings) -> LifecycleSettings {
        LifecycleSettings {
            client_cert_validity_secs: self
                .client_cert_validity_secs
                .unwrap_or(to.client_cert_validity_secs),
            enroll_limit: self.enroll_limit.unwrap_or(to.enroll_limit),
            failed_enroll_limit: self.failed_enroll_limit.unwrap_or(to.failed_enroll_limit),
            enroll_window_secs: self.enroll_window_secs.unwrap_or(to.enroll_window_secs),
        }
    }
}

/// The fixed window holding `now_ms` for windows of `window_ms`: `(start, end)` in Unix
/// milliseconds. Every replica computes the same window from the clock alone. Pure.
pub fn rate_window(now_ms: i64, window_ms: i64) -> (i64, i64) {
    let window_ms = window_ms.max(1);
    let start = now_ms - now_ms.rem_euclid(window_ms);
    (start, start + window_ms)
}

/// What counting one more hit in a window decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateHit {
    /// Counted: the window now holds `count` hits (at most the limit).
    Counted { count: u64 },
    /// Not counted: the window holds the limit already; it ends in `retry_after_ms`.
    Limited { retry_after_ms: i64 },
}

// CA rotation (`uplink workspace rotate-ca`, docs/lifecycle.md).

/// A workspace CA that a rotation replaced and that is not retired yet: client certificates it
/// issued are still accepted, its CRL is still served, and it signs the cross-certificate that
/// lets sensors trusting only it verify the new CA's server certificate.
#[derive(Clone)]
pub struct PreviousCa {
    /// SHA-256 of the CA certificate's DER, lowercase hex.
    pub sha256: String,
    pub cert_pem: String,
    /// Its private key in PEM (sealed at rest under the master key; never in `Debug`).
    pub key_pem: String,
    /// When it was replaced, Unix milliseconds.
    pub replaced_at: i64,
}

impl std::fmt::Debug for PreviousCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousCa")
            .field("sha256", &self.sha256)
            .field("replaced_at", &self.replaced_at)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The sealing context of a previous CA's key (bound to the workspace and the CA, so a sealed
/// key cannot be moved to another row).
pub fn previous_ca_key_context(workspace: &str, sha256: &str) -> String {
    format!(
        "{}:previous:{sha256}",
        crate::master::ca_key_context(workspace)
    )
}

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
        let r = |decommissioned, uninstalled| Revocation {
            workspace: "w".into(),
            sensor_id: "s".into(),
            reason: "lost laptop".into(),
            revoked_at: 1,
            decommissioned,
            uninstalled,
            cert_sha256: "ab".into(),
        };
        for (rev, want) in [
            (None, "active"),
            (Some(r(false, false)), "revoked"),
            (Some(r(true, false)), "decommissioned"),
            (Some(r(false, true)), "uninstalled"),
            (Some(r(true, true)), "decommissioned"),
        ] {
            assert_eq!(Lifecycle::of(rev.as_ref()).as_str(), want);
        }
    }

    #[test]
    fn fixed_windows_are_the_same_for_every_replica() {
        // (now, window, start, end)
        for (now, w, start, end) in [
            (0, 60_000, 0, 60_000),
            (59_999, 60_000, 0, 60_000),
            (60_000, 60_000, 60_000, 120_000),
            (
                1_700_000_012_345,
                10_000,
                1_700_000_010_000,
                1_700_000_020_000,
            ),
            // A zero window cannot divide: one millisecond.
            (5, 0, 5, 6),
        ] {
            assert_eq!(rate_window(now, w), (start, end), "{now} {w}");
        }
    }

    #[test]
    fn lifecycle_changes_are_bounded_and_applied() {
        let d = LifecycleSettings::default();
        assert_eq!(d.client_cert_validity_secs, 30 * 86_400);
        let cases: &[(LifecycleChange, Result<LifecycleSettings, &str>)] = &[
            (LifecycleChange::default(), Ok(d)),
            (
                LifecycleChange {
                    client_cert_validity_secs: Some(20),
                    enroll_limit: Some(3),
                    ..Default::default()
                },
                Ok(LifecycleSettings {
                    client_cert_validity_secs: 20,
                    enroll_limit: 3,
                    ..d
                }),
            ),
            (
                LifecycleChange {
                    client_cert_validity_secs: Some(9),
                    ..Default::default()
                },
                Err("10s to 825d"),
            ),
            (
                LifecycleChange {
                    enroll_limit: Some(0),
                    ..Default::default()
                },
                Err("enroll-limit 0"),
            ),
            (
                LifecycleChange {
                    failed_enroll_limit: Some(0),
                    ..Default::default()
                },
                Err("failed-enroll-limit 0"),
            ),
            (
                LifecycleChange {
                    enroll_window_secs: Some(86_401),
                    ..Default::default()
                },
                Err("1s to 1d"),
            ),
        ];
        for (change, want) in cases {
            match (change.validate(), want) {
                (Ok(()), Ok(s)) => assert_eq!(change.apply(d), *s),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, want) => panic!("{change:?}: {got:?} vs {want:?}"),
            }
        }
    }
}
