//! The production [`Negotiator`]: the system's MIT GSSAPI through `libgssapi`, SPNEGO over
//! Kerberos, exactly as `curl --proxy-negotiate` does it.
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

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{
    OidSet, GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL,
};
use secrecy::{ExposeSecret, SecretString};

use crate::negotiate::{principal, Negotiator, NegotiatorFactory, StartError};

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

fn classify(e: libgssapi::error::Error, what: String) -> StartError {
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
        // Credentials for Kerberos, usable by SPNEGO (which needs them listed for itself too).
        let mechs = OidSet::new()
            .and_then(|mut s| s.add(&GSS_MECH_KRB5).map(|()| s))
            .and_then(|mut s| s.add(&GSS_MECH_SPNEGO).map(|()| s))
            .map_err(|e| unavailable(format!("GSSAPI: {e}")))?;
        let name = if user.trim().is_empty() {
            None
        } else {
            let p = principal(user);
            Some(
                Name::new(p.as_bytes(), Some(&GSS_NT_KRB5_PRINCIPAL))
                    .map_err(|e| unavailable(format!("the Kerberos principal {p:?}: {e}")))?,
            )
        };
        let cred = if password.expose_secret().is_empty() {
            Cred::acquire(name.as_ref(), None, CredUsage::Initiate, Some(&mechs)).map_err(|e| {
                classify(
                    e,
                    format!(
                        "no Kerberos credentials for {} (keytab or ticket cache)",
                        principal(user)
                    ),
                )
            })?
        } else {
            Cred::acquire_with_password(
                name.as_ref(),
                password.expose_secret(),
                None,
                CredUsage::Initiate,
                Some(&mechs),
            )
            .map_err(|e| classify(e, format!("Kerberos login as {} failed", principal(user))))?
        };
        let service = format!("HTTP@{proxy_host}");
        let target = Name::new(service.as_bytes(), Some(&GSS_NT_HOSTBASED_SERVICE))
            .map_err(|e| unavailable(format!("the service name {service}: {e}")))?;
        let mut ctx = ClientCtx::new(
            Some(cred),
            target,
            CtxFlags::GSS_C_MUTUAL_FLAG,
            Some(&GSS_MECH_SPNEGO),
        );
        let token = ctx
            .step(None, None)
            .map_err(|e| unavailable(format!("no Kerberos ticket for HTTP/{proxy_host}: {e}")))?
            .ok_or_else(|| unavailable("GSSAPI produced no first token".into()))?;
        let out = token.to_vec();
        self.ctx = Some(ctx);
        Ok(out)
    }

    fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let ctx = self.ctx.as_mut().ok_or("no Negotiate context")?;
        if ctx.is_complete() {
            return Ok(None);
        }
        ctx.step(Some(token), None)
            .map(|t| t.map(|b| b.to_vec()))
            .map_err(|e| format!("GSSAPI: {e}"))
    }
}
