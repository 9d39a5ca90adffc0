//! Proxy authentication as pure code: `Proxy-Authenticate` challenges ([`challenge`]), the
//! schemes' messages ([`digest`], [`ntlm`], Basic here), and [`Authenticator`], a sans-IO state
//! machine over the 407 replies of one CONNECT exchange.
//!
//! The tunnel (`uplink-tunnel`) owns the socket: it sends CONNECT, and on each 407 hands the
//! challenges to [`Authenticator::respond`], which answers with the next `Proxy-Authorization`
//! value or a final [`AuthError`]. Nothing here reads a clock it was not given, a socket or the
//! environment, so every path is tested without a proxy.
//!
//! Choices:
//! - The first CONNECT goes without credentials and the proxy's 407 says which schemes it takes,
//!   so a domain password is never sent in Basic (base64, in clear on the wire) to a proxy that
//!   would have accepted NTLM or Digest. Preemptive Basic ([`Options::preemptive_basic`], as curl
//!   does with `--proxy-user`) saves one round trip per connection on Basic-only proxies; it is
//!   off by default for that reason.
//! - The strongest scheme the proxy offers wins, in [`Options::preference`] order
//!   (Negotiate > NTLM > Digest > Basic by default). Negotiate (Kerberos, [`negotiate`]) is used
//!   when the proxy offers it and a [`negotiate::Negotiator`] can start a handshake with the
//!   configured credentials (a password, or the system's keytab or ticket cache); when it cannot
//!   (no krb5.conf, no KDC, unknown user) the next scheme offered is tried, and the reason is in
//!   the error if none works. NTLM inside Negotiate is not done.
//! - A bounded number of rounds ([`Options::max_rounds`]), so a proxy answering 407 forever ends.
//!
//! Credentials never reach `Debug` output or errors: errors name the user and the scheme only.

#![forbid(unsafe_code)]

pub mod challenge;
pub mod digest;
#[cfg(feature = "gssapi")]
pub mod gssapi;
pub mod negotiate;
pub mod ntlm;

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use uplink_diag::{Code, Diagnose};

pub use challenge::Challenge;

/// An authentication scheme uplink knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Negotiate,
    Ntlm,
    Digest,
    Basic,
}

impl Scheme {
    /// The name as it appears in headers and in `uplink sensor status`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Negotiate => "Negotiate",
            Scheme::Ntlm => "NTLM",
            Scheme::Digest => "Digest",
            Scheme::Basic => "Basic",
        }
    }

    /// Whether this build can answer the scheme (Negotiate also needs a
    /// [`Options::negotiator`]).
    pub fn supported(self) -> bool {
        true
    }

    /// Whether a handshake is bound to one TCP connection (NTLM, Negotiate): its later messages
    /// are meaningless on another connection, so a closed connection ends it.
    pub fn connection_bound(self) -> bool {
        matches!(self, Scheme::Negotiate | Scheme::Ntlm)
    }

    const ALL: [Scheme; 4] = [
        Scheme::Negotiate,
        Scheme::Ntlm,
        Scheme::Digest,
        Scheme::Basic,
    ];
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown proxy authentication scheme {0:?}: use negotiate, ntlm, digest or basic")]
pub struct UnknownScheme(String);

impl FromStr for Scheme {
    type Err = UnknownScheme;
    fn from_str(s: &str) -> Result<Scheme, UnknownScheme> {
        Scheme::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownScheme(s.trim().to_owned()))
    }
}

/// Parses a preference list such as `ntlm,digest` (order matters; unlisted schemes are never used).
pub fn parse_preference(list: &str) -> Result<Vec<Scheme>, UnknownScheme> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// How to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Schemes to use, strongest first; a scheme not listed is never used.
    pub preference: Vec<Scheme>,
    /// Most 407 replies answered in one exchange. NTLM needs 2, Digest 1 (+1 on a stale nonce).
    pub max_rounds: u32,
    /// The workstation name sent in NTLM's AUTHENTICATE message (may be empty).
    pub workstation: String,
    /// Send Basic credentials with the first CONNECT, before any 407 (only if Basic is in the
    /// preference).
    pub preemptive_basic: bool,
    /// Where Negotiate tokens come from: the system's GSSAPI when built with the `gssapi`
    /// feature; None: Negotiate is never used.
    pub negotiator: Option<negotiate::NegotiatorFactory>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            preference: Scheme::ALL.to_vec(),
            max_rounds: 4,
            workstation: String::new(),
            preemptive_basic: false,
            #[cfg(feature = "gssapi")]
            negotiator: Some(gssapi::FACTORY),
            #[cfg(not(feature = "gssapi"))]
            negotiator: None,
        }
    }
}

