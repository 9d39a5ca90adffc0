//! The production [`Negotiator`]: the system's MIT GSSAPI through `uplink-gssapi` (loaded when
//! a proxy first asks for Negotiate, not at start), SPNEGO over Kerberos, exactly as `curl
//! --proxy-negotiate` does it. Without the library (`libgssapi_krb5.so.2`), Negotiate is
//! unavailable and the next scheme the proxy offers is tried.
//!
//! Where things come from (all MIT Kerberos' own rules, nothing uplink-specific):
//! - the KDC and realm: krb5.conf (`/etc/krb5.conf`, or `KRB5_CONFIG`);
//! - the user's ticket: with a password, a fresh one from the KDC (kept in memory only, never in
//!   a ticket cache on disk); without, the client keytab (`KRB5_CLIENT_KTNAME`, or krb5.conf's
//!   `default_client_keytab_name`) or an existing ticket cache;
//! - the proxy's ticket: for the host-based service `HTTP@<proxy host>`, i.e. the principal
//!   `HTTP/<proxy host>@REALM` (krb5.conf's `dns_canonicalize_hostname` and `rdns` decide
//!   whether the host name is canonicalised through DNS first).
//!
//! Mutual authentication is not checked: the proxy's final token (on its 200) is not read.

use secrecy::{ExposeSecret, SecretString};

use crate::negotiate::{principal, Negotiator, NegotiatorFactory, StartError};
use uplink_gssapi::{ClientCtx, Cred, Name};

/// The factory [`crate::Options::negotiator`] uses by default when the feature is on.
pub const FACTORY: NegotiatorFactory = NegotiatorFactory(new);

/// MIT's messages (krb5_err.et) for a login the KDC refused: the user must act, another scheme
/// would not help. Matched as text because GSSAPI's mechglue renumbers minor codes per process
/// (the numbers are not krb5's), while the messages are the library's stable table.
const REJECTED: [&str; 5] = [
    "Preauthentication failed",       // KDC_ERR_PREAUTH_FAILED: wrong password
    "Decrypt integrity check failed", // KRB_AP_ERR_BAD_INTEGRITY: wrong password
    "not found in Kerberos database", // KDC_ERR_C_PRINCIPAL_UNKNOWN: no such user
    "Client's credentials have been revoked", // KDC_ERR_CLIENT_REVOKED: locked or disabled
    "Password has expired",           // KDC_ERR_KEY_EXP
];

fn classify(e: uplink_gssapi::Error, what: String) -> StartError {
    let message = format!("{what}: {e}");
    if REJECTED.iter().any(|r| message.contains(r)) {
        StartError::Rejected(message)
    } else {
        StartError::Unavailable(message)
    }
}

fn new() -> Box<dyn Negotiator> {
    Box::new(Gssapi { ctx: None })
}

struct Gssapi {
    ctx: Option<ClientCtx>,
}

impl Negotiator for Gssapi {
    fn start(
        &mut self,
        user: &str,
        password: &SecretString,
        proxy_host: &str,
    ) -> Result<Vec<u8>, StartError> {
        let unavailable = StartError::Unavailable;
        let name = if user.trim().is_empty() {
            None
        } else {
            let p = principal(user);
            Some(
                Name::principal(&p)
                    .map_err(|e| unavailable(format!("the Kerberos principal {p:?}: {e}")))?,
            )
        };
        let cred = if password.expose_secret().is_empty() {
            Cred::acquire(name.as_ref()).map_err(|e| {
                classify(
                    e,
                    format!(
                        "no Kerberos credentials for {} (keytab or ticket cache)",
                        principal(user)
                    ),
                )
            })?
        } else {
            Cred::with_password(name.as_ref(), password.expose_secret().as_bytes())
                .map_err(|e| classify(e, format!("Kerberos login as {} failed", principal(user))))?
        };
        let service = format!("HTTP@{proxy_host}");
        let target = Name::host_service(&service)
            .map_err(|e| unavailable(format!("the service name {service}: {e}")))?;
        let mut ctx = ClientCtx::new(cred, target);
        let out = ctx
            .step(None)
            .map_err(|e| unavailable(format!("no Kerberos ticket for HTTP/{proxy_host}: {e}")))?
            .ok_or_else(|| unavailable("GSSAPI produced no first token".into()))?;
        self.ctx = Some(ctx);
        Ok(out)
    }

    fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let ctx = self.ctx.as_mut().ok_or("no Negotiate context")?;
        if ctx.is_complete() {
            return Ok(None);
        }
        ctx.step(Some(token)).map_err(|e| format!("GSSAPI: {e}"))
    }
}
