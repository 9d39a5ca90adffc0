//! Stable diagnostic codes.
//!
//! Every failure a user can see — in `uplink sensor status`, in a heartbeat, in `uplink check`'s
//! report, in an HTTP error body from the service — carries one of these codes. The codes are a
//! public interface: scripts match on them and support articles name them, so a code is never
//! renamed or reused; new ones are added at the end of a group.
//!
//! Each code knows the step it belongs to (so the analyzer can say *where* a route broke) and a
//! one-line fix (so the user knows *what to do*). This crate deliberately holds no error types of
//! its own: library crates define typed errors and map each variant to a [`Code`].

use std::fmt;

pub mod classify;
mod fix;

pub use fix::{Context, Diagnosis, Who};

/// The step of a connection, or of the service's handling of a request, where a failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Dns,
    Tcp,
    ProxyConnect,
    ProxyAuth,
    Tls,
    ClientCert,
    Http,
    /// Work on the local machine: configuration, the queue, the file system.
    Local,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Dns => "dns",
            Step::Tcp => "tcp",
            Step::ProxyConnect => "proxy_connect",
            Step::ProxyAuth => "proxy_auth",
            Step::Tls => "tls",
            Step::ClientCert => "client_cert",
            Step::Http => "http",
            Step::Local => "local",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = ($step:ident, $fix:literal), )*) => {
        /// A stable diagnostic code. Its string form (`TCP_REFUSED`) is what users and scripts see.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable string form, e.g. `"PROXY_AUTH_FAILED"`.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => stringify!($variant), )* }
            }

            /// The step this code belongs to.
            pub fn step(self) -> Step {
                match self { $( Code::$variant => Step::$step, )* }
            }

            /// A one-line fix addressed to the administrator.
            pub fn fix(self) -> &'static str {
                match self { $( Code::$variant => $fix, )* }
            }
        }
    };
}

