//! Fetching a PAC file over HTTP, and when to fetch it again.
//!
//! PAC files are small and served by intranet web servers or WPAD hosts; a minimal HTTP/1.0 GET
//! (so no chunked encoding, and the server closes the connection) with a deadline and a body
//! limit is all that is needed, and it keeps a hostile or broken server from hanging the caller
//! or filling memory. [`freshness`] turns the response's caching headers into a refresh interval
//! clamped to [`RefreshBounds`].
//!
//! `https://` PAC URLs (with the `https` feature) trust the system's roots (rustls-native-certs:
//! the distribution's bundle, or `SSL_CERT_FILE`/`SSL_CERT_DIR`). That is deliberately not the
//! service's trust: a PAC file is an intranet resource signed by whatever CA the organisation
//! uses, while the sensor's upload trusts only its workspace CA, whatever the PAC says.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

/// Limits of one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The whole fetch: connect, request, response.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    pub bounds: RefreshBounds,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions {
            timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            bounds: RefreshBounds::default(),
        }
    }
}

/// How often a PAC URL may be and must be re-fetched, whatever its headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBounds {
    pub min: Duration,
    pub max: Duration,
    /// When the response has no caching headers.
    pub default: Duration,
}

impl Default for RefreshBounds {
    fn default() -> RefreshBounds {
        RefreshBounds {
            min: Duration::from_secs(60),
            max: Duration::from_secs(24 * 3600),
            default: Duration::from_secs(3600),
        }
    }
}

/// A fetched PAC file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body, decoded as UTF-8 (invalid bytes replaced: PAC files are ASCII in practice).
    pub body: String,
    /// When to fetch again, from the caching headers within the bounds.
    pub refresh_after: Duration,
    pub content_type: Option<String>,
}

/// Why a PAC file could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url:?} is not an http:// URL with a host; give e.g. http://wpad.example/wpad.dat")]
    InvalidUrl { url: String },
    #[error(
        "fetching {url}: this build cannot fetch https PAC URLs; download the file and pass its path"
    )]
    Https { url: String },
    #[error("fetching {url}: the TLS handshake failed: {error}; check that the server's certificate chains to a root this machine trusts (SSL_CERT_FILE) and names the host")]
    Tls { url: String, error: String },
    #[error(
        "fetching {url}: cannot connect to {addr}: {error}; check the URL and that the server runs"
    )]
    Connect {
        url: String,
        addr: String,
        error: String,
    },
    #[error("fetching {url}: no answer within {timeout:?}; check the server and any firewall in between")]
    Timeout { url: String, timeout: Duration },
    #[error("fetching {url}: {error}")]
    Io { url: String, error: String },
    #[error("fetching {url}: the server answered HTTP {status}; check the PAC URL")]
    Status { url: String, status: u16 },
    #[error("fetching {url}: the body is larger than {limit} bytes, which no PAC file is; check the URL")]
    TooLarge { url: String, limit: usize },
    #[error("fetching {url}: the response is not HTTP ({detail})")]
    Malformed { url: String, detail: String },
    /// A redirect (followed by [`fetch`]; seen by callers only through the variants below).
    #[error("fetching {url}: redirected ({status}) to {location}")]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
    #[error("fetching {url}: more than {limit} redirects; point the PAC URL at the script itself")]
    TooManyRedirects { url: String, limit: usize },
    #[error("fetching {url}: it redirects to {location}, a plain-http URL; a script asked for over https:// is not fetched over http://: fix the redirect or the PAC URL")]
    Downgrade { url: String, location: String },
}

/// Most redirects a fetch follows.
pub const MAX_REDIRECTS: usize = 5;

/// GETs `url` (`http://`, or `https://` with the `https` feature) under `opts`, following up to
/// [`MAX_REDIRECTS`] redirects (never from https:// to http://, which would let a plain-text hop
/// stand in for a script the administrator asked to be fetched over TLS). The whole fetch —
/// every hop, its DNS lookup included — runs within `opts.timeout`.
pub fn fetch(url: &str, opts: &FetchOptions) -> Result<Fetched, FetchError> {
    let deadline = Instant::now() + opts.timeout;
    let mut current = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        match fetch_once(&current, opts, deadline) {
            Err(FetchError::Redirect { location, .. }) => {
                let next =
                    redirect_target(&current, &location).ok_or_else(|| FetchError::InvalidUrl {
                        url: location.clone(),
                    })?;
                if current.to_ascii_lowercase().starts_with("https://")
                    && !next.to_ascii_lowercase().starts_with("https://")
                {
                    return Err(FetchError::Downgrade {
                        url: current,
                        location: next,
                    });
                }
                current = next;
            }
            other => return other,
        }
    }
    Err(FetchError::TooManyRedirects {
        url: url.into(),
        limit: MAX_REDIRECTS,
    })
}

