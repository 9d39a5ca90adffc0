//! The PROXY protocol, version 2 (the binary header HAProxy sends with `send-proxy-v2`), on the
//! service's listener when `uplink service --proxy-protocol` is on.
//!
//! Behind a load balancer in TCP mode every connection comes from the balancer; the header it
//! writes before the TLS ClientHello carries the client's real address, which is then what the
//! logs, the per-address connection caps (`conns.rs`) and the enrollment audit see. [`parse`] is
//! pure (bytes in, `Incomplete`, an error or a header out); [`read_header`] owns the socket and
//! reads exactly the header's bytes, so the TLS bytes after it are left in the socket.
//!
//! Deliberately not here: version 1 (the text form) — refused, since a balancer that can send
//! v2 should, and accepting both widens what a stranger can try; TLVs (read past, unused); UDP.
//! With the option on, a connection that does not start with a v2 header is closed: without it,
//! anyone reaching the port directly could claim any address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part: signature, version and command, family and transport, length.
const FIXED: usize = 16;
/// Largest header accepted (addresses plus TLVs). HAProxy's own TLVs (ALPN, authority, unique
/// id, SSL) fit in far less; the format allows 64 KiB, which no balancer needs to send us.
pub const MAX_HEADER: usize = FIXED + 2048;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header takes (the TLS stream starts after them).
    pub len: usize,
    /// The client's address, when the balancer relays a TCP connection (`PROXY` command over
    /// IPv4 or IPv6). `None` for `LOCAL` (the balancer's own health checks) and for families
    /// without an IP address: the connection's own address is the one to use then.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, when given.
    pub destination: Option<SocketAddr>,
}

/// What the bytes read so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes: the header is at least `need` bytes long.
    Incomplete {
        need: usize,
    },
    Complete(Header),
}

/// Why a connection's first bytes are not a PROXY v2 header we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("it starts with a PROXY protocol version 1 (text) header; configure the load balancer to send version 2 (HAProxy: send-proxy-v2)")]
    Version1,
    #[error("it does not start with a PROXY protocol v2 header (first bytes {0}); with --proxy-protocol every connection must come through the load balancer, which must send one (HAProxy: send-proxy-v2)")]
    NotProxy(String),
    #[error("PROXY protocol version {0} is not supported (only 2)")]
    Version(u8),
    #[error("PROXY protocol command {0} is unknown (only LOCAL and PROXY exist)")]
    Command(u8),
    #[error("the PROXY header relays a {0} connection; the service takes TCP only")]
    Transport(&'static str),
    #[error("the PROXY header's address family {0} is unknown")]
    Family(u8),
    #[error("the PROXY header is {0} bytes long; at most {MAX_HEADER} are accepted")]
    TooLong(usize),
    #[error("the PROXY header's addresses need {need} bytes, its length says {len}")]
    Short { need: usize, len: usize },
}

/// Parses the start of a connection. Pure: call it again with more bytes after `Incomplete`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    let seen = buf.len().min(SIGNATURE.len());
    if buf[..seen] != SIGNATURE[..seen] {
        if buf.starts_with(b"PROXY ") || (buf.len() < 6 && b"PROXY ".starts_with(buf)) {
            // A prefix of "PROXY " could still be v1; only call it so once it is.
            if buf.len() >= 6 {
                return Err(Error::Version1);
            }
            return Ok(Parsed::Incomplete { need: FIXED });
        }
        return Err(Error::NotProxy(hex_prefix(buf)));
    }
    if buf.len() < FIXED {
        return Ok(Parsed::Incomplete { need: FIXED });
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(Error::Version(version));
    }
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = FIXED + body;
    if len > MAX_HEADER {
        return Err(Error::TooLong(len));
    }
    let local = match command {
        0 => true,
        1 => false,
        c => return Err(Error::Command(c)),
    };
    if buf.len() < len {
        return Ok(Parsed::Incomplete { need: len });
    }
    let addresses = &buf[FIXED..len];
    let none = Header {
        len,
        source: None,
        destination: None,
    };
    // LOCAL: the balancer speaking for itself (health checks); the family is to be ignored.
    if local {
        return Ok(Parsed::Complete(none));
    }
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    match transport {
        0 | 1 => {}
        2 => return Err(Error::Transport("UDP (datagram)")),
        _ => return Err(Error::Transport("unknown transport")),
    }
    let need = match family {
        // UNSPEC: addresses unknown to the balancer; UNIX: no IP address. Use the connection's.
        0 | 3 => return Ok(Parsed::Complete(none)),
        1 => 12,
        2 => 36,
        f => return Err(Error::Family(f)),
    };
    if addresses.len() < need {
        return Err(Error::Short {
            need,
            len: addresses.len(),
        });
    }
    let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
    let (source, destination) = if family == 1 {
        let ip = |at: usize| {
            IpAddr::V4(Ipv4Addr::new(
                addresses[at],
                addresses[at + 1],
                addresses[at + 2],
                addresses[at + 3],
            ))
        };
        (
            SocketAddr::new(ip(0), port(8)),
            SocketAddr::new(ip(4), port(10)),
        )
    } else {
        let ip = |at: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&addresses[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(b))
        };
        (
            SocketAddr::new(ip(0), port(32)),
            SocketAddr::new(ip(16), port(34)),
        )
    };
    Ok(Parsed::Complete(Header {
        len,
        source: Some(source),
        destination: Some(destination),
    }))
}

