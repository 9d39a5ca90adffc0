//! Negotiate (RFC 4559): SPNEGO tokens in `Proxy-Authorization: Negotiate <base64>`, with
//! Kerberos underneath.
//!
//! The tokens themselves come from a [`Negotiator`]: the system's GSSAPI in production
//! ([`crate::gssapi`], feature `gssapi`), a scripted one in tests. Kerberos is the one step of
//! proxy authentication that does I/O outside the proxy connection — obtaining a ticket for
//! `HTTP/<proxy host>` means talking to the KDC that krb5.conf names — so it sits behind this
//! trait and the [`crate::Authenticator`] stays a state machine; the tunnel runs its rounds on a
//! blocking thread, bounded by the exchange's deadline.
//!
//! What is pure here: the service name for a proxy host and the Kerberos principal for the
//! configured user ([`principal`]).

use secrecy::SecretString;

/// A source of SPNEGO tokens for one handshake.
pub trait Negotiator: Send {
    /// The first token for the service `HTTP@<proxy_host>`, as `user` (a Kerberos principal, or
    /// empty for the default one) with `password`, or — when the password is empty — with the
    /// credentials the system already has (the client keytab, `KRB5_CLIENT_KTNAME`, or a
    /// ticket cache). An error means Kerberos is not usable here (no krb5.conf, no KDC, no
    /// ticket): the authenticator moves on to the next scheme the proxy offers.
    fn start(
        &mut self,
        user: &str,
        password: &SecretString,
        proxy_host: &str,
    ) -> Result<Vec<u8>, StartError>;

    /// Consumes the proxy's token; returns the next token to send, or None when the context is
    /// complete on this side.
    fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, String>;
}

/// Why a Negotiate handshake could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// Kerberos is not usable here (no krb5.conf, no KDC, no ticket for the proxy): try the next
    /// scheme.
    Unavailable(String),
    /// The KDC refused the user's login (wrong password, unknown principal): a final answer.
    Rejected(String),
}

/// Makes a [`Negotiator`] for each exchange. Compared by address.
#[derive(Clone, Copy)]
pub struct NegotiatorFactory(pub fn() -> Box<dyn Negotiator>);

impl std::fmt::Debug for NegotiatorFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NegotiatorFactory")
    }
}

impl PartialEq for NegotiatorFactory {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for NegotiatorFactory {}

/// The Kerberos principal for a configured proxy user: `user@REALM` as given;
/// `DOMAIN\user` as `user@DOMAIN` (realms are upper case; a NetBIOS domain name that differs
/// from the realm needs the `user@REALM` form); a bare `user` is left for krb5.conf's
/// `default_realm`.
pub fn principal(user: &str) -> String {
    let user = user.trim();
    if user.contains('@') {
        return user.to_owned();
    }
    match user.split_once('\\') {
        Some((domain, name)) if !domain.is_empty() => {
            format!("{name}@{}", domain.to_ascii_uppercase())
        }
        Some((_, name)) => name.to_owned(),
        None => user.to_owned(),
    }
}

/// The proxy's host as GSSAPI's host-based service name wants it: no port, no IPv6 brackets.
pub fn proxy_host(proxy: &str) -> String {
    let host = if let Some(rest) = proxy.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        proxy.rsplit_once(':').map_or(proxy, |(h, _)| h)
    };
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals() {
        let cases = [
            ("alice@UPLINK.TEST", "alice@UPLINK.TEST"),
            ("CONTOSO\\alice", "alice@CONTOSO"),
            ("contoso.com\\alice", "alice@CONTOSO.COM"),
            ("\\alice", "alice"),
            ("alice", "alice"),
            (" alice@R ", "alice@R"),
        ];
        for (user, want) in cases {
            assert_eq!(principal(user), want, "{user}");
        }
    }

    #[test]
    fn proxy_hosts() {
        let cases = [
            ("proxy.corp:3128", "proxy.corp"),
            ("Proxy.Corp:8080", "proxy.corp"),
            ("[::1]:3128", "::1"),
            ("localhost", "localhost"),
        ];
        for (proxy, want) in cases {
            assert_eq!(proxy_host(proxy), want, "{proxy}");
        }
    }
}
