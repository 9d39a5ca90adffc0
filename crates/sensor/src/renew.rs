//! Client certificate renewal: before the sensor's certificate expires, it asks the service for a
//! new one over mutual TLS with the current one, for a key it has just generated.
//!
//! **When.** At two thirds of the certificate's life, when a third of it is left (a 30-day
//! certificate, the workspace default, renews 10 days before its end; a 30-second one in a drill,
//! 10 seconds before). The lifetime is counted from when this sensor obtained the certificate (the file's
//! modification time), not from its `notBefore`, which the service backdates for clock skew. A
//! failed attempt is retried after a tenth of the time left (at least 5 seconds, at most 10
//! minutes): a sensor that cannot reach its service keeps trying while it still can renew.
//!
//! **Nothing lost.** Renewal touches no event: the queue is not involved, and the upload loop
//! simply reconnects with the new certificate afterwards.
//!
//! **Never half-written.** The new key and certificate are first written whole beside the old
//! ones (`client.key.next`, `client.pem.next`, each synced), then renamed over them, key first.
//! [`recover`] finishes or discards an interrupted switch when the sensor starts, so a crash at
//! any point leaves a matching key and certificate.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use uplink_client::{Connection, TlsSettings};
use uplink_protocol::RenewRequest;

use crate::config::Paths;
use crate::fsutil;
use crate::SensorError;

/// When to renew, given the certificate's expiry, when this sensor obtained it, and `now`: once
/// at most a third of its lifetime is left (two thirds of its life have passed).
pub fn due_at(not_after: SystemTime, obtained_at: SystemTime, now: SystemTime) -> bool {
    let lifetime = not_after
        .duration_since(obtained_at)
        .unwrap_or(Duration::ZERO);
    let threshold = lifetime / 3;
    match not_after.duration_since(now) {
        Ok(left) => left <= threshold,
        // Already expired: renewal will be refused, but trying tells the administrator why.
        Err(_) => true,
    }
}

/// How long to wait after a failed attempt.
pub fn retry_after(not_after: SystemTime, now: SystemTime) -> Duration {
    let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    (left / 10).clamp(Duration::from_secs(5), Duration::from_secs(600))
}

/// The renewal state of the running sensor.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub not_after: SystemTime,
    pub obtained_at: SystemTime,
    retry_at: Option<Instant>,
    /// CA rotation: the certificate is not from the workspace's current CA (see
    /// [`crate::trust`]), so renewal is due now, whatever its age.
    pub off_current_ca: bool,
}

