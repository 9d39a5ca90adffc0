//! The CONNECT exchange as pure functions: the request's bytes, a parser for the reply head, and
//! the framing of a reply's body (a 407 carries an error page that must be read off the
//! connection before the next CONNECT is sent on it).

/// Largest reply head accepted; a proxy sending more is broken or hostile.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines accepted in a reply.
pub const MAX_HEADERS: usize = 100;
/// Largest 407 body read and discarded to keep the connection; a proxy sending more is hostile.
pub const MAX_BODY: u64 = 1024 * 1024;
/// Longest chunk-size line (with extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// The CONNECT request for `host:port`, with a `Proxy-Authorization` value if given.
pub fn request(host: &str, port: u16, proxy_authorization: Option<&str>) -> Vec<u8> {
    let authority = uplink_url::host_port(host, port);
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
    /// Every `Proxy-Authenticate` challenge, parsed; malformed header values are left out.
    pub challenges: Vec<uplink_proxyauth::Challenge>,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
    /// How the body that follows the head is framed (RFC 9112 §6.3).
    pub body: Body,
    /// False when the proxy said it will close the connection after this reply.
    pub keep_alive: bool,
    /// The proxy's own name for an error (Squid's `X-Squid-Error: ERR_CONNECT_FAIL 111`), at
    /// most 200 characters, control characters replaced.
    pub proxy_error: Option<String>,
}

