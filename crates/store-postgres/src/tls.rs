//! TLS to PostgreSQL, always with certificate verification.
//!
//! The URL says what it wants the way libpq's does (`sslmode`, `sslrootcert`), but uplink never
//! accepts a server it has not verified: `sslmode=require`, `verify-ca` and `verify-full` all
//! check the chain (against `sslrootcert=FILE`, or this machine's trust store) and the host
//! name. `disable`, `allow`, `prefer` (libpq's default) and no `sslmode` connect without TLS —
//! meant for Unix sockets and loopback; a network connection should say `sslmode=verify-full`.
//! tokio-postgres knows neither `verify-*` nor `sslrootcert`, so [`split`] takes them off the URL
//! first.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// What a URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Off,
    /// TLS, the server's certificate verified against this CA file (PEM) or the system's roots.
    Verify { root_file: Option<String> },
}

/// Splits `sslmode` and `sslrootcert` off `url` and says what they ask for. Pure. The error
/// never repeats the URL (it may hold a password).
pub fn split(url: &str) -> Result<(String, TlsMode), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), TlsMode::Off));
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "sslmode" => mode = Some(v),
            "sslrootcert" => root = Some(v),
            _ => kept.push(param),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let verify = match mode.as_deref() {
        None => root.is_some(),
        Some("disable" | "allow" | "prefer") => {
            if root.is_some() {
                return Err(format!(
                    "sslrootcert is given but sslmode={} does not use TLS: write sslmode=verify-full",
                    mode.unwrap_or_default()
                ));
            }
            false
        }
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            return Err(format!(
                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
        }
    };
    let tls = if verify {
        TlsMode::Verify { root_file: root }
    } else {
        TlsMode::Off
    };
    Ok((rebuilt, tls))
}

/// The rustls configuration for [`TlsMode::Verify`]: the CA file's certificates, or the system's
/// trust store, and nothing else.
pub fn client_config(root_file: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match root_file {
        Some(file) => {
            let pem =
                std::fs::read(file).map_err(|e| format!("cannot read sslrootcert {file}: {e}"))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("sslrootcert {file} is not PEM certificates: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {file} holds no usable CA certificate: give the PEM file of the CA that signed the server's certificate"
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(
                    "this machine's trust store has no CA certificates: give the server's CA with sslrootcert=FILE"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL, and what `split` makes of it: the URL for the driver and the mode, or (`Err`) words
    /// of the refusal.
    type Case = (&'static str, Result<(&'static str, TlsMode), &'static str>);

    #[test]
    fn urls_say_what_they_want_of_tls() {
        let verify = |f: Option<&str>| TlsMode::Verify {
            root_file: f.map(str::to_owned),
        };
        let cases: &[Case] = &[
            ("postgres://u@db/x", Ok(("postgres://u@db/x", TlsMode::Off))),
            (
                "postgres://u@/x?host=/run/postgresql",
                Ok(("postgres://u@/x?host=/run/postgresql", TlsMode::Off)),
            ),
            ("postgres://u@db/x?sslmode=prefer", Ok(("postgres://u@db/x", TlsMode::Off))),
            ("postgres://u@db/x?sslmode=disable", Ok(("postgres://u@db/x", TlsMode::Off))),
            ("postgres://u@db/x?sslmode=require", Ok(("postgres://u@db/x", verify(None)))),
            (
                "postgres://u@db/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
                Ok(("postgres://u@db/x?connect_timeout=3", verify(Some("/etc/ca.pem")))),
            ),
            (
                "postgres://u@db/x?sslrootcert=/etc/ca.pem",
                Ok(("postgres://u@db/x", verify(Some("/etc/ca.pem")))),
            ),
            ("postgres://u@db/x?sslmode=verify-ca", Ok(("postgres://u@db/x", verify(None)))),
            ("postgres://u@db/x?sslmode=bogus", Err("not one of")),
            ("postgres://u@db/x?sslmode=disable&sslrootcert=/ca.pem", Err("verify-full")),
        ];
        for (url, want) in cases {
            match (split(url), want) {
                (Ok((u, m)), Ok((wu, wm))) => {
                    assert_eq!((u.as_str(), &m), (*wu, wm), "{url}")
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{url}: {e}"),
                (got, _) => panic!("{url}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_root_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let err = client_config(Some(f.to_str().unwrap())).unwrap_err();
        assert!(err.contains("no usable CA certificate"), "{err}");
        let err = client_config(Some("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.contains("cannot read sslrootcert"), "{err}");
    }
}