fn next(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SensorError + '_ {
    move |source| SensorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Finishes or undoes a switch that a crash interrupted (see the module docs).
pub fn recover(paths: &Paths) -> Result<(), SensorError> {
    let (key, cert) = (paths.key_file(), paths.cert_file());
    let (key_next, cert_next) = (next(&key), next(&cert));
    if cert_next.exists() {
        if key_next.exists() {
            // Interrupted before the first rename: the old pair is intact; drop the new one.
            std::fs::remove_file(&key_next).map_err(io(&key_next))?;
            std::fs::remove_file(&cert_next).map_err(io(&cert_next))?;
        } else {
            // The new key is in place: its certificate must follow.
            std::fs::rename(&cert_next, &cert).map_err(io(&cert))?;
        }
    } else if key_next.exists() {
        // Interrupted while writing the new files: the old pair is intact.
        std::fs::remove_file(&key_next).map_err(io(&key_next))?;
    }
    Ok(())
}

impl Renewal {
    /// Reads the installed certificate's expiry and when it was obtained.
    pub fn load(paths: &Paths) -> Result<Renewal, SensorError> {
        let path = paths.cert_file();
        let pem = std::fs::read(&path).map_err(io(&path))?;
        let obtained_at = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(io(&path))?;
        let not_after = not_after_of(&pem)?;
        // A sensor restarted between learning a new CA and renewing onto it.
        let off_current_ca = std::fs::read_to_string(paths.ca_file())
            .map(|set| !crate::trust::issued_by_current(&set, &String::from_utf8_lossy(&pem)))
            .unwrap_or(false);
        Ok(Renewal {
            not_after,
            obtained_at,
            retry_at: None,
            off_current_ca,
        })
    }

    /// Whether to renew now.
    pub fn due(&self, now: SystemTime) -> bool {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        self.off_current_ca || due_at(self.not_after, self.obtained_at, now)
    }

    /// Records a failed attempt: the next one waits (see [`retry_after`]).
    pub fn failed(&mut self, now: SystemTime) -> Duration {
        let wait = retry_after(self.not_after, now);
        self.retry_at = Some(Instant::now() + wait);
        wait
    }
}

fn not_after_of(pem: &[u8]) -> Result<SystemTime, SensorError> {
    let text = String::from_utf8_lossy(pem);
    let certs = uplink_pki::certs_from_pem(&text)?;
    let first = certs.first().ok_or_else(|| {
        SensorError::Failed("the client certificate file holds no certificate".into())
    })?;
    let info = uplink_pki::cert_info(first)?;
    Ok(SystemTime::from(info.not_after))
}

/// What a renewal produced.
#[derive(Debug)]
pub struct Renewed {
    pub tls: TlsSettings,
    pub renewal: Renewal,
    /// RFC 3339 expiry of the new certificate.
    pub not_after: String,
}

/// Renews over `conn` (which presents the current certificate): new key and CSR here, the new
/// certificate from the service, both files switched safely, and TLS settings that present it.
pub async fn renew(
    paths: &Paths,
    sensor_id: &str,
    conn: &mut Connection,
) -> Result<Renewed, SensorError> {
    let (key_pem, csr_pem) = uplink_pki::generate_key_and_csr(sensor_id)?;
    let key_pem = zeroize::Zeroizing::new(key_pem);
    let response = conn.renew(&RenewRequest { csr_pem }).await?;
    if response.sensor_id != sensor_id {
        return Err(SensorError::Failed(format!(
            "the service renewed the certificate of sensor {} instead of {sensor_id}; keeping the current one",
            response.sensor_id
        )));
    }
    let ca_path = paths.ca_file();
    let ca = std::fs::read_to_string(&ca_path).map_err(io(&ca_path))?;
    // Refuse an answer we could not use before touching any file.
    let tls = TlsSettings::new(&ca, Some((&response.certificate_pem, &key_pem)))?;
    let not_after = not_after_of(response.certificate_pem.as_bytes())?;

    let (key, cert) = (paths.key_file(), paths.cert_file());
    let (key_next, cert_next) = (next(&key), next(&cert));
    fsutil::write_private(&key_next, key_pem.as_bytes()).map_err(io(&key_next))?;
    fsutil::write_public(&cert_next, response.certificate_pem.as_bytes())
        .map_err(io(&cert_next))?;
    std::fs::rename(&key_next, &key).map_err(io(&key))?;
    std::fs::rename(&cert_next, &cert).map_err(io(&cert))?;
    if let Some(dir) = cert.parent() {
        // The renames themselves must survive a power loss.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(Renewed {
        tls,
        renewal: Renewal {
            not_after,
            obtained_at: SystemTime::now(),
            retry_at: None,
            // Renewed: not again before the next change of CA, even if this one came from a
            // replica that had not seen the rotation yet (no renewal loop).
            off_current_ca: false,
        },
        not_after: response.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn when_renewal_is_due() {
        let start = 1_700_000_000;
        // (lifetime from obtaining, seconds after obtaining, due?)
        let cases: &[(u64, u64, bool)] = &[
            // 365 days: renew in the last third (from day 243 and a third).
            (365 * DAY, 0, false),
            (365 * DAY, 243 * DAY, false),
            (365 * DAY, 244 * DAY, true),
            // 30 days: in the last 10.
            (30 * DAY, 19 * DAY, false),
            (30 * DAY, 20 * DAY, true),
            // 30 seconds (a drill): in the last 10.
            (30, 19, false),
            (30, 20, true),
            // Expired: due (the attempt tells why it fails).
            (30, 31, true),
        ];
        for &(lifetime, after, due) in cases {
            assert_eq!(
                due_at(t(start + lifetime), t(start), t(start + after)),
                due,
                "lifetime {lifetime}s, {after}s in"
            );
        }
        // A certificate obtained "in the future" (clock set back) renews only near its end.
        assert!(!due_at(t(start + 100), t(start + 50), t(start)));
    }

    #[test]
    fn retries_wait_a_tenth_of_what_is_left_within_bounds() {
        let cases: &[(u64, u64)] = &[(0, 5), (30, 5), (1000, 100), (30 * DAY, 600)];
        for &(left, wait) in cases {
            assert_eq!(
                retry_after(t(1_000_000 + left), t(1_000_000)),
                Duration::from_secs(wait),
                "{left}s left"
            );
        }
    }

    #[test]
    fn recovery_leaves_a_matching_pair_whatever_the_crash_point() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(dir.path()));
        let (key, cert) = (paths.key_file(), paths.cert_file());
        let put = |p: &Path, s: &str| std::fs::write(p, s).unwrap();
        let get = |p: &Path| std::fs::read_to_string(p).unwrap();
        // (files present besides the old pair, expected key, expected cert)
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            (&[], "old-key", "old-cert"),
            // Crashed while writing the new files.
            (&[("client.key.next", "new-key")], "old-key", "old-cert"),
            // Both written, nothing renamed.
            (
                &[
                    ("client.key.next", "new-key"),
                    ("client.pem.next", "new-cert"),
                ],
                "old-key",
                "old-cert",
            ),
            // Key renamed, certificate not yet.
            (&[("client.pem.next", "new-cert")], "new-key", "new-cert"),
        ];
        for (extra, want_key, want_cert) in cases {
            let key_now = if extra.len() == 1 && extra[0].0 == "client.pem.next" {
                "new-key"
            } else {
                "old-key"
            };
            put(&key, key_now);
            put(&cert, "old-cert");
            for (name, text) in *extra {
                put(&dir.path().join(name), text);
            }
            recover(&paths).unwrap();
            assert_eq!(get(&key), *want_key, "{extra:?}");
            assert_eq!(get(&cert), *want_cert, "{extra:?}");
            assert!(!next(&key).exists() && !next(&cert).exists(), "{extra:?}");
        }
    }
}