codes! {
    /// The name does not exist in DNS.
    DNS_NXDOMAIN = (Dns, "Check the host name for typos and that this machine's DNS servers can resolve it (or configure a proxy that resolves it)."),
    /// No DNS answer within the timeout.
    DNS_TIMEOUT = (Dns, "Check that the DNS servers in /etc/resolv.conf are reachable from this machine."),
    /// The peer actively refused the TCP connection.
    TCP_REFUSED = (Tcp, "Nothing listens on that host and port: check the port, and that the service or proxy is running."),
    /// No TCP answer within the timeout (often a firewall dropping packets).
    TCP_TIMEOUT = (Tcp, "A firewall is probably dropping the traffic: allow this host and port outbound, or use the proxy."),
    /// No route to the host or network.
    TCP_UNREACHABLE = (Tcp, "This machine has no route to that address: use the proxy, or fix routing."),
    /// The proxy answered CONNECT with an error status other than 407.
    PROXY_CONNECT_DENIED = (ProxyConnect, "The proxy refuses to tunnel to this host: ask the proxy administrator to allow CONNECT to it on port 443."),
    /// The proxy wants credentials and none were configured (or none of its schemes is supported).
    PROXY_AUTH_REQUIRED = (ProxyAuth, "The proxy requires authentication: configure a proxy user and password (uplink sensor proxy set --proxy-url URL --proxy-user DOMAIN\\user --proxy-password ...)."),
    /// The proxy rejected the credentials that were sent.
    PROXY_AUTH_FAILED = (ProxyAuth, "The proxy rejected the credentials: check the user name (DOMAIN\\user) and password, then set them again."),
    /// The proxy took the connection but did not answer the tunnel request in time.
    PROXY_TIMEOUT = (ProxyConnect, "The proxy accepted the connection but did not answer in time: check the proxy's load and its own route to the service, or use another proxy."),
    /// An HTTPS proxy's certificate does not chain to the CA trusted for it.
    PROXY_TLS_UNTRUSTED = (ProxyConnect, "The HTTPS proxy's certificate does not chain to a trusted CA: give its CA with `uplink sensor proxy set --proxy-ca FILE`, or add it to the system roots."),
    /// The proxy sent something that is not HTTP, or broke the protocol.
    PROXY_PROTOCOL_ERROR = (ProxyConnect, "The proxy's answer was not valid HTTP: check the proxy URL's scheme and port."),
    /// The presented chain leads to a different CA than expected: something intercepts TLS.
    TLS_INTERCEPTED = (Tls, "A TLS-inspecting proxy or firewall replaced the certificate: exclude this host from SSL inspection."),
    /// The chain leads to no trusted root.
    TLS_UNTRUSTED_ROOT = (Tls, "The server's certificate does not chain to the expected CA: check the workspace bundle and the URL."),
    /// A certificate in the chain has expired (or is not yet valid).
    TLS_EXPIRED = (Tls, "A certificate has expired or is not yet valid: check this machine's clock, then renew the certificate."),
    /// The certificate does not name the host that was dialed.
    TLS_HOSTNAME_MISMATCH = (Tls, "The certificate does not name this host: check the URL's host name."),
    /// The TLS handshake failed for another reason.
    TLS_HANDSHAKE_FAILED = (Tls, "The TLS handshake failed: check that the port speaks TLS and that nothing in the path alters the traffic."),
    /// The service did not accept this sensor's client certificate.
    MTLS_REJECTED = (ClientCert, "The service rejected this sensor's certificate: re-enroll the sensor (uplink sensor install) for this workspace."),
    /// An HTTP status other than the expected one.
    HTTP_UNEXPECTED_STATUS = (Http, "The service answered with an unexpected HTTP status: see the detail for the status and body."),
    /// The enrollment access key was refused.
    ENROLL_DENIED = (Http, "The access key was refused: take a fresh bundle from `uplink workspace create` or the console."),
    /// The service refused a request body (malformed, too large).
    REQUEST_REJECTED = (Http, "The service refused the request as malformed or too large: see the detail."),
    /// The whole operation ran out of time.
    TIMEOUT = (Local, "The operation did not finish in time: see the last error for the step that kept failing."),
    /// A local configuration problem.
    CONFIG_INVALID = (Local, "Fix the configuration value named in the message."),
    /// The local queue is full.
    QUEUE_FULL = (Local, "The sensor cannot upload fast enough or at all: fix connectivity (uplink check), or raise the queue size."),
    /// A local I/O failure (disk, permissions).
    LOCAL_IO = (Local, "Check permissions and free space on the path named in the message."),
    /// `uplink check`: a method with nothing to test (no proxy configured, no PAC given), like the
    /// seeds' analyzer's "Doesn't exist". Not a failure of the route.
    NOT_CONFIGURED = (Local, "Nothing is configured for this method: configure it (see uplink check --help) or leave it out with --method."),
    /// The service answered 503: it is up but cannot take data now (storage down, overloaded).
    SERVICE_UNAVAILABLE = (Http, "The service is up but cannot store data right now; the sensor keeps its events and retries: the service's administrator should check its log and storage."),
    /// Part of the sensor's queue was damaged on disk; the records overlapping it are lost.
    QUEUE_DAMAGED = (Local, "Part of the queue file was damaged on disk; every intact record was kept and delivered, the ones named were lost: check the disk (dmesg, smartctl) and the file system."),
    /// The sensor's file system is full.
    DISK_FULL = (Local, "The file system holding the sensor's state is full: free space there (the queue needs room to accept and acknowledge events)."),
    /// Enrollment refused: this public key already belongs to an enrolled sensor of the workspace.
    KEY_ALREADY_ENROLLED = (Http, "This key is already enrolled in the workspace: a new sensor must make its own key (uplink sensor install does); to replace an enrolled sensor's certificate, let it renew."),
    /// A proxy found by discovery (WPAD, PAC) asked for credentials that are not released to it.
    PROXY_CREDENTIALS_WITHHELD = (ProxyAuth, "A proxy named by discovery (WPAD/PAC) asked for credentials, but its host is not in the sensor's credential allow-list: if it is your proxy, allow it (uplink sensor proxy set --credential-hosts HOST)."),
    /// A proxy found by discovery refused the tunnel; the fallback policy decided what happened next.
    DISCOVERED_PROXY_REFUSED = (ProxyConnect, "A proxy named by discovery (WPAD/PAC) refused the connection: check the PAC script the network hands out (a rogue network can name any proxy), or set the proxy explicitly."),
    /// The PAC script could not be fetched or read (refused, 404, TLS, too large, missing file).
    PAC_FETCH_FAILED = (Local, "The PAC script could not be fetched: check its URL (or path) and that the server hosting it answers from this machine; the message names the step that failed."),
    /// The PAC script does not compile, threw, or returned no usable answer.
    PAC_SCRIPT_ERROR = (Local, "The PAC script is broken: fix the script (the message names the error and line), or set the proxy explicitly."),
    /// Fetching or running the PAC script took longer than its time limit.
    PAC_TIMEOUT = (Local, "The PAC script's server (or the script itself, or its DNS lookups) did not answer in time: check the server hosting the script and any firewall in between."),
    /// WPAD discovery found no PAC script (no DHCP option 252, no wpad.<domain> answering).
    WPAD_NOT_FOUND = (Local, "WPAD discovery found no PAC script on this network: publish one (DHCP option 252 or http://wpad.<domain>/wpad.dat), or set the proxy explicitly (uplink sensor proxy set --proxy-url URL)."),
    /// The proxy took the tunnel request but could not reach the target itself (its DNS, its
    /// route or the target failed: a 5xx answer, SOCKS replies 3–5). Not a policy denial.
    PROXY_UPSTREAM_FAILED = (ProxyConnect, "The proxy could not reach the service itself (its reason is quoted in the detail): its administrator should check the proxy's DNS and outbound route to this host and port."),
    /// No workspace answers at this host name: the service presented its placeholder certificate.
    WORKSPACE_UNKNOWN = (Tls, "No workspace answers at this host name: check the URL (the workspace name in <workspace>sensorapi.<domain>) against the bundle; a bundle from another service (another --data-dir or --database) is unknown to this one."),
    /// The sensor's certificate was revoked (`uplink fleet revoke` or `decommission`): the service
    /// refuses it (403). Its events stay queued.
    CERT_REVOKED = (Http, "This sensor's certificate was revoked by the workspace's administrator: the service refuses it; its events stay queued here. Ask the administrator whether this machine should come back: if so, enroll it again with the workspace's access key (uplink sensor install with the workspace's bundle); it becomes a new sensor."),
    /// The admin API refused the request's token: none, malformed, revoked, or another
    /// workspace's (docs/admin-api.md).
    ADMIN_TOKEN_INVALID = (Http, "The admin API needs `Authorization: Bearer TOKEN` with a token of this workspace: create one with `uplink admin token create WORKSPACE --name N`, and check it was not revoked (uplink admin token list WORKSPACE)."),
    /// The admin API token's role does not allow this call (a viewer token may only read).
    ADMIN_FORBIDDEN = (Http, "This token's role does not allow the call (viewer tokens may only GET): use an admin token (uplink admin token create WORKSPACE --name N --role admin)."),
    /// Enrollment refused for now (429): the workspace's enrollments, or this address's failed
    /// ones, reached their limit for the current window (issue #24, docs/lifecycle.md).
    ENROLL_RATE_LIMITED = (Http, "The service limits enrollments (successful ones per workspace, failed ones per address): wait as long as its Retry-After says and try again (uplink sensor install waits by itself, see --enroll-wait); for a larger deployment the workspace's administrator can raise the limit (uplink workspace set NAME --enroll-limit N)."),
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Code {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A string that is not one of the known codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCode(pub String);

impl fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown diagnostic code {:?}", self.0)
    }
}