/// Where a redirect from `base` to `location` (absolute, scheme-relative, absolute-path or
/// relative) leads. Pure.
pub fn redirect_target(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(location.to_owned());
    }
    let b = uplink_url::HttpUrl::parse(base).ok()?;
    let origin = format!("{}://{}", b.scheme, b.authority());
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{}://{rest}", b.scheme));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    if location.is_empty() {
        return None;
    }
    let path = b.path.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{origin}{dir}{location}"))
}

/// Resolves `host:port` within `left`: the system resolver blocks, so it runs on a thread of
/// its own and is given up on at the deadline (the thread ends when the resolver's own timeout
/// does). IP literals need no lookup.
fn lookup(host: &str, port: u16, left: Duration) -> Result<Vec<SocketAddr>, Option<String>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("pac-dns".into())
        .spawn(move || {
            let r = (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        })
        .map_err(|e| Some(e.to_string()))?;
    match rx.recv_timeout(left) {
        Ok(r) => r.map_err(Some),
        Err(_) => Err(None),
    }
}

/// One GET of `url`, by `deadline`.
fn fetch_once(url: &str, opts: &FetchOptions, deadline: Instant) -> Result<Fetched, FetchError> {
    let lower = url.to_ascii_lowercase();
    let tls = lower.starts_with("https://");
    if !(tls || lower.starts_with("http://")) {
        return Err(FetchError::InvalidUrl { url: url.into() });
    }
    if tls && !cfg!(feature = "https") {
        return Err(FetchError::Https { url: url.into() });
    }
    let parsed =
        uplink_url::HttpUrl::parse(url).map_err(|_| FetchError::InvalidUrl { url: url.into() })?;
    let path = parsed.path.clone();
    let authority = parsed.authority();
    let addr_text = parsed.host_port();
    let timeout_err = || FetchError::Timeout {
        url: url.into(),
        timeout: opts.timeout,
    };
    let io_err = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            FetchError::Timeout {
                url: url.into(),
                timeout: opts.timeout,
            }
        } else {
            FetchError::Io {
                url: url.into(),
                error: e.to_string(),
            }
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let addrs = lookup(&parsed.host, parsed.port, left).map_err(|e| match e {
        Some(error) => FetchError::Connect {
            url: url.into(),
            addr: addr_text.clone(),
            error,
        },
        None => timeout_err(),
    })?;
    let mut last_err = String::from("no address");
    let mut stream = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout_err());
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let tcp = stream.ok_or_else(|| FetchError::Connect {
        url: url.into(),
        addr: addr_text.clone(),
        error: last_err,
    })?;
    let mut stream = if tls {
        Conn::tls(tcp, &parsed.host, url, deadline)?
    } else {
        Conn::Plain(tcp)
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/x-ns-proxy-autoconfig, */*\r\nUser-Agent: uplink\r\nConnection: close\r\n\r\n"
    );
    stream
        .tcp()
        .set_write_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .map_err(io_err)?;
    stream.write_all(request.as_bytes()).map_err(io_err)?;

    // Head plus at most the body limit; anything more is an error, not a truncation.
    let cap = opts.max_body_bytes.saturating_add(64 << 10);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout_err());
        }
        stream.tcp().set_read_timeout(Some(left)).map_err(io_err)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            // A server that closes without close_notify after a complete response: the body
            // length check below still catches truncation when Content-Length is given.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head_len) = find_head_end(&buf) {
            if buf.len() - head_len > opts.max_body_bytes {
                return Err(FetchError::TooLarge {
                    url: url.into(),
                    limit: opts.max_body_bytes,
                });
            }
        } else if buf.len() > 64 << 10 {
            return Err(FetchError::Malformed {
                url: url.into(),
                detail: "no end of headers in the first 64 KiB".into(),
            });
        }
        if buf.len() > cap {
            return Err(FetchError::TooLarge {
                url: url.into(),
                limit: opts.max_body_bytes,
            });
        }
    }
    parse_response(url, &buf, opts)
}

/// The connection under a fetch: plain TCP or TLS over it.
enum Conn {
    Plain(TcpStream),
    #[cfg(feature = "https")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            #[cfg(feature = "https")]
            Conn::Tls(s) => &s.sock,
        }
    }

    #[cfg(feature = "https")]
    fn tls(tcp: TcpStream, host: &str, url: &str, deadline: Instant) -> Result<Conn, FetchError> {
        let tls_err = |error: String| FetchError::Tls {
            url: url.into(),
            error,
        };
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| tls_err(format!("{host:?} is not a valid TLS server name: {e}")))?;
        let config = https_config().map_err(tls_err)?;
        let mut conn =
            rustls::ClientConnection::new(config, name).map_err(|e| tls_err(e.to_string()))?;
        let mut tcp = tcp;
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(tls_err("no complete handshake before the deadline".into()));
            }
            tcp.set_read_timeout(Some(left))
                .and_then(|()| tcp.set_write_timeout(Some(left)))
                .map_err(|e| tls_err(e.to_string()))?;
            conn.complete_io(&mut tcp)
                .map_err(|e| tls_err(e.to_string()))?;
        }
        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }

    #[cfg(not(feature = "https"))]
    fn tls(_: TcpStream, _: &str, url: &str, _: Instant) -> Result<Conn, FetchError> {
        Err(FetchError::Https { url: url.into() })
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            #[cfg(feature = "https")]
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            #[cfg(feature = "https")]
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            #[cfg(feature = "https")]
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The client configuration for https PAC URLs: the system roots, loaded once per process.
#[cfg(feature = "https")]
fn https_config() -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use std::sync::{Arc, OnceLock};
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                return Err(format!(
                    "no trusted root certificates found on this machine ({}); install ca-certificates or set SSL_CERT_FILE",
                    loaded
                        .errors
                        .first()
                        .map_or_else(|| "the system store is empty".to_string(), |e| e.to_string())
                ));
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_response(url: &str, buf: &[u8], opts: &FetchOptions) -> Result<Fetched, FetchError> {
    let malformed = |d: &str| FetchError::Malformed {
        url: url.into(),
        detail: d.into(),
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(malformed("the connection closed inside the headers"))
        }
        Err(e) => return Err(malformed(&e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    if matches!(status, 301 | 302 | 303 | 307 | 308) {
        let location = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("location"))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string());
        if let Some(location) = location.filter(|l| !l.is_empty()) {
            return Err(FetchError::Redirect {
                url: url.into(),
                status,
                location,
            });
        }
    }
    if status != 200 {
        return Err(FetchError::Status {
            url: url.into(),
            status,
        });
    }
    let pairs: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut body = &buf[head_len..];
    if let Some((_, len)) = pairs.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.parse().map_err(|_| malformed("bad Content-Length"))?;
        if len > opts.max_body_bytes {
            return Err(FetchError::TooLarge {
                url: url.into(),
                limit: opts.max_body_bytes,
            });
        }
        if body.len() < len {
            return Err(malformed(
                "the connection closed before the end of the body",
            ));
        }
        body = &body[..len];
    }
    let content_type = pairs
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.clone());
    Ok(Fetched {
        body: String::from_utf8_lossy(body).into_owned(),
        refresh_after: freshness(&pairs, OffsetDateTime::now_utc(), opts.bounds),
        content_type,
    })
}

/// How long a fetched PAC stays fresh, from its response headers (names lower-case):
/// `Cache-Control: no-store`/`no-cache` → the minimum; `max-age=N` → N; else `Expires` minus
/// `Date` (or `now`); else the default. Always clamped to `bounds`.
pub fn freshness(
    headers: &[(String, String)],
    now: OffsetDateTime,
    bounds: RefreshBounds,
) -> Duration {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let clamp = |d: Duration| d.clamp(bounds.min, bounds.max.max(bounds.min));
    if let Some(cc) = get("cache-control") {
        let mut max_age = None;
        for directive in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            if directive == "no-store" || directive == "no-cache" {
                return bounds.min;
            }
            if let Some(v) = directive.strip_prefix("max-age=") {
                max_age = v.trim_matches('"').parse::<u64>().ok();
            }
        }
        if let Some(secs) = max_age {
            return clamp(Duration::from_secs(secs));
        }
    }
    if let Some(expires) = get("expires") {
        let base = get("date")
            .and_then(|d| OffsetDateTime::parse(d, &Rfc2822).ok())
            .unwrap_or(now);
        return match OffsetDateTime::parse(expires, &Rfc2822) {
            Ok(at) => clamp(Duration::try_from(at - base).unwrap_or(Duration::ZERO)),
            // An unparsable Expires means "already expired" (RFC 9111 §5.3).
            Err(_) => bounds.min,
        };
    }
    clamp(bounds.default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn freshness_table() {
        let b = RefreshBounds::default();
        let now = datetime!(2024-01-01 00:00 UTC);
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let cases: &[(Vec<(String, String)>, u64)] = &[
            (h(&[]), 3600),
            (h(&[("cache-control", "max-age=600")]), 600),
            (h(&[("cache-control", "public, max-age=5")]), 60),
            (h(&[("cache-control", "max-age=999999")]), 86400),
            (h(&[("cache-control", "no-cache")]), 60),
            (h(&[("cache-control", "no-store, max-age=600")]), 60),
            (
                h(&[
                    ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                    ("expires", "Mon, 01 Jan 2024 02:00:00 GMT"),
                ]),
                7200,
            ),
            (h(&[("expires", "Mon, 01 Jan 2024 00:30:00 GMT")]), 1800),
            (h(&[("expires", "0")]), 60),
            (
                h(&[("cache-control", "max-age=600"), ("expires", "0")]),
                600,
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(
                freshness(headers, now, b),
                Duration::from_secs(*want),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn bad_urls_and_responses() {
        let o = FetchOptions::default();
        assert!(matches!(
            fetch("ftp://x/", &o),
            Err(FetchError::InvalidUrl { .. })
        ));
        // https URLs are parsed like http ones (fetching them is tested end to end, against a
        // loopback TLS server, in the uplink binary's tests).
        assert!(matches!(
            fetch("https:///x", &o),
            Err(FetchError::InvalidUrl { .. })
        ));
        assert!(matches!(
            fetch("https://user@127.0.0.1/x", &o),
            Err(FetchError::InvalidUrl { .. })
        ));
        assert!(matches!(
            fetch("http:///x", &o),
            Err(FetchError::InvalidUrl { .. })
        ));
        let ok = parse_response(
            "u",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef",
            &o,
        )
        .unwrap();
        assert_eq!(ok.body, "abc");
        assert!(matches!(
            parse_response("u", b"HTTP/1.1 404 NF\r\n\r\n", &o),
            Err(FetchError::Status { status: 404, .. })
        ));
        assert!(matches!(
            parse_response("u", b"garbage\r\n\r\n", &o),
            Err(FetchError::Malformed { .. })
        ));
        assert!(matches!(
            parse_response("u", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", &o),
            Err(FetchError::Malformed { .. })
        ));
    }

    #[test]
    fn redirect_targets() {
        let cases = [
            ("http://h/a/b.pac", "http://o/x.pac", Some("http://o/x.pac")),
            ("http://h/a/b.pac", "/x.pac", Some("http://h/x.pac")),
            (
                "http://h:8080/a/b.pac?q",
                "c.pac",
                Some("http://h:8080/a/c.pac"),
            ),
            ("https://h/a/b.pac", "//o/x.pac", Some("https://o/x.pac")),
            (
                "http://[::1]:81/a.pac",
                "/b.pac",
                Some("http://[::1]:81/b.pac"),
            ),
            ("http://h/a.pac", "", None),
        ];
        for (base, location, want) in cases {
            assert_eq!(
                redirect_target(base, location).as_deref(),
                want,
                "{base} -> {location}"
            );
        }
    }

    /// A loopback HTTP server answering each request with `answer(path)`, on `bind`.
    fn serve(bind: &str, answer: fn(&str) -> String) -> u16 {
        let listener = std::net::TcpListener::bind(bind).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let _ = conn.write_all(answer(&path).as_bytes());
            }
        });
        port
    }

    fn pac_or_redirect(path: &str) -> String {
        match path {
            "/moved.pac" => "HTTP/1.0 302 Found\r\nLocation: /real.pac\r\n\r\n".into(),
            "/loop.pac" => "HTTP/1.0 301 Moved\r\nLocation: loop.pac\r\n\r\n".into(),
            "/real.pac" => {
                let body = "function FindProxyForURL(u, h) { return 'DIRECT'; }";
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            _ => "HTTP/1.0 404 Not Found\r\n\r\n".into(),
        }
    }

    #[test]
    fn redirects_are_followed_a_bounded_number_of_times() {
        let o = FetchOptions {
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let port = serve("127.0.0.1:0", pac_or_redirect);
        let f = fetch(&format!("http://127.0.0.1:{port}/moved.pac"), &o).unwrap();
        assert!(f.body.contains("FindProxyForURL"));
        let e = fetch(&format!("http://127.0.0.1:{port}/loop.pac"), &o).unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::TooManyRedirects {
                    limit: MAX_REDIRECTS,
                    ..
                }
            ),
            "{e}"
        );
        // Over IPv6 too: the URL's bracketed literal, the Host header, the redirect.
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            let port = serve("[::1]:0", pac_or_redirect);
            let f = fetch(&format!("http://[::1]:{port}/moved.pac"), &o).unwrap();
            assert!(f.body.contains("FindProxyForURL"));
        }
    }
}
