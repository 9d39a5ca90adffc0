//! SOCKS version 5 (RFC 1928) with username/password authentication (RFC 1929), as pure
//! functions: the bytes to send at each step and parsers for the server's answers, each returning
//! [`Parsed::Incomplete`], a value with the bytes it used, or an error. [`crate::socks`] owns the
//! socket and calls these.
//!
//! The exchange: a greeting offering methods (no authentication; username/password when
//! credentials are configured), the server's choice, the username/password sub-negotiation if it
//! chose that, then one CONNECT request and the server's reply. After a successful reply the
//! connection is the tunnel.
//!
//! Deliberately not here: GSSAPI authentication (method 1, which no proxy in our users' networks
//! asks of a sensor), BIND and UDP ASSOCIATE (the sensor only connects out), and SOCKS4, which
//! has no authentication worth the name.

use std::net::IpAddr;

use secrecy::zeroize::Zeroizing;

/// The protocol version byte of every SOCKS5 message but the RFC 1929 sub-negotiation.
pub const VERSION: u8 = 5;
/// RFC 1928 method: no authentication required.
pub const NO_AUTH: u8 = 0x00;
/// RFC 1928 method: GSSAPI (not supported; named in messages).
pub const GSSAPI: u8 = 0x01;
/// RFC 1928 method: username/password (RFC 1929).
pub const USER_PASS: u8 = 0x02;
/// RFC 1928: "no acceptable methods".
pub const NO_ACCEPTABLE: u8 = 0xFF;
/// RFC 1929's sub-negotiation version.
const AUTH_VERSION: u8 = 1;

/// What a parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not enough bytes yet: read more and call again with all of them.
    Incomplete,
    /// A value, and how many bytes of the buffer it took.
    Done(T, usize),
}

/// Why a SOCKS5 exchange cannot go on. Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    #[error("its answer is not SOCKS5 (first byte {0:#04x}){hint}", hint = if *.0 == b'H' { "; it looks like an HTTP proxy: use http://HOST:PORT" } else { "" })]
    NotSocks5(u8),
    #[error("its username/password answer has version {0:#04x}, not 1")]
    BadAuthVersion(u8),
    #[error("its reply has the unknown address type {0:#04x}")]
    BadAddressType(u8),
    #[error("its reply names an empty domain")]
    EmptyDomain,
    #[error(
        "the user name is empty or longer than 255 bytes, which SOCKS5 cannot carry (RFC 1929)"
    )]
    BadUser,
    #[error("the password is longer than 255 bytes, which SOCKS5 cannot carry (RFC 1929)")]
    BadPassword,
    #[error("the host name {0:?} is longer than 255 bytes, which SOCKS5 cannot carry")]
    BadHost(String),
}

/// The client's greeting: the methods it can use. With credentials it offers username/password
/// as well as no authentication; the server picks.
pub fn greeting(with_credentials: bool) -> Vec<u8> {
    if with_credentials {
        vec![VERSION, 2, NO_AUTH, USER_PASS]
    } else {
        vec![VERSION, 1, NO_AUTH]
    }
}

/// Parses the server's method selection: the method byte (it may be [`NO_ACCEPTABLE`] or one the
/// client did not offer; the caller decides).
pub fn parse_method(buf: &[u8]) -> Result<Parsed<u8>, Socks5Error> {
    match buf {
        [] => Ok(Parsed::Incomplete),
        [v, ..] if *v != VERSION => Err(Socks5Error::NotSocks5(*v)),
        [_] => Ok(Parsed::Incomplete),
        [_, m, ..] => Ok(Parsed::Done(*m, 2)),
    }
}

/// The RFC 1929 request: version 1, user, password, each with a one-byte length. Zeroed on drop.
pub fn auth_request(user: &str, password: &str) -> Result<Zeroizing<Vec<u8>>, Socks5Error> {
    let (u, p) = (user.as_bytes(), password.as_bytes());
    if u.is_empty() || u.len() > 255 {
        return Err(Socks5Error::BadUser);
    }
    if p.len() > 255 {
        return Err(Socks5Error::BadPassword);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(3 + u.len() + p.len()));
    out.push(AUTH_VERSION);
    out.push(u.len() as u8);
    out.extend_from_slice(u);
    out.push(p.len() as u8);
    out.extend_from_slice(p);
    Ok(out)
}

