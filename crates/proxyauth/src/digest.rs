//! HTTP Digest (RFC 7616, and RFC 2617's MD5 that most proxies still offer) for CONNECT.
//!
//! Pure: the caller supplies the client nonce and the nonce count, so the published test vectors
//! can be checked byte for byte. Supported: algorithms MD5, MD5-sess, SHA-256, SHA-256-sess;
//! qop `auth`, or no qop at all (RFC 2069 compatibility); `userhash`. Not supported: `auth-int`
//! alone (a CONNECT has no body worth protecting) and SHA-512-256 — a challenge asking only for
//! those is reported unusable, and another challenge is picked if the proxy offered one.

use md5::Md5;
use secrecy::zeroize::Zeroizing;
use sha2::{Digest as _, Sha256};

use crate::challenge::Challenge;

/// A Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// What a Digest challenge asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `-sess` variant.
    pub sess: bool,
    /// As the challenge named it, echoed back (`MD5`, `SHA-256-sess`, …); None if it named none.
    pub algorithm_name: Option<String>,
    /// Whether to answer with `qop=auth` (else the RFC 2069 form).
    pub qop_auth: bool,
    pub userhash: bool,
    pub stale: bool,
}

/// Why a Digest challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("it has no nonce")]
    NoNonce,
    #[error("it asks for the algorithm {0:?}, which uplink does not support (MD5, MD5-sess, SHA-256, SHA-256-sess are)")]
    Algorithm(String),
    #[error("it asks for qop {0:?}; uplink supports only qop=auth")]
    Qop(String),
}

impl Params {
    /// Checks a `Digest` challenge.
    pub fn from_challenge(c: &Challenge) -> Result<Params, DigestError> {
        let nonce = c.param("nonce").ok_or(DigestError::NoNonce)?.to_owned();
        let algorithm_name = c.param("algorithm").map(str::to_owned);
        let (algorithm, sess) = match algorithm_name.as_deref().map(str::to_ascii_uppercase) {
            None => (Algorithm::Md5, false),
            Some(a) => match a.as_str() {
                "MD5" => (Algorithm::Md5, false),
                "MD5-SESS" => (Algorithm::Md5, true),
                "SHA-256" => (Algorithm::Sha256, false),
                "SHA-256-SESS" => (Algorithm::Sha256, true),
                _ => return Err(DigestError::Algorithm(a)),
            },
        };
        let qop_auth = match c.param("qop") {
            None => false,
            Some(q) => {
                if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(DigestError::Qop(q.to_owned()));
                }
            }
        };
        let flag = |name| {
            c.param(name)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        Ok(Params {
            realm: c.param("realm").unwrap_or("").to_owned(),
            nonce,
            opaque: c.param("opaque").map(str::to_owned),
            algorithm,
            sess,
            algorithm_name,
            qop_auth,
            userhash: flag("userhash"),
            stale: flag("stale"),
        })
    }

    /// Preference among several Digest challenges: SHA-256 over MD5 (RFC 7616 §3.7).
    pub fn strength(&self) -> u8 {
        match self.algorithm {
            Algorithm::Sha256 => 2,
            Algorithm::Md5 => 1,
        }
    }
}

