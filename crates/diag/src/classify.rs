//! Failures → stable codes: the one classifier the sensor's client, the tunnel's TLS to HTTPS
//! proxies and the analyzer all use, so a failure has one name wherever it is shown. Pure: every
//! function here takes values, never sockets.
//!
//! - [`connect_error`]: a TCP connect error → `TCP_REFUSED` / `TCP_TIMEOUT` / `TCP_UNREACHABLE`.
//! - [`resolver_error`]: the system resolver's message → `DNS_NXDOMAIN` / `DNS_TIMEOUT`.
//! - [`tls_error`] (feature `tls`): a rustls error, with the chain the server presented and what
//!   was expected, → `TLS_EXPIRED`, `TLS_HOSTNAME_MISMATCH`, `TLS_INTERCEPTED`,
//!   `TLS_UNTRUSTED_ROOT`, `WORKSPACE_UNKNOWN`, `MTLS_REJECTED`, `TLS_HANDSHAKE_FAILED`, and for
//!   an HTTPS proxy ([`Peer::Proxy`]) `PROXY_TLS_UNTRUSTED`.
//! - [`issuer_check`] (feature `tls`): a chain that verified, against the issuers a public
//!   service is known to use — a corporate inspection CA the machine trusts is still
//!   interception.
//!
//! Interception is named only when the presented chain is neither a workspace CA's (a stale
//! bundle: the workspace was re-created) nor the service's placeholder for unknown host names (a
//! typo in the workspace host): [`is_workspace_ca`], [`is_placeholder`].

use std::io::ErrorKind;

#[cfg(feature = "tls")]
use rustls::{AlertDescription, CertificateError, Error as TlsError};

use crate::Code;

/// The name the service's placeholder certificate (for host names no workspace serves) is
/// issued for; docs/protocol.md names it.
pub const PLACEHOLDER_HOST: &str = "uplink-unknown-host.invalid";
/// How every workspace CA's common name begins (`uplink workspace CA <workspace> <tag>`).
pub const WORKSPACE_CA_PREFIX: &str = "uplink workspace CA ";

/// True when `dn` (an RFC 4514-ish subject or issuer) is a workspace CA's name.
pub fn is_workspace_ca(dn: &str) -> bool {
    dn.contains(&format!("CN={WORKSPACE_CA_PREFIX}"))
}

/// True when a certificate with this subject and issuer is the service's placeholder for host
/// names no workspace serves.
pub fn is_placeholder(subject: &str, issuer: &str) -> bool {
    subject.contains(PLACEHOLDER_HOST)
        || issuer.contains(&format!("CN={WORKSPACE_CA_PREFIX}unknown-host "))
}

/// A TCP connect failure.
pub fn connect_error(kind: ErrorKind, raw_os_error: Option<i32>) -> Code {
    // Linux errno values: ENETUNREACH 101, EHOSTUNREACH 113, ETIMEDOUT 110, ECONNREFUSED 111.
    match (kind, raw_os_error) {
        (ErrorKind::ConnectionRefused, _) | (_, Some(111)) => Code::TCP_REFUSED,
        (ErrorKind::TimedOut, _) | (_, Some(110)) => Code::TCP_TIMEOUT,
        (ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable, _) | (_, Some(101 | 113)) => {
            Code::TCP_UNREACHABLE
        }
        (ErrorKind::ConnectionReset, _) => Code::TCP_REFUSED,
        _ => Code::TCP_UNREACHABLE,
    }
}

/// The system resolver's (getaddrinfo's) error message. `EAI_AGAIN` ("Temporary failure in name
/// resolution") is what glibc returns when no DNS server answered: a timeout, not a missing name.
pub fn resolver_error(message: &str) -> Code {
    let m = message.to_ascii_lowercase();
    if m.contains("temporary failure") || m.contains("timed out") || m.contains("try again") {
        Code::DNS_TIMEOUT
    } else {
        Code::DNS_NXDOMAIN
    }
}

/// Subject and issuer of one certificate, as RFC 4514-ish strings.
#[cfg(feature = "tls")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
}

#[cfg(feature = "tls")]
impl CertSummary {
    /// Reads a DER certificate; unreadable ones are described as such (never a panic).
    pub fn from_der(der: &[u8]) -> CertSummary {
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, c)) => CertSummary {
                subject: c.subject().to_string(),
                issuer: c.issuer().to_string(),
            },
            Err(_) => CertSummary {
                subject: "(unreadable certificate)".into(),
                issuer: "(unreadable certificate)".into(),
            },
        }
    }
}

/// Whose TLS failed: the server at the end of the route, or an HTTPS proxy on the way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Peer {
    #[default]
    Server,
    Proxy,
}