/// The schemes a proxy offered, for messages: `Basic, NTLM`, or `no scheme`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offered(pub Vec<String>);

impl Offered {
    pub fn of(challenges: &[Challenge]) -> Offered {
        let mut names: Vec<String> = Vec::new();
        for c in challenges {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&c.scheme)) {
                names.push(c.scheme.clone());
            }
        }
        Offered(names)
    }
}

impl fmt::Display for Offered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("no scheme")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

/// Why authentication ended without success. Names the user and scheme, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("requires authentication (it offers: {offered}); configure a proxy user and password")]
    NoCredentials { offered: Offered },
    #[error("offers {offered}, none of which uplink can use with the configured preference ({preference}){note}; enable NTLM, Digest or Basic on the proxy, fix Kerberos (krb5.conf, the user's principal), or change the preference")]
    Unsupported {
        offered: Offered,
        preference: String,
        note: String,
    },
    #[error("rejected the {scheme} credentials for user {user} (it offers: {offered}); check the user name (DOMAIN\\user) and password")]
    Rejected {
        scheme: Scheme,
        user: String,
        offered: Offered,
    },
    #[error("kept answering 407 after {rounds} rounds of {scheme} authentication for user {user}; giving up")]
    TooManyRounds {
        scheme: Scheme,
        user: String,
        rounds: u32,
    },
    #[error("asks for Kerberos (Negotiate), and the KDC refused the login of {user}: {reason}; check the user name (user@REALM) and password")]
    KerberosRejected { user: String, reason: String },
    #[error("sent an unusable {scheme} challenge: {reason}")]
    BadChallenge { scheme: Scheme, reason: String },
}

impl Diagnose for AuthError {
    fn code(&self) -> Code {
        match self {
            AuthError::NoCredentials { .. } | AuthError::Unsupported { .. } => {
                Code::PROXY_AUTH_REQUIRED
            }
            AuthError::Rejected { .. }
            | AuthError::TooManyRounds { .. }
            | AuthError::KerberosRejected { .. } => Code::PROXY_AUTH_FAILED,
            AuthError::BadChallenge { .. } => Code::PROXY_PROTOCOL_ERROR,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Start,
    /// Sent Basic credentials: another 407 is a rejection.
    Basic,
    /// Sent Basic credentials before any challenge: a 407 that offers Basic is a rejection, one
    /// that does not is the proxy asking for another scheme.
    PreemptiveBasic,
    /// Sent a Digest response (each nonce is used once, so the nonce count is always 1).
    Digest { stale_retried: bool },
    /// Sent NTLM NEGOTIATE; the 407 should carry a CHALLENGE.
    NtlmNegotiated,
    /// Sent NTLM AUTHENTICATE: another 407 is a rejection.
    NtlmAuthenticated,
    /// Sent a Negotiate token: a 407 with a continuation token goes on, one without is a
    /// rejection.
    Negotiate,
}

/// The 407 rounds of one CONNECT exchange. See the module docs.
pub struct Authenticator {
    credentials: Option<(String, SecretString)>,
    options: Options,
    /// Digest's `uri` for CONNECT: the request target, `host:port`.
    target: String,
    state: State,
    rounds: u32,
    /// For Negotiate's service name `HTTP@host`.
    proxy_host: String,
    negotiator: Option<Box<dyn negotiate::Negotiator>>,
    /// Why Negotiate was offered but not used, for the error if nothing else works.
    negotiate_note: Option<String>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("password", &"<redacted>")
            .field("target", &self.target)
            .field("state", &self.state)
            .field("rounds", &self.rounds)
            .finish()
    }
}

/// What to send next.
#[derive(Debug)]
pub struct Answer {
    /// The `Proxy-Authorization` value (secret: it may carry the password in Basic).
    pub authorization: SecretString,
    /// The scheme in use.
    pub scheme: Scheme,
    /// True when this value may be sent on a new connection (it starts a handshake, or the scheme
    /// is connection-independent); false mid-NTLM, where the proxy must keep the connection.
    pub fresh_connection_ok: bool,
}

impl Authenticator {
    /// `target` is the CONNECT request target, `host:port`.
    pub fn new(
        credentials: Option<(String, SecretString)>,
        target: impl Into<String>,
        options: Options,
    ) -> Authenticator {
        Authenticator {
            credentials,
            options,
            target: target.into(),
            state: State::Start,
            rounds: 0,
            proxy_host: String::new(),
            negotiator: None,
            negotiate_note: None,
        }
    }

    /// The proxy's host name (no port), for Negotiate's service name `HTTP@host`.
    pub fn set_proxy_host(&mut self, host: impl Into<String>) {
        self.proxy_host = host.into();
    }