/// The first bytes, in hex, for a log line (at most 8: enough to tell TLS from HTTP from noise).
fn hex_prefix(buf: &[u8]) -> String {
    buf.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Why reading a connection's header failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Header(#[from] Error),
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("the connection ended before a complete PROXY header ({0})")]
    Io(#[from] std::io::Error),
}

/// Reads exactly the PROXY header from the start of `stream` (nothing after it), within
/// `timeout`, and returns it.
pub async fn read_header<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> Result<Header, ReadError> {
    let read = async {
        let mut buf = vec![0u8; FIXED];
        stream.read_exact(&mut buf).await?;
        loop {
            match parse(&buf)? {
                Parsed::Complete(h) => return Ok(h),
                Parsed::Incomplete { need } => {
                    let have = buf.len();
                    buf.resize(need, 0);
                    stream.read_exact(&mut buf[have..]).await?;
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ReadError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: command, family/transport byte, address bytes, extra TLV bytes.
    fn header(command: u8, fam: u8, addresses: &[u8], tlv: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(fam);
        h.extend_from_slice(&((addresses.len() + tlv.len()) as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlv);
        h
    }

    fn v4() -> Vec<u8> {
        // 192.0.2.7:40000 → 10.0.0.1:443
        let mut a = vec![192, 0, 2, 7, 10, 0, 0, 1];
        a.extend_from_slice(&40000u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        a
    }

    fn v6() -> Vec<u8> {
        let mut a = "2001:db8::5".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        a.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        a.extend_from_slice(&5555u16.to_be_bytes());
        a.extend_from_slice(&8443u16.to_be_bytes());
        a
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn headers() {
        let proxy4 = header(1, 0x11, &v4(), &[]);
        let with_tlv = header(1, 0x11, &v4(), &[0x04, 0x00, 0x02, 0xaa, 0xbb]);
        let proxy6 = header(1, 0x21, &v6(), &[]);
        let local = header(0, 0x00, &[], &[]);
        let local_with_addresses = header(0, 0x11, &v4(), &[]);
        let unspec = header(1, 0x00, &[], &[]);
        let unix = header(1, 0x31, &[0u8; 216], &[]);
        let mut bad_version = proxy4.clone();
        bad_version[12] = 0x11;
        let mut too_long = SIGNATURE.to_vec();
        too_long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let tls = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        let http = b"GET /healthz HTTP/1.1\r\n\r\n";
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 443\r\n";
        let with_tls_after = [proxy4.as_slice(), &tls].concat();

        let complete = |len: usize, source: Option<SocketAddr>, destination| {
            Ok(Parsed::Complete(Header {
                len,
                source,
                destination,
            }))
        };
        let cases: Vec<(&str, Vec<u8>, Result<Parsed, Error>)> = vec![
            (
                "IPv4",
                proxy4.to_vec(),
                complete(28, sa("192.0.2.7:40000"), sa("10.0.0.1:443")),
            ),
            (
                "IPv4 and a TLV",
                with_tlv.to_vec(),
                complete(33, sa("192.0.2.7:40000"), sa("10.0.0.1:443")),
            ),
            (
                "IPv6",
                proxy6.to_vec(),
                complete(52, sa("[2001:db8::5]:5555"), sa("[2001:db8::1]:8443")),
            ),
            (
                "the TLS that follows is not part of it",
                with_tls_after.to_vec(),
                complete(28, sa("192.0.2.7:40000"), sa("10.0.0.1:443")),
            ),
            (
                "LOCAL: a health check, the connection's address",
                local.to_vec(),
                complete(16, None, None),
            ),
            (
                "LOCAL ignores addresses",
                local_with_addresses.to_vec(),
                complete(28, None, None),
            ),
            ("UNSPEC", unspec.to_vec(), complete(16, None, None)),
            (
                "UNIX socket: no IP",
                unix.to_vec(),
                complete(232, None, None),
            ),
            // Truncated at every interesting place.
            (
                "nothing yet",
                b"".to_vec(),
                Ok(Parsed::Incomplete { need: 16 }),
            ),
            (
                "part of the signature",
                proxy4[..5].to_vec(),
                Ok(Parsed::Incomplete { need: 16 }),
            ),
            (
                "the signature only",
                proxy4[..12].to_vec(),
                Ok(Parsed::Incomplete { need: 16 }),
            ),
            (
                "the fixed part only",
                proxy4[..16].to_vec(),
                Ok(Parsed::Incomplete { need: 28 }),
            ),
            (
                "addresses cut",
                proxy4[..27].to_vec(),
                Ok(Parsed::Incomplete { need: 28 }),
            ),
            (
                "IPv6 addresses cut",
                proxy6[..40].to_vec(),
                Ok(Parsed::Incomplete { need: 52 }),
            ),
            // Refused.
            (
                "a TLS ClientHello (no header)",
                tls.to_vec(),
                Err(Error::NotProxy("1603010200010001".into())),
            ),
            (
                "HTTP",
                http.to_vec(),
                Err(Error::NotProxy("474554202f686561".into())),
            ),
            (
                "garbage after a good start",
                b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c".to_vec(),
                Err(Error::NotProxy("0d0a0d0a000d0a51".into())),
            ),
            ("v1 text", v1.to_vec(), Err(Error::Version1)),
            (
                "a prefix of v1: wait",
                b"PROX".to_vec(),
                Ok(Parsed::Incomplete { need: 16 }),
            ),
            (
                "version 1 in the binary form",
                bad_version.to_vec(),
                Err(Error::Version(1)),
            ),
            (
                "an unknown command",
                header(2, 0x11, &v4(), &[]),
                Err(Error::Command(2)),
            ),
            (
                "UDP",
                header(1, 0x12, &v4(), &[]),
                Err(Error::Transport("UDP (datagram)")),
            ),
            (
                "an unknown family",
                header(1, 0x41, &v4(), &[]),
                Err(Error::Family(4)),
            ),
            (
                "IPv4 addresses shorter than their family",
                header(1, 0x11, &[1, 2, 3], &[]),
                Err(Error::Short { need: 12, len: 3 }),
            ),
            (
                "IPv6 family with IPv4 addresses",
                header(1, 0x21, &v4(), &[]),
                Err(Error::Short { need: 36, len: 12 }),
            ),
            (
                "longer than accepted",
                too_long.to_vec(),
                Err(Error::TooLong(16 + 0xffff)),
            ),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(parse(&bytes), want, "{what}");
        }
    }

    #[test]
    fn any_prefix_of_a_good_header_asks_for_more_and_never_errs() {
        for h in [
            header(1, 0x11, &v4(), &[]),
            header(1, 0x21, &v6(), &[1, 0, 0]),
        ] {
            for cut in 0..h.len() {
                assert!(
                    matches!(parse(&h[..cut]), Ok(Parsed::Incomplete { need }) if need > cut),
                    "{cut}"
                );
            }
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        assert!(Error::Version1.to_string().contains("send-proxy-v2"));
        assert!(Error::NotProxy("16".into())
            .to_string()
            .contains("through the load balancer"));
    }

    #[tokio::test]
    async fn reading_takes_the_header_and_leaves_the_rest() {
        let bytes = [header(1, 0x11, &v4(), &[9, 0, 1, 7]).as_slice(), b"TLS..."].concat();
        let mut stream = bytes.as_slice();
        let h = read_header(&mut stream, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(h.source, sa("192.0.2.7:40000"));
        assert_eq!(stream, b"TLS...");
        let mut short: &[u8] = &bytes[..20];
        assert!(matches!(
            read_header(&mut short, Duration::from_secs(5)).await,
            Err(ReadError::Io(_))
        ));
        let (mut silent, _keep) = tokio::io::duplex(64);
        assert!(matches!(
            read_header(&mut silent, Duration::from_millis(20)).await,
            Err(ReadError::Timeout(_))
        ));
    }
}