/// Parses the RFC 1929 answer: true when the server accepted the credentials. Version 5 is
/// accepted as well as 1: some servers (and curl, which accepts it) echo the SOCKS version.
pub fn parse_auth_reply(buf: &[u8]) -> Result<Parsed<bool>, Socks5Error> {
    match buf {
        [] | [_] => Ok(Parsed::Incomplete),
        [v, ..] if *v != AUTH_VERSION && *v != VERSION => Err(Socks5Error::BadAuthVersion(*v)),
        [_, status, ..] => Ok(Parsed::Done(*status == 0, 2)),
    }
}

/// Where to connect through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host name the proxy resolves (`socks5h://`, and PAC `SOCKS5` entries).
    Domain(String),
    /// An address the client resolved (`socks5://`).
    Ip(IpAddr),
}

/// The CONNECT request (command 1) for `target:port`.
pub fn connect_request(target: &Target, port: u16) -> Result<Vec<u8>, Socks5Error> {
    let mut out = vec![VERSION, 1, 0];
    match target {
        Target::Ip(IpAddr::V4(a)) => {
            out.push(1);
            out.extend_from_slice(&a.octets());
        }
        Target::Ip(IpAddr::V6(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Target::Domain(d) => {
            if d.is_empty() || d.len() > 255 {
                return Err(Socks5Error::BadHost(d.clone()));
            }
            out.push(3);
            out.push(d.len() as u8);
            out.extend_from_slice(d.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// The server's reply to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// RFC 1928's REP field: 0 is success.
    pub rep: u8,
    /// The address the server bound for the tunnel (`host:port`), when it succeeded.
    pub bound: Option<String>,
}

impl Reply {
    /// RFC 1928 §6's meaning of a REP value.
    pub fn meaning(&self) -> &'static str {
        reply_meaning(self.rep)
    }
}

/// RFC 1928 §6: what each REP value means.
pub fn reply_meaning(rep: u8) -> &'static str {
    match rep {
        0 => "succeeded",
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned reply code",
    }
}

/// Parses the reply to CONNECT. A failure is returned as soon as its REP byte is known, without
/// waiting for the address: servers often close right after it, and the address of a tunnel
/// that does not exist is of no use (the whole buffer counts as used).
pub fn parse_reply(buf: &[u8]) -> Result<Parsed<Reply>, Socks5Error> {
    let (ver, rep) = match buf {
        [] => return Ok(Parsed::Incomplete),
        [v, ..] if *v != VERSION => return Err(Socks5Error::NotSocks5(*v)),
        [_] => return Ok(Parsed::Incomplete),
        [v, r, ..] => (*v, *r),
    };
    debug_assert_eq!(ver, VERSION);
    if rep != 0 {
        return Ok(Parsed::Done(Reply { rep, bound: None }, buf.len()));
    }
    // VER REP RSV ATYP, then the address, then the port.
    let Some(&atyp) = buf.get(3) else {
        return Ok(Parsed::Incomplete);
    };
    let (addr_len, addr_start) = match atyp {
        1 => (4, 4),
        4 => (16, 4),
        3 => match buf.get(4) {
            None => return Ok(Parsed::Incomplete),
            Some(0) => return Err(Socks5Error::EmptyDomain),
            Some(&n) => (n as usize, 5),
        },
        other => return Err(Socks5Error::BadAddressType(other)),
    };
    let end = addr_start + addr_len + 2;
    if buf.len() < end {
        return Ok(Parsed::Incomplete);
    }
    let addr = &buf[addr_start..addr_start + addr_len];
    let port = u16::from_be_bytes([buf[end - 2], buf[end - 1]]);
    let host = match atyp {
        1 => IpAddr::from(<[u8; 4]>::try_from(addr).unwrap_or_default()).to_string(),
        4 => format!(
            "[{}]",
            IpAddr::from(<[u8; 16]>::try_from(addr).unwrap_or_default())
        ),
        _ => String::from_utf8_lossy(addr).into_owned(),
    };
    Ok(Parsed::Done(
        Reply {
            rep,
            bound: Some(format!("{host}:{port}")),
        },
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A parser's result for one table row.
    type Want<T> = Result<Parsed<T>, Socks5Error>;

    #[test]
    fn greetings() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
    }

    #[test]
    fn method_selection() {
        let cases: &[(&[u8], Want<u8>)] = &[
            (&[], Ok(Parsed::Incomplete)),
            (&[5], Ok(Parsed::Incomplete)),
            (&[5, 0], Ok(Parsed::Done(0, 2))),
            (&[5, 2], Ok(Parsed::Done(2, 2))),
            (&[5, 0xff], Ok(Parsed::Done(0xff, 2))),
            (&[5, 0, 9, 9], Ok(Parsed::Done(0, 2))),
            (&[4, 0], Err(Socks5Error::NotSocks5(4))),
            (
                b"HTTP/1.1 400 Bad Request",
                Err(Socks5Error::NotSocks5(b'H')),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_method(input), want, "{input:?}");
        }
        let http = Socks5Error::NotSocks5(b'H').to_string();
        assert!(http.contains("HTTP proxy"), "{http}");
    }

    #[test]
    fn auth_requests() {
        assert_eq!(
            &auth_request("u", "pw").unwrap()[..],
            [1, 1, b'u', 2, b'p', b'w']
        );
        assert_eq!(
            &auth_request("user", "").unwrap()[..],
            [1, 4, b'u', b's', b'e', b'r', 0]
        );
        assert_eq!(auth_request("", "pw").unwrap_err(), Socks5Error::BadUser);
        assert_eq!(
            auth_request(&"u".repeat(256), "pw").unwrap_err(),
            Socks5Error::BadUser
        );
        assert_eq!(
            auth_request("u", &"p".repeat(256)).unwrap_err(),
            Socks5Error::BadPassword
        );
        assert_eq!(auth_request(&"u".repeat(255), "p").unwrap().len(), 259);
        // The error never carries the password.
        let e = auth_request("u", &"s3cret".repeat(50))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn auth_replies() {
        let cases: &[(&[u8], Want<bool>)] = &[
            (&[], Ok(Parsed::Incomplete)),
            (&[1], Ok(Parsed::Incomplete)),
            (&[1, 0], Ok(Parsed::Done(true, 2))),
            (&[1, 1], Ok(Parsed::Done(false, 2))),
            (&[1, 0xff], Ok(Parsed::Done(false, 2))),
            (&[5, 0], Ok(Parsed::Done(true, 2))),
            (&[0, 0], Err(Socks5Error::BadAuthVersion(0))),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_auth_reply(input), want, "{input:?}");
        }
    }

    #[test]
    fn connect_requests() {
        let v4 = Target::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 6)));
        assert_eq!(
            connect_request(&v4, 443).unwrap(),
            [5, 1, 0, 1, 10, 0, 0, 6, 0x01, 0xbb]
        );
        let v6 = Target::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let r = connect_request(&v6, 8443).unwrap();
        assert_eq!(&r[..4], [5, 1, 0, 4]);
        assert_eq!(r[19], 1);
        assert_eq!(&r[20..], [0x20, 0xfb]);
        let d = Target::Domain("svc.example".into());
        assert_eq!(
            connect_request(&d, 443).unwrap(),
            [&[5u8, 1, 0, 3, 11][..], b"svc.example", &[0x01, 0xbb]].concat()
        );
        for bad in [String::new(), "a".repeat(256)] {
            assert!(connect_request(&Target::Domain(bad), 443).is_err());
        }
    }

    #[test]
    fn replies() {
        let ok = |bound: &str, used| {
            Ok(Parsed::Done(
                Reply {
                    rep: 0,
                    bound: Some(bound.into()),
                },
                used,
            ))
        };
        let failed = |rep, used| Ok(Parsed::Done(Reply { rep, bound: None }, used));
        let v6: Vec<u8> = [&[5u8, 0, 0, 4][..], &[0; 15], &[1], &[0, 80]].concat();
        let domain: Vec<u8> = [&[5u8, 0, 0, 3, 5][..], b"a.b.c", &[1, 0]].concat();
        let cases: Vec<(Vec<u8>, Want<Reply>)> = vec![
            (vec![], Ok(Parsed::Incomplete)),
            (vec![5], Ok(Parsed::Incomplete)),
            (vec![5, 0], Ok(Parsed::Incomplete)),
            (vec![5, 0, 0], Ok(Parsed::Incomplete)),
            (vec![5, 0, 0, 1, 127, 0, 0], Ok(Parsed::Incomplete)),
            (vec![5, 0, 0, 1, 127, 0, 0, 1, 0], Ok(Parsed::Incomplete)),
            (
                vec![5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90],
                ok("127.0.0.1:8080", 10),
            ),
            (v6.clone(), ok("[::1]:80", 22)),
            (v6[..21].to_vec(), Ok(Parsed::Incomplete)),
            (domain.clone(), ok("a.b.c:256", 12)),
            (domain[..6].to_vec(), Ok(Parsed::Incomplete)),
            (vec![5, 0, 0, 3], Ok(Parsed::Incomplete)),
            (vec![5, 0, 0, 3, 0, 0, 0], Err(Socks5Error::EmptyDomain)),
            (vec![5, 0, 0, 9], Err(Socks5Error::BadAddressType(9))),
            (vec![5, 2], failed(2, 2)),
            (vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0], failed(5, 10)),
            (vec![0x48, 0x54], Err(Socks5Error::NotSocks5(b'H'))),
            (vec![0], Err(Socks5Error::NotSocks5(0))),
        ];
        for (input, want) in &cases {
            assert_eq!(&parse_reply(input), want, "{input:?}");
        }
        // Bytes after the reply are left to the caller.
        let mut more = vec![5, 0, 0, 1, 1, 2, 3, 4, 0, 1];
        more.extend_from_slice(b"extra");
        assert_eq!(parse_reply(&more), ok("1.2.3.4:1", 10));
    }

    #[test]
    fn reply_meanings() {
        assert_eq!(reply_meaning(2), "connection not allowed by ruleset");
        assert_eq!(reply_meaning(5), "connection refused");
        assert_eq!(reply_meaning(0x42), "unassigned reply code");
    }

    /// microsocks' answers recorded by testdata/capture.sh (see testdata/README.md).
    fn capture(file: &str) -> Vec<u8> {
        let path = format!("{}/testdata/socks5/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Every prefix of a captured answer is `Incomplete` until the parser has what it needs; the
    /// whole capture is the expected answer, using all of it.
    fn every_prefix<T: std::fmt::Debug + PartialEq>(
        file: &str,
        parse: fn(&[u8]) -> Result<Parsed<T>, Socks5Error>,
        want: T,
        complete_from: usize,
    ) {
        let bytes = capture(file);
        for k in 0..complete_from {
            assert_eq!(
                parse(&bytes[..k]),
                Ok(Parsed::Incomplete),
                "{file}: {k} bytes"
            );
        }
        assert_eq!(
            parse(&bytes),
            Ok(Parsed::Done(want, bytes.len())),
            "{file}: {bytes:?}"
        );
    }

    #[test]
    fn captured_method_and_auth_answers() {
        every_prefix("microsocks-method-noauth.bin", parse_method, NO_AUTH, 2);
        every_prefix("microsocks-method-userpass.bin", parse_method, USER_PASS, 2);
        every_prefix(
            "microsocks-method-none-acceptable.bin",
            parse_method,
            NO_ACCEPTABLE,
            2,
        );
        every_prefix("microsocks-auth-ok.bin", parse_auth_reply, true, 2);
        every_prefix("microsocks-auth-fail.bin", parse_auth_reply, false, 2);
    }

    #[test]
    fn captured_connect_replies() {
        // microsocks reports a zero bound address on success.
        let ok = Reply {
            rep: 0,
            bound: Some("0.0.0.0:0".into()),
        };
        for file in [
            "microsocks-connect-ok-ipv4.bin",
            "microsocks-connect-ok-domain.bin",
            "microsocks-connect-after-auth.bin",
        ] {
            every_prefix(file, parse_reply, ok.clone(), 10);
        }
        // A failure is known from its second byte on; every longer prefix is the same failure.
        for (file, rep, meaning) in [
            ("microsocks-connect-refused.bin", 5, "connection refused"),
            (
                "microsocks-connect-unresolvable.bin",
                1,
                "general SOCKS server failure",
            ),
        ] {
            let bytes = capture(file);
            assert_eq!(bytes.len(), 10, "{file}");
            for k in 0..2 {
                assert_eq!(parse_reply(&bytes[..k]), Ok(Parsed::Incomplete), "{file}");
            }
            for k in 2..=bytes.len() {
                let want = Reply { rep, bound: None };
                assert_eq!(
                    parse_reply(&bytes[..k]),
                    Ok(Parsed::Done(want, k)),
                    "{file}: {k} bytes"
                );
            }
            assert_eq!(reply_meaning(rep), meaning);
        }
    }
}