impl std::error::Error for UnknownCode {}

/// Implemented by typed errors that classify themselves with a stable code.
pub trait Diagnose {
    fn code(&self) -> Code;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_string_form() {
        for &code in Code::ALL {
            assert_eq!(code.as_str().parse::<Code>().unwrap(), code);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), code);
        }
    }

    #[test]
    fn codes_are_unique_upper_snake_case_with_a_fix() {
        let mut seen = std::collections::HashSet::new();
        for &code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()));
            assert!(code.fix().len() > 20, "{s} needs a real fix");
        }
    }

    #[test]
    fn the_issue_list_of_codes_exists() {
        for name in [
            "DNS_NXDOMAIN",
            "DNS_TIMEOUT",
            "TCP_REFUSED",
            "TCP_TIMEOUT",
            "TCP_UNREACHABLE",
            "PROXY_CONNECT_DENIED",
            "PROXY_AUTH_REQUIRED",
            "PROXY_AUTH_FAILED",
            "TLS_INTERCEPTED",
            "TLS_UNTRUSTED_ROOT",
            "TLS_EXPIRED",
            "TLS_HOSTNAME_MISMATCH",
            "TLS_HANDSHAKE_FAILED",
            "MTLS_REJECTED",
            "HTTP_UNEXPECTED_STATUS",
        ] {
            assert!(name.parse::<Code>().is_ok(), "{name} missing");
        }
        assert!("NOPE".parse::<Code>().is_err());
    }
}