/// What the caller knew when TLS failed.
#[cfg(feature = "tls")]
#[derive(Clone, Debug, Default)]
pub struct TlsContext<'a> {
    pub host: &'a str,
    pub peer: Peer,
    /// The chain the server presented (leaf first), when the verifier saw one.
    pub presented: Option<&'a [CertSummary]>,
    /// The expected CA's subjects (`--ca`, the workspace CA); empty for the system roots.
    pub anchor_names: &'a [String],
    /// The issuers a public service is known to use (profiles).
    pub issuers: &'a [String],
    /// The route went through a proxy.
    pub via_proxy: bool,
    /// A client certificate was offered.
    pub client_cert: bool,
}

/// A TLS failure's code and a detail line naming what was presented and what was expected.
#[cfg(feature = "tls")]
pub fn tls_error(err: &TlsError, cx: &TlsContext<'_>) -> (Code, String) {
    let leaf = cx.presented.and_then(|c| c.first());
    let named = leaf
        .map(|l| format!(" (presented: subject {}, issuer {})", l.subject, l.issuer))
        .unwrap_or_default();
    if cx.peer == Peer::Server {
        if let Some(l) = leaf.filter(|l| is_placeholder(&l.subject, &l.issuer)) {
            return (
                Code::WORKSPACE_UNKNOWN,
                format!(
                    "no workspace answers at {}: the service presented its placeholder certificate for unknown host names (subject {})",
                    cx.host, l.subject
                ),
            );
        }
    }
    match err {
        TlsError::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => (
            Code::TLS_EXPIRED,
            format!(
                "the certificate for {} is expired or not yet valid{named}: {err}",
                cx.host
            ),
        ),
        TlsError::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => (
            Code::TLS_HOSTNAME_MISMATCH,
            format!("the certificate does not name {}{named}", cx.host),
        ),
        // TLS to a proxy that answers in plain HTTP: `https://` given for an `http://` proxy.
        TlsError::InvalidMessage(_) if cx.peer == Peer::Proxy => (
            Code::PROXY_PROTOCOL_ERROR,
            format!("the proxy {} does not speak TLS on this port ({err}): check the proxy URL's scheme (http:// or https://) and port", cx.host),
        ),
        TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) if cx.peer == Peer::Proxy => (
            Code::PROXY_TLS_UNTRUSTED,
            format!("the certificate of the proxy {} does not chain to a CA trusted for it{named}", cx.host),
        ),
        TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => untrusted(cx),
        TlsError::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied,
        ) if cx.client_cert => (
            Code::MTLS_REJECTED,
            format!("{} refused the client certificate: {err}", cx.host),
        ),
        _ => (
            Code::TLS_HANDSHAKE_FAILED,
            format!("TLS with {} failed: {err}", cx.host),
        ),
    }
}

/// The chain leads to no trusted root: interception when it leads to a *different* CA than the
/// one expected, or when a proxy sat in the path — unless that CA is a workspace CA (a stale
/// bundle); otherwise an untrusted (or wrong) server.
#[cfg(feature = "tls")]
fn untrusted(cx: &TlsContext<'_>) -> (Code, String) {
    let expected = if !cx.anchor_names.is_empty() {
        cx.anchor_names.join(", ")
    } else if !cx.issuers.is_empty() {
        cx.issuers.join(", ")
    } else {
        "a CA this machine trusts".into()
    };
    let Some(chain) = cx.presented.filter(|c| !c.is_empty()) else {
        return (
            Code::TLS_UNTRUSTED_ROOT,
            format!(
                "the certificate of {} does not chain to {expected}",
                cx.host
            ),
        );
    };
    let top = chain.last().map(|c| c.issuer.as_str()).unwrap_or_default();
    let leaf = &chain[0];
    // A chain that claims the expected CA's name but does not verify is a wrong server (a
    // regenerated workspace, a stale bundle), not an interceptor.
    let claims_expected = cx
        .anchor_names
        .iter()
        .any(|n| chain.iter().any(|c| c.issuer == *n));
    let other_ca = !cx.anchor_names.is_empty() || !cx.issuers.is_empty();
    // Another workspace CA: the service itself, under a CA this bundle does not hold (the
    // workspace was re-created, the bundle is stale).
    let workspace = chain.iter().find(|c| is_workspace_ca(&c.issuer));
    if let (false, Some(c)) = (claims_expected, workspace) {
        return (
            Code::TLS_UNTRUSTED_ROOT,
            format!(
                "the certificate for {} was issued by the workspace CA {}, not by {expected}: the workspace's CA changed (re-created) since this bundle was made; re-install from the current bundle",
                cx.host, c.issuer
            ),
        );
    }
    if !claims_expected && (other_ca || cx.via_proxy) {
        (
            Code::TLS_INTERCEPTED,
            format!(
                "the certificate for {} was issued by {} (subject {}; chain top issuer {top}), not by {expected}: a TLS-inspecting proxy or firewall replaced it; exclude this host from SSL inspection",
                cx.host, leaf.issuer, leaf.subject
            ),
        )
    } else {
        (
            Code::TLS_UNTRUSTED_ROOT,
            format!(
                "the certificate for {} (subject {}, issuer {}) does not chain to {expected}",
                cx.host, leaf.subject, leaf.issuer
            ),
        )
    }
}