/// The `response` value (RFC 7616 §3.4.1), hex.
#[allow(clippy::too_many_arguments)]
pub fn response(
    p: &Params,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let h = |s: &str| p.algorithm.hash(s.as_bytes());
    let secret = Zeroizing::new(format!("{user}:{}:{password}", p.realm));
    let mut ha1 = Zeroizing::new(h(&secret));
    if p.sess {
        ha1 = Zeroizing::new(h(&format!("{}:{}:{cnonce}", *ha1, p.nonce)));
    }
    let ha2 = h(&format!("{method}:{uri}"));
    if p.qop_auth {
        h(&format!(
            "{}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
            *ha1, p.nonce
        ))
    } else {
        h(&format!("{}:{}:{ha2}", *ha1, p.nonce))
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// The whole `Proxy-Authorization` value.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    p: &Params,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let resp = response(p, user, password, method, uri, cnonce, nc);
    let username = if p.userhash {
        p.algorithm.hash(format!("{user}:{}", p.realm).as_bytes())
    } else {
        user.to_owned()
    };
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}",
        quote(&username),
        quote(&p.realm),
        quote(&p.nonce),
        quote(uri)
    );
    if let Some(a) = &p.algorithm_name {
        v.push_str(&format!(", algorithm={a}"));
    }
    v.push_str(&format!(", response=\"{resp}\""));
    if p.qop_auth {
        v.push_str(&format!(
            ", qop=auth, nc={nc:08x}, cnonce={}",
            quote(cnonce)
        ));
    }
    if let Some(o) = &p.opaque {
        v.push_str(&format!(", opaque={}", quote(o)));
    }
    if p.userhash {
        v.push_str(", userhash=true");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge;

    fn params(header: &str) -> Params {
        Params::from_challenge(&challenge::parse(header).unwrap()[0]).unwrap()
    }

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    #[test]
    fn rfc7616_vectors() {
        let base = "realm=\"http-auth@example.org\", qop=\"auth, auth-int\", nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let cases = [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ];
        for (alg, want) in cases {
            let p = params(&format!("Digest {base}, algorithm={alg}"));
            let got = response(
                &p,
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                cnonce,
                1,
            );
            assert_eq!(got, want, "{alg}");
            let header = authorization(
                &p,
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                cnonce,
                1,
            );
            assert!(header.contains(&format!("response=\"{want}\"")), "{header}");
            assert!(
                header.contains("nc=00000001") && header.contains("qop=auth,"),
                "{header}"
            );
            assert!(header.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
            assert!(header.contains(&format!("algorithm={alg}")));
            assert!(
                !header.contains("Circle"),
                "the password never appears: {header}"
            );
        }
    }

    /// RFC 2617 §3.5.
    #[test]
    fn rfc2617_vector() {
        let p = params("Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"");
        assert_eq!(
            response(
                &p,
                "Mufasa",
                "Circle Of Life",
                "GET",
                "/dir/index.html",
                "0a4f113b",
                1
            ),
            "6629fae49393a05397450978507c4ef1"
        );
        assert_eq!(p.algorithm_name, None);
    }

    /// MD5-sess and no-qop, computed by hand from their definitions (RFC 7616 §3.4.2, RFC 2069).
    #[test]
    fn sess_and_legacy_forms() {
        let md5 = |s: &str| hex::encode(Md5::digest(s.as_bytes()));
        let p = params("Digest realm=\"r\", nonce=\"n\", qop=auth, algorithm=MD5-sess");
        let ha1 = md5(&format!("{}:n:c", md5("u:r:pw")));
        let ha2 = md5("CONNECT:h:443");
        assert_eq!(
            response(&p, "u", "pw", "CONNECT", "h:443", "c", 2),
            md5(&format!("{ha1}:n:00000002:c:auth:{ha2}"))
        );
        let legacy = params("Digest realm=\"r\", nonce=\"n\"");
        assert_eq!(
            response(&legacy, "u", "pw", "CONNECT", "h:443", "c", 1),
            md5(&format!("{}:n:{ha2}", md5("u:r:pw")))
        );
        assert!(!authorization(&legacy, "u", "pw", "CONNECT", "h:443", "c", 1).contains("qop"));
    }

    #[test]
    fn userhash_and_quoting() {
        let p =
            params("Digest realm=\"r\", nonce=\"n\", qop=auth, algorithm=SHA-256, userhash=true");
        let header = authorization(&p, "CONTOSO\\u\"x", "pw", "CONNECT", "h:443", "c", 1);
        let hashed = hex::encode(Sha256::digest("CONTOSO\\u\"x:r".as_bytes()));
        assert!(
            header.starts_with(&format!("Digest username=\"{hashed}\"")),
            "{header}"
        );
        assert!(header.ends_with("userhash=true"));
        let plain = params("Digest realm=\"r\", nonce=\"n\"");
        let header = authorization(&plain, "CONTOSO\\u\"x", "pw", "CONNECT", "h:443", "c", 1);
        assert!(
            header.starts_with("Digest username=\"CONTOSO\\\\u\\\"x\""),
            "{header}"
        );
        // What we send parses back to what we meant.
        let back = challenge::parse(&header).unwrap();
        assert_eq!(back[0].param("username"), Some("CONTOSO\\u\"x"));
    }

    #[test]
    fn unusable_challenges() {
        let bad = |h: &str| Params::from_challenge(&challenge::parse(h).unwrap()[0]).unwrap_err();
        assert_eq!(bad("Digest realm=r"), DigestError::NoNonce);
        assert!(matches!(
            bad("Digest nonce=n, algorithm=SHA-512-256"),
            DigestError::Algorithm(_)
        ));
        assert!(matches!(
            bad("Digest nonce=n, qop=auth-int"),
            DigestError::Qop(_)
        ));
        assert!(params("Digest nonce=n, stale=TRUE").stale);
    }
}