    /// The scheme chosen, once one is.
    pub fn scheme(&self) -> Option<Scheme> {
        match self.state {
            State::Start => None,
            State::Basic | State::PreemptiveBasic => Some(Scheme::Basic),
            State::Digest { .. } => Some(Scheme::Digest),
            State::NtlmNegotiated | State::NtlmAuthenticated => Some(Scheme::Ntlm),
            State::Negotiate => Some(Scheme::Negotiate),
        }
    }

    /// Rounds answered so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// The `Proxy-Authorization` value for the first CONNECT, before any 407: Basic if
    /// [`Options::preemptive_basic`] is set and credentials are configured, else none.
    pub fn initial(&mut self) -> Option<SecretString> {
        let (user, password) = self.credentials.as_ref()?;
        if !(self.options.preemptive_basic && self.options.preference.contains(&Scheme::Basic)) {
            return None;
        }
        if self.state != State::Start {
            return None;
        }
        self.state = State::PreemptiveBasic;
        Some(basic(user, password))
    }

    /// Answers a 407 whose `Proxy-Authenticate` challenges are `challenges`.
    pub fn respond(&mut self, challenges: &[Challenge]) -> Result<Answer, AuthError> {
        let offered = Offered::of(challenges);
        let Some((user, password)) = self.credentials.clone() else {
            return Err(AuthError::NoCredentials { offered });
        };
        if let Some(scheme) = self.scheme() {
            if self.rounds >= self.options.max_rounds {
                return Err(AuthError::TooManyRounds {
                    scheme,
                    user,
                    rounds: self.rounds,
                });
            }
        }
        self.rounds += 1;
        let rejected = |scheme| AuthError::Rejected {
            scheme,
            user: user.clone(),
            offered: offered.clone(),
        };
        match self.state {
            State::Start => self.start(challenges, &user, &password, offered.clone()),
            State::Basic => Err(rejected(Scheme::Basic)),
            State::PreemptiveBasic => {
                if challenges.iter().any(|c| c.is("Basic")) {
                    Err(rejected(Scheme::Basic))
                } else {
                    self.state = State::Start;
                    self.start(challenges, &user, &password, offered.clone())
                }
            }
            State::Digest { stale_retried } => {
                // A stale nonce is not a rejection: the password was right, the nonce expired.
                match best_digest(challenges) {
                    Some(p) if p.stale && !stale_retried => {
                        self.state = State::Digest {
                            stale_retried: true,
                        };
                        Ok(self.digest_answer(&p, &user, &password, 1))
                    }
                    _ => Err(rejected(Scheme::Digest)),
                }
            }
            State::NtlmNegotiated => {
                let token = challenges
                    .iter()
                    .filter(|c| c.is("NTLM"))
                    .find_map(|c| c.token68.as_deref());
                let Some(token) = token else {
                    return Err(AuthError::BadChallenge {
                        scheme: Scheme::Ntlm,
                        reason: format!("it answered the NTLM NEGOTIATE message without an NTLM challenge (it offers: {offered})"),
                    });
                };
                let bad = |e: ntlm::NtlmError| AuthError::BadChallenge {
                    scheme: Scheme::Ntlm,
                    reason: e.to_string(),
                };
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(token)
                    .map_err(|_| bad(ntlm::NtlmError::Base64))?;
                let challenge = ntlm::parse_challenge(&raw).map_err(bad)?;
                let account = ntlm::Account::parse(&user);
                let key = ntlm::ntowf_v2(&account.user, &account.domain, password.expose_secret());
                let client_challenge: [u8; 8] = rand::random();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let r = ntlm::responses(&key, &challenge, client_challenge, ntlm::filetime(now));
                let msg = ntlm::authenticate(&account, &self.options.workstation, &challenge, &r);
                self.state = State::NtlmAuthenticated;
                Ok(Answer {
                    authorization: SecretString::from(format!("NTLM {}", b64(&msg))),
                    scheme: Scheme::Ntlm,
                    fresh_connection_ok: false,
                })
            }
            State::NtlmAuthenticated => Err(rejected(Scheme::Ntlm)),
            State::Negotiate => {
                let token = challenges
                    .iter()
                    .filter(|c| c.is("Negotiate"))
                    .find_map(|c| c.token68.as_deref());
                let Some(token) = token else {
                    return Err(rejected(Scheme::Negotiate));
                };
                use base64::Engine;
                let bad = |reason: String| AuthError::BadChallenge {
                    scheme: Scheme::Negotiate,
                    reason,
                };
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(token)
                    .map_err(|_| bad("its Negotiate token is not base64".into()))?;
                let negotiator = self
                    .negotiator
                    .as_mut()
                    .ok_or_else(|| bad("no Negotiate context".into()))?;
                match negotiator.step(&raw).map_err(bad)? {
                    Some(next) => Ok(Answer {
                        authorization: SecretString::from(format!("Negotiate {}", b64(&next))),
                        scheme: Scheme::Negotiate,
                        fresh_connection_ok: false,
                    }),
                    // Our side is done, yet the proxy still says 407: it did not accept us.
                    None => Err(rejected(Scheme::Negotiate)),
                }
            }
        }
    }