/// A chain that verified: if the target declares issuers and no certificate of the chain was
/// issued by one of them, something re-signed it (an inspection CA this machine trusts).
#[cfg(feature = "tls")]
pub fn issuer_check(
    host: &str,
    chain: &[CertSummary],
    issuers: &[String],
) -> Option<(Code, String)> {
    if issuers.is_empty() || chain.is_empty() {
        return None;
    }
    let names: Vec<String> = issuers
        .iter()
        .map(|i| issuer_name(i).to_lowercase())
        .collect();
    let matches = chain.iter().any(|c| {
        let iss = c.issuer.to_lowercase();
        names.iter().any(|n| iss.contains(n))
    });
    if matches {
        return None;
    }
    let leaf = &chain[0];
    Some((
        Code::TLS_INTERCEPTED,
        format!(
            "the certificate for {host} was issued by {} (subject {}), which this machine trusts, but {host} is expected to be issued by {}: a TLS-inspecting proxy or firewall replaced it; exclude this host from SSL inspection",
            leaf.issuer,
            leaf.subject,
            issuers.join(" or ")
        ),
    ))
}

/// The catalog writes issuers as `Name (remark)`: the name is what to match.
#[cfg(feature = "tls")]
fn issuer_name(s: &str) -> &str {
    s.split(" (").next().unwrap_or(s).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors() {
        let table = [
            (ErrorKind::ConnectionRefused, None, Code::TCP_REFUSED),
            (ErrorKind::Other, Some(111), Code::TCP_REFUSED),
            (ErrorKind::TimedOut, None, Code::TCP_TIMEOUT),
            (ErrorKind::HostUnreachable, None, Code::TCP_UNREACHABLE),
            (ErrorKind::Other, Some(101), Code::TCP_UNREACHABLE),
            (ErrorKind::Other, Some(113), Code::TCP_UNREACHABLE),
            (ErrorKind::PermissionDenied, Some(1), Code::TCP_UNREACHABLE),
        ];
        for (kind, raw, code) in table {
            assert_eq!(connect_error(kind, raw), code, "{kind:?} {raw:?}");
        }
    }

    #[test]
    fn resolver_messages() {
        let table = [
            (
                "failed to lookup address information: Name or service not known",
                Code::DNS_NXDOMAIN,
            ),
            (
                "failed to lookup address information: No address associated with hostname",
                Code::DNS_NXDOMAIN,
            ),
            (
                "failed to lookup address information: Temporary failure in name resolution",
                Code::DNS_TIMEOUT,
            ),
            ("no answer within 5 s (timed out)", Code::DNS_TIMEOUT),
        ];
        for (m, code) in table {
            assert_eq!(resolver_error(m), code, "{m}");
        }
    }

    #[cfg(feature = "tls")]
    fn cert(subject: &str, issuer: &str) -> CertSummary {
        CertSummary {
            subject: subject.into(),
            issuer: issuer.into(),
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_errors() {
        let mitm = [cert("CN=ws.example", "CN=mitmproxy, O=mitmproxy")];
        let stale = [cert("CN=ws.example", "CN=uplink workspace CA")];
        let ws = ["CN=uplink workspace CA".to_owned()];
        let ms = ["Microsoft Secure Server CA 2011".to_owned()];
        let old = ["O=uplink, CN=uplink workspace CA contoso 0a0b0c0d".to_owned()];
        let recreated = [cert(
            "CN=contososensorapi.example",
            "O=uplink, CN=uplink workspace CA contoso 01020304",
        )];
        let placeholder = [cert(
            "CN=uplink-unknown-host.invalid",
            "O=uplink, CN=uplink workspace CA unknown-host 99887766",
        )];
        let unknown = TlsError::InvalidCertificate(CertificateError::UnknownIssuer);
        let cx = |presented: Option<&'static [CertSummary]>| TlsContext {
            host: "ws.example",
            presented,
            ..Default::default()
        };
        let leak = |v: &[CertSummary]| -> &'static [CertSummary] {
            Box::leak(v.to_vec().into_boxed_slice())
        };
        let table: Vec<(TlsError, TlsContext<'_>, Code, &str)> = vec![
            (
                TlsError::InvalidCertificate(CertificateError::Expired),
                cx(None),
                Code::TLS_EXPIRED,
                "expired",
            ),
            (
                TlsError::InvalidCertificate(CertificateError::NotValidForName),
                cx(None),
                Code::TLS_HOSTNAME_MISMATCH,
                "does not name ws.example",
            ),
            // Expected CA given, chain from another CA: interception, naming it.
            (
                unknown.clone(),
                TlsContext {
                    anchor_names: &ws,
                    ..cx(Some(leak(&mitm)))
                },
                Code::TLS_INTERCEPTED,
                "issued by CN=mitmproxy, O=mitmproxy",
            ),
            // Same issuer name but does not verify: a wrong or stale server.
            (
                unknown.clone(),
                TlsContext {
                    anchor_names: &ws,
                    ..cx(Some(leak(&stale)))
                },
                Code::TLS_UNTRUSTED_ROOT,
                "does not chain to CN=uplink workspace CA",
            ),
            // The workspace was re-created: its new CA, not this bundle's, through a proxy or not.
            (
                unknown.clone(),
                TlsContext {
                    anchor_names: &old,
                    via_proxy: true,
                    ..cx(Some(leak(&recreated)))
                },
                Code::TLS_UNTRUSTED_ROOT,
                "re-install from the current bundle",
            ),
            // A typo in the workspace host: the service's placeholder, not interception.
            (
                unknown.clone(),
                TlsContext {
                    anchor_names: &old,
                    via_proxy: true,
                    ..cx(Some(leak(&placeholder)))
                },
                Code::WORKSPACE_UNKNOWN,
                "no workspace answers at ws.example",
            ),
            (
                TlsError::InvalidCertificate(CertificateError::NotValidForName),
                cx(Some(leak(&placeholder))),
                Code::WORKSPACE_UNKNOWN,
                "placeholder",
            ),
            // An HTTPS proxy's own certificate.
            (
                unknown.clone(),
                TlsContext {
                    peer: Peer::Proxy,
                    ..cx(Some(leak(&mitm)))
                },
                Code::PROXY_TLS_UNTRUSTED,
                "the proxy ws.example",
            ),
            (
                TlsError::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                TlsContext {
                    peer: Peer::Proxy,
                    ..cx(None)
                },
                Code::PROXY_PROTOCOL_ERROR,
                "does not speak TLS",
            ),
            // System roots, direct, unknown CA: untrusted.
            (
                unknown.clone(),
                cx(Some(leak(&mitm))),
                Code::TLS_UNTRUSTED_ROOT,
                "a CA this machine trusts",
            ),
            // System roots through a proxy: interception.
            (
                unknown.clone(),
                TlsContext {
                    via_proxy: true,
                    ..cx(Some(leak(&mitm)))
                },
                Code::TLS_INTERCEPTED,
                "exclude this host from SSL inspection",
            ),
            // A profile's issuers.
            (
                unknown.clone(),
                TlsContext {
                    issuers: &ms,
                    ..cx(Some(leak(&mitm)))
                },
                Code::TLS_INTERCEPTED,
                "not by Microsoft Secure Server CA 2011",
            ),
            (
                TlsError::AlertReceived(AlertDescription::UnknownCA),
                TlsContext {
                    client_cert: true,
                    ..cx(None)
                },
                Code::MTLS_REJECTED,
                "refused the client certificate",
            ),
            (
                TlsError::AlertReceived(AlertDescription::UnknownCA),
                cx(None),
                Code::TLS_HANDSHAKE_FAILED,
                "failed",
            ),
            (
                TlsError::General("x".into()),
                cx(None),
                Code::TLS_HANDSHAKE_FAILED,
                "failed",
            ),
        ];
        for (err, cx, code, needle) in table {
            let (got, detail) = tls_error(&err, &cx);
            assert_eq!(got, code, "{err:?}: {detail}");
            assert!(
                detail.contains(needle),
                "{err:?}: {detail:?} lacks {needle:?}"
            );
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn issuers_of_a_verified_chain() {
        let ms = [
            "Microsoft Secure Server CA 2011".to_owned(),
            "DigiCert (a root the analyzer names 'digi')".to_owned(),
        ];
        let good = [cert(
            "CN=x",
            "CN=Microsoft Secure Server CA 2011, O=Microsoft",
        )];
        let digi = [cert("CN=x", "CN=DigiCert Global Root G2")];
        let corp = [cert("CN=x", "CN=Contoso Inspection CA")];
        assert_eq!(issuer_check("x", &good, &ms), None);
        assert_eq!(issuer_check("x", &digi, &ms), None);
        assert_eq!(issuer_check("x", &corp, &[]), None);
        let (code, detail) = issuer_check("x", &corp, &ms).unwrap();
        assert_eq!(code, Code::TLS_INTERCEPTED);
        assert!(
            detail.contains("Contoso Inspection CA")
                && detail.contains("exclude this host from SSL inspection")
        );
    }
}
