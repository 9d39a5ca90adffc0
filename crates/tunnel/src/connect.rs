//! The CONNECT exchange as pure functions: the request's bytes, and a parser for the reply head.

/// Largest reply head accepted; a proxy sending more is broken or hostile.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines accepted in a reply.
pub const MAX_HEADERS: usize = 100;

/// The CONNECT request for `host:port`, with a `Proxy-Authorization` value if given.
pub fn request(host: &str, port: u16, proxy_authorization: Option<&str>) -> Vec<u8> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: uplink/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(auth) = proxy_authorization {
        req.push_str("Proxy-Authorization: ");
        req.push_str(auth);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// The parts of a reply that decide what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    /// The scheme of each `Proxy-Authenticate` challenge, in order (e.g. `Basic`, `NTLM`).
    pub auth_schemes: Vec<String>,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    Reply(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the reply is not HTTP ({0})")]
    NotHttp(String),
    #[error("the reply head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("the reply has more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
}

/// Parses a reply head from the start of `buf`.
pub fn parse_reply(buf: &[u8]) -> Result<Parsed, ReplyError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                Err(ReplyError::TooLarge)
            } else {
                Ok(Parsed::Incomplete)
            }
        }
        Ok(httparse::Status::Complete(head_len)) => {
            if head_len > MAX_HEAD {
                return Err(ReplyError::TooLarge);
            }
            let status = resp.code.unwrap_or(0);
            let reason = resp.reason.unwrap_or("").to_owned();
            let auth_schemes = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("proxy-authenticate"))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .filter_map(|v| v.split_whitespace().next())
                .map(|s| s.trim_end_matches(',').to_owned())
                .collect();
            Ok(Parsed::Reply(Reply {
                status,
                reason,
                auth_schemes,
                head_len,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(ReplyError::TooManyHeaders),
        Err(e) => {
            let shown: String = String::from_utf8_lossy(&buf[..buf.len().min(40)])
                .chars()
                .map(|c| if c.is_control() { '.' } else { c })
                .collect();
            Err(ReplyError::NotHttp(format!("{e}; it began {shown:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            String::from_utf8(request("wsensorapi.example", 443, None)).unwrap(),
            format!("CONNECT wsensorapi.example:443 HTTP/1.1\r\nHost: wsensorapi.example:443\r\nUser-Agent: uplink/{}\r\n\r\n", env!("CARGO_PKG_VERSION"))
        );
        let with_auth = String::from_utf8(request("::1", 8443, Some("Basic abc"))).unwrap();
        assert!(with_auth.starts_with("CONNECT [::1]:8443 HTTP/1.1\r\n"));
        assert!(with_auth.contains("\r\nProxy-Authorization: Basic abc\r\n"));
    }

    #[test]
    fn replies() {
        /// Input, then Ok(None) for incomplete, Ok(Some((status, schemes))), or Err(text in the error).
        type Want<'a> = Result<Option<(u16, &'a [&'a str])>, &'a str>;
        let cases: &[(&[u8], Want)] = &[
            (b"HTTP/1.1 200 Connection established\r\n\r\n", Ok(Some((200, &[])))),
            (b"HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\nTLSBYTES", Ok(Some((200, &[])))),
            (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n", Ok(Some((407, &["Basic", "NTLM"])))),
            (b"HTTP/1.1 403 Forbidden\r\n\r\n", Ok(Some((403, &[])))),
            (b"HTTP/1.1 200 OK\r\n", Ok(None)),
            (b"HTTP/1.", Ok(None)),
            (b"", Ok(None)),
            (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", Err("not HTTP")),
            (b"\x16\x03\x01\x00\x05hello", Err("not HTTP")),
        ];
        for (input, want) in cases {
            let got = parse_reply(input);
            match (got, want) {
                (Ok(Parsed::Incomplete), Ok(None)) => {}
                (Ok(Parsed::Reply(r)), Ok(Some((status, schemes)))) => {
                    assert_eq!(r.status, *status, "{input:?}");
                    assert_eq!(
                        r.auth_schemes,
                        schemes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                        "{input:?}"
                    );
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn oversized_and_endless_heads_are_errors() {
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        while endless.len() <= MAX_HEAD {
            endless.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        assert!(matches!(
            parse_reply(&endless),
            Err(ReplyError::TooLarge) | Err(ReplyError::TooManyHeaders)
        ));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_reply(&many), Err(ReplyError::TooManyHeaders));
    }
}