    fn start(
        &mut self,
        challenges: &[Challenge],
        user: &str,
        password: &SecretString,
        offered: Offered,
    ) -> Result<Answer, AuthError> {
        for &scheme in &self.options.preference {
            if !scheme.supported() || !challenges.iter().any(|c| c.is(scheme.name())) {
                continue;
            }
            match scheme {
                Scheme::Basic => {
                    self.state = State::Basic;
                    return Ok(Answer {
                        authorization: basic(user, password),
                        scheme,
                        fresh_connection_ok: true,
                    });
                }
                Scheme::Digest => {
                    // Every Digest challenge may be unusable (SHA-512-256 only): then try the next scheme.
                    if let Some(p) = best_digest(challenges) {
                        self.state = State::Digest {
                            stale_retried: false,
                        };
                        return Ok(self.digest_answer(&p, user, password, 1));
                    }
                }
                Scheme::Ntlm => {
                    self.state = State::NtlmNegotiated;
                    return Ok(Answer {
                        authorization: SecretString::from(format!(
                            "NTLM {}",
                            b64(&ntlm::negotiate())
                        )),
                        scheme,
                        fresh_connection_ok: true,
                    });
                }
                Scheme::Negotiate => {
                    let Some(factory) = self.options.negotiator else {
                        self.negotiate_note =
                            Some("Kerberos is not enabled (no GSSAPI in this build)".into());
                        continue;
                    };
                    let mut negotiator = (factory.0)();
                    match negotiator.start(user, password, &self.proxy_host) {
                        Ok(token) => {
                            self.state = State::Negotiate;
                            self.negotiator = Some(negotiator);
                            return Ok(Answer {
                                authorization: SecretString::from(format!(
                                    "Negotiate {}",
                                    b64(&token)
                                )),
                                scheme,
                                // The first token does not depend on the connection.
                                fresh_connection_ok: true,
                            });
                        }
                        Err(negotiate::StartError::Rejected(reason)) => {
                            return Err(AuthError::KerberosRejected {
                                user: user.to_owned(),
                                reason,
                            })
                        }
                        // Kept for the error, should no other scheme work either.
                        Err(negotiate::StartError::Unavailable(e)) => self.negotiate_note = Some(e),
                    }
                }
            }
        }
        let preference = self
            .options
            .preference
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" > ");
        // Say why an offered Digest could not be used (e.g. SHA-512-256 only).
        let mut note = challenges
            .iter()
            .filter(|c| c.is("Digest"))
            .find_map(|c| digest::Params::from_challenge(c).err())
            .map(|e| format!(" (its Digest challenge: {e})"))
            .unwrap_or_default();
        if let Some(n) = &self.negotiate_note {
            note.push_str(&format!(" (Negotiate: {n})"));
        }
        Err(AuthError::Unsupported {
            offered,
            preference,
            note,
        })
    }

    fn digest_answer(
        &self,
        p: &digest::Params,
        user: &str,
        password: &SecretString,
        nc: u32,
    ) -> Answer {
        let cnonce = hex::encode(rand::random::<[u8; 16]>());
        Answer {
            authorization: SecretString::from(digest::authorization(
                p,
                user,
                password.expose_secret(),
                "CONNECT",
                &self.target,
                &cnonce,
                nc,
            )),
            scheme: Scheme::Digest,
            fresh_connection_ok: true,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The Basic value (RFC 7617): base64 of `user:password`, UTF-8.
pub fn basic(user: &str, password: &SecretString) -> SecretString {
    let raw = secrecy::zeroize::Zeroizing::new(format!("{user}:{}", password.expose_secret()));
    SecretString::from(format!("Basic {}", b64(raw.as_bytes())))
}

/// The strongest usable Digest challenge.
fn best_digest(challenges: &[Challenge]) -> Option<digest::Params> {
    challenges
        .iter()
        .filter(|c| c.is("Digest"))
        .filter_map(|c| digest::Params::from_challenge(c).ok())
        .max_by_key(|p| p.strength())
}

#[cfg(test)]
mod tests;