/// How a reply's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body: a 2xx to CONNECT (the tunnel starts), 1xx, 204, 304.
    None,
    Length(u64),
    Chunked,
    /// Until the proxy closes the connection: the connection cannot be reused.
    UntilClose,
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
    #[error("the reply has an invalid or conflicting Content-Length")]
    BadLength,
    #[error("the reply's chunked body is malformed")]
    BadChunk,
    #[error("the reply's body is larger than {MAX_BODY} bytes")]
    BodyTooLarge,
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
            let values = |name: &'static str| {
                resp.headers
                    .iter()
                    .filter(move |h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value))
            };
            let raw: Vec<String> = values("proxy-authenticate")
                .map(|v| v.into_owned())
                .collect();
            let (challenges, _malformed) =
                uplink_proxyauth::challenge::parse_all(raw.iter().map(String::as_str));
            let auth_schemes = challenges.iter().map(|c| c.scheme.clone()).collect();
            let has_token = |name: &'static str, token: &str| {
                values(name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            };
            let keep_alive = if resp.version == Some(0) {
                has_token("connection", "keep-alive") || has_token("proxy-connection", "keep-alive")
            } else {
                !(has_token("connection", "close") || has_token("proxy-connection", "close"))
            };
            let body =
                if (200..300).contains(&status) || status < 200 || status == 204 || status == 304 {
                    Body::None
                } else if values("transfer-encoding").next().is_some() {
                    // Chunked must be the last coding; anything else is read until close.
                    let last = values("transfer-encoding")
                        .next_back()
                        .and_then(|v| v.rsplit(',').next().map(|t| t.trim().to_ascii_lowercase()));
                    if last.as_deref() == Some("chunked") {
                        Body::Chunked
                    } else {
                        Body::UntilClose
                    }
                } else {
                    let mut length = None;
                    for v in values("content-length") {
                        for part in v.split(',') {
                            let part = part.trim();
                            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                                return Err(ReplyError::BadLength);
                            }
                            let n: u64 = part.parse().map_err(|_| ReplyError::BadLength)?;
                            if length.is_some_and(|l| l != n) {
                                return Err(ReplyError::BadLength);
                            }
                            length = Some(n);
                        }
                    }
                    length.map_or(Body::UntilClose, Body::Length)
                };
            let proxy_error = values("x-squid-error").next().map(|v| {
                v.trim()
                    .chars()
                    .take(200)
                    .map(|c| if c.is_control() { '.' } else { c })
                    .collect::<String>()
            });
            Ok(Parsed::Reply(Reply {
                status,
                reason,
                auth_schemes,
                challenges,
                head_len,
                body,
                keep_alive,
                proxy_error,
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

/// The length of a complete chunked body at the start of `buf` (chunks, last chunk, trailers
/// and the final blank line), or `None` if more bytes are needed.
pub fn chunked_len(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    let mut at = 0usize;
    let line_end = |from: usize| -> Result<Option<usize>, ReplyError> {
        let window = &buf[from..buf.len().min(from + MAX_CHUNK_LINE)];
        match window.windows(2).position(|w| w == b"\r\n") {
            Some(i) => Ok(Some(from + i)),
            None if window.len() == MAX_CHUNK_LINE => Err(ReplyError::BadChunk),
            None => Ok(None),
        }
    };
    loop {
        let Some(end) = line_end(at)? else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..end]).map_err(|_| ReplyError::BadChunk)?;
        let size = line.split(';').next().unwrap_or("").trim();
        if size.is_empty() || size.len() > 15 {
            return Err(ReplyError::BadChunk);
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| ReplyError::BadChunk)?;
        if size > MAX_BODY || at as u64 + size > MAX_BODY {
            return Err(ReplyError::BodyTooLarge);
        }
        at = end + 2;
        if size == 0 {
            // Trailer fields, then a blank line.
            loop {
                let Some(end) = line_end(at)? else {
                    return Ok(None);
                };
                let blank = end == at;
                at = end + 2;
                if blank {
                    return Ok(Some(at));
                }
                if at as u64 > MAX_BODY {
                    return Err(ReplyError::BodyTooLarge);
                }
            }
        }
        let data_end = at + size as usize;
        if buf.len() < data_end + 2 {
            return Ok(None);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(ReplyError::BadChunk);
        }
        at = data_end + 2;
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

    #[test]
    fn body_framing_and_keep_alive() {
        let head = |extra: &str, status: &str, version: &str| {
            let raw = format!("HTTP/{version} {status} X\r\n{extra}\r\n");
            match parse_reply(raw.as_bytes()) {
                Ok(Parsed::Reply(r)) => Ok((r.body, r.keep_alive)),
                Ok(Parsed::Incomplete) => panic!("incomplete: {raw:?}"),
                Err(e) => Err(e),
            }
        };
        /// Extra headers, status, HTTP version, then the framing and keep-alive wanted.
        type Case<'a> = (&'a str, &'a str, &'a str, Result<(Body, bool), ReplyError>);
        let cases: &[Case] = &[
            (
                "Content-Length: 12\r\n",
                "407",
                "1.1",
                Ok((Body::Length(12), true)),
            ),
            (
                "Content-Length: 12\r\nContent-Length: 12\r\n",
                "407",
                "1.1",
                Ok((Body::Length(12), true)),
            ),
            (
                "Content-Length: 12, 12\r\n",
                "407",
                "1.1",
                Ok((Body::Length(12), true)),
            ),
            (
                "Content-Length: 12\r\nContent-Length: 13\r\n",
                "407",
                "1.1",
                Err(ReplyError::BadLength),
            ),
            (
                "Content-Length: -1\r\n",
                "407",
                "1.1",
                Err(ReplyError::BadLength),
            ),
            (
                "Content-Length: 99999999999999999999999\r\n",
                "407",
                "1.1",
                Err(ReplyError::BadLength),
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "407",
                "1.1",
                Ok((Body::Chunked, true)),
            ),
            (
                "Transfer-Encoding: gzip\r\n",
                "407",
                "1.1",
                Ok((Body::UntilClose, true)),
            ),
            ("", "407", "1.1", Ok((Body::UntilClose, true))),
            (
                "Connection: close\r\nContent-Length: 0\r\n",
                "407",
                "1.1",
                Ok((Body::Length(0), false)),
            ),
            (
                "Proxy-Connection: Close\r\nContent-Length: 0\r\n",
                "407",
                "1.1",
                Ok((Body::Length(0), false)),
            ),
            (
                "Content-Length: 0\r\n",
                "407",
                "1.0",
                Ok((Body::Length(0), false)),
            ),
            (
                "Proxy-Connection: keep-alive\r\nContent-Length: 0\r\n",
                "407",
                "1.0",
                Ok((Body::Length(0), true)),
            ),
            (
                "Content-Length: 100\r\n",
                "200",
                "1.1",
                Ok((Body::None, true)),
            ),
        ];
        for (extra, status, version, want) in cases {
            assert_eq!(
                &head(extra, status, version),
                want,
                "{extra:?} {status} {version}"
            );
        }
    }

    #[test]
    fn challenges_are_parsed_from_every_header() {
        let raw = b"HTTP/1.1 407 X\r\nProxy-Authenticate: Negotiate, NTLM\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"a,b\"\r\nProxy-Authenticate: Basic realm=\"unterminated\r\nContent-Length: 0\r\n\r\n";
        let Ok(Parsed::Reply(r)) = parse_reply(raw) else {
            panic!()
        };
        assert_eq!(r.auth_schemes, ["Negotiate", "NTLM", "Digest"]);
        assert_eq!(r.challenges[2].param("nonce"), Some("a,b"));
    }

    #[test]
    fn chunked_bodies() {
        type Case<'a> = (&'a [u8], Result<Option<usize>, ReplyError>);
        let cases: &[Case] = &[
            (b"0\r\n\r\n", Ok(Some(5))),
            (b"5\r\nhello\r\n0\r\n\r\nNEXT", Ok(Some(15))),
            (b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n", Ok(Some(33))),
            (b"5\r\nhel", Ok(None)),
            (b"5\r\nhello\r\n0\r\n", Ok(None)),
            (b"", Ok(None)),
            (b"zz\r\n", Err(ReplyError::BadChunk)),
            (b"5\r\nhelloXX0\r\n\r\n", Err(ReplyError::BadChunk)),
            (b"ffffffffffffffffff\r\n", Err(ReplyError::BadChunk)),
            (b"fffffff\r\n", Err(ReplyError::BodyTooLarge)),
        ];
        for (input, want) in cases {
            assert_eq!(
                &chunked_len(input),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // A chunk-size line that never ends is an error once it is longer than the limit.
        assert_eq!(chunked_len(&[b'1'; 2000]), Err(ReplyError::BadChunk));
        // Endless trailers end at the body limit.
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() as u64 <= MAX_BODY + 100 {
            trailers.extend_from_slice(b"X: yyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n");
        }
        assert_eq!(chunked_len(&trailers), Err(ReplyError::BodyTooLarge));
    }

    /// What a captured reply must parse to. `body` is the framing; the body's bytes are the rest
    /// of the capture, which must be exactly as long as the framing says.
    struct Capture {
        file: &'static str,
        bytes: &'static [u8],
        status: u16,
        reason: &'static str,
        schemes: &'static [&'static str],
        body: Body,
        keep_alive: bool,
    }

    macro_rules! capture {
        ($file:literal, $status:expr, $reason:expr, $schemes:expr, $body:expr, $keep_alive:expr) => {
            Capture {
                file: $file,
                bytes: include_bytes!(concat!("../testdata/connect/", $file)),
                status: $status,
                reason: $reason,
                schemes: $schemes,
                body: $body,
                keep_alive: $keep_alive,
            }
        };
    }

    /// Real replies to CONNECT, recorded by testdata/capture.sh (see testdata/README.md).
    fn captures() -> Vec<Capture> {
        use Body::*;
        vec![
            capture!(
                "squid-200.bin",
                200,
                "Connection established",
                &[],
                None,
                true
            ),
            capture!(
                "squid-200-after-basic.bin",
                200,
                "Connection established",
                &[],
                None,
                true
            ),
            capture!(
                "squid-407-basic-digest-ntlm.bin",
                407,
                "Proxy Authentication Required",
                &["Basic", "Digest", "NTLM"],
                Length(3045),
                true
            ),
            capture!(
                "squid-407-bad-basic.bin",
                407,
                "Proxy Authentication Required",
                &["Basic", "Digest", "NTLM"],
                Length(3045),
                true
            ),
            capture!(
                "squid-407-ntlm-challenge.bin",
                407,
                "Proxy Authentication Required",
                &["NTLM"],
                Length(3045),
                true
            ),
            capture!(
                "squid-403-access-denied.bin",
                403,
                "Forbidden",
                &[],
                Length(3040),
                true
            ),
            capture!(
                "squid-503-connect-fail.bin",
                503,
                "Service Unavailable",
                &[],
                Length(3056),
                true
            ),
            capture!(
                "tinyproxy-200.bin",
                200,
                "Connection established",
                &[],
                None,
                false
            ),
            capture!(
                "tinyproxy-407-basic.bin",
                407,
                "Proxy Authentication Required",
                &["Basic"],
                UntilClose,
                false
            ),
            capture!(
                "tinyproxy-403-connect-port.bin",
                403,
                "Access violation",
                &[],
                UntilClose,
                false
            ),
            capture!(
                "tinyproxy-500-connect-fail.bin",
                500,
                "Unable to connect",
                &[],
                UntilClose,
                false
            ),
            capture!(
                "tinyproxy-400-bad-request.bin",
                400,
                "Bad Request",
                &[],
                UntilClose,
                false
            ),
            capture!(
                "mitmproxy-200.bin",
                200,
                "Connection established",
                &[],
                None,
                true
            ),
            capture!(
                "mitmproxy-502-connect-fail.bin",
                502,
                "Bad Gateway",
                &[],
                Length(87),
                true
            ),
        ]
    }

    /// Every prefix of a captured reply shorter than its head is `Incomplete`; from the head on,
    /// every prefix is the same reply (the body is the caller's to read); and the head ends where
    /// the capture's blank line does, with a body exactly as long as its framing says.
    #[test]
    fn captured_replies_parse_at_every_prefix() {
        for c in captures() {
            let f = c.file;
            let head_len = c
                .bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4)
                .unwrap_or_else(|| panic!("{f}: no blank line"));
            for k in 0..head_len {
                assert_eq!(
                    parse_reply(&c.bytes[..k]),
                    Ok(Parsed::Incomplete),
                    "{f}: prefix of {k} bytes"
                );
            }
            let Ok(Parsed::Reply(whole)) = parse_reply(c.bytes) else {
                panic!("{f}: {:?}", parse_reply(c.bytes));
            };
            for k in head_len..c.bytes.len() {
                assert_eq!(
                    parse_reply(&c.bytes[..k]).as_ref(),
                    Ok(&Parsed::Reply(whole.clone())),
                    "{f}: prefix of {k} bytes"
                );
            }
            assert_eq!(whole.head_len, head_len, "{f}");
            assert_eq!(whole.status, c.status, "{f}");
            assert_eq!(whole.reason, c.reason, "{f}");
            assert_eq!(whole.auth_schemes, c.schemes, "{f}");
            assert_eq!(whole.body, c.body, "{f}");
            assert_eq!(whole.keep_alive, c.keep_alive, "{f}");
            let body_len = (c.bytes.len() - head_len) as u64;
            match c.body {
                Body::None => assert_eq!(body_len, 0, "{f}: bytes after a 2xx head"),
                Body::Length(n) => assert_eq!(body_len, n, "{f}"),
                Body::UntilClose => assert!(body_len > 0, "{f}: the error page is missing"),
                Body::Chunked => {
                    assert_eq!(
                        chunked_len(&c.bytes[head_len..]),
                        Ok(Some(body_len as usize)),
                        "{f}"
                    );
                }
            }
        }
    }

    /// The challenges in captured 407s carry what the authentication rounds need: Squid's Basic
    /// and Digest parameters, and an NTLM Type 2 message that the NTLM code accepts.
    #[test]
    fn captured_challenges_are_usable() {
        use base64::Engine as _;
        let parsed = |bytes: &[u8]| match parse_reply(bytes) {
            Ok(Parsed::Reply(r)) => r,
            other => panic!("{other:?}"),
        };
        let first = parsed(include_bytes!(
            "../testdata/connect/squid-407-basic-digest-ntlm.bin"
        ));
        assert_eq!(first.challenges[0].param("realm"), Some("uplink-capture"));
        let digest = &first.challenges[1];
        assert_eq!(digest.param("realm"), Some("uplink-capture"));
        assert_eq!(digest.param("qop"), Some("auth"));
        assert_eq!(digest.param("nonce").map(str::len), Some(32));
        assert_eq!(first.challenges[2].token68, None);

        let ntlm = parsed(include_bytes!(
            "../testdata/connect/squid-407-ntlm-challenge.bin"
        ));
        let token = ntlm.challenges[0]
            .token68
            .as_deref()
            .expect("a Type 2 token");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token)
            .expect("base64");
        uplink_proxyauth::ntlm::parse_challenge(&raw).expect("Squid's Type 2 message");

        let tiny = parsed(include_bytes!(
            "../testdata/connect/tinyproxy-407-basic.bin"
        ));
        assert_eq!(tiny.challenges[0].param("realm"), Some("Tinyproxy"));
    }

    #[test]
    fn a_squid_error_is_kept_for_the_fix() {
        let reply = b"HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\nContent-Length: 0\r\n\r\n";
        match parse_reply(reply).unwrap() {
            Parsed::Reply(r) => {
                assert_eq!(r.status, 503);
                assert_eq!(r.proxy_error.as_deref(), Some("ERR_CONNECT_FAIL 111"));
            }
            other => panic!("{other:?}"),
        }
        match parse_reply(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap() {
            Parsed::Reply(r) => assert_eq!(r.proxy_error, None),
            other => panic!("{other:?}"),
        }
    }
}
