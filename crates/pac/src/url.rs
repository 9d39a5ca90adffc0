//! The two strings `FindProxyForURL(url, host)` receives.
//!
//! Browsers strip https URLs down to `scheme://host:port/` before calling the PAC, so a PAC (often
//! served from a third party) never sees paths or queries of encrypted requests; the sensor does
//! the same through [`url_for_pac`]. `uplink proxy pac` passes URLs exactly as given and only
//! derives the host with [`host_for_pac`].

/// The host a browser passes as the second argument: the URL's host, lower-cased, without the
/// brackets of an IPv6 literal and without user info or port. `None` if the URL has no
/// `scheme://` or an empty host.
pub fn host_for_pac(url: &str) -> Option<String> {
    uplink_url::url_parts(url).map(|p| p.host)
}

/// The URL to pass to the PAC for a request to `url`: `https://host:port/` for `https` and `wss`
/// URLs (the port made explicit, everything after the authority and any user info dropped),
/// other URLs unchanged. `None` if `url` has no `scheme://host`.
pub fn url_for_pac(url: &str) -> Option<String> {
    let parts = uplink_url::url_parts(url)?;
    let scheme_lc = parts.scheme.to_ascii_lowercase();
    let default_port = match scheme_lc.as_str() {
        "https" | "wss" => 443,
        _ => return Some(url.to_string()),
    };
    let port = match parts.port {
        Some(p) => p.parse::<u16>().ok()?,
        None => default_port,
    };
    Some(format!(
        "{scheme_lc}://{}/",
        uplink_url::host_port(&parts.host, port)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            (
                "http://Example.COM/a?b",
                Some("example.com"),
                Some("http://Example.COM/a?b"),
            ),
            (
                "https://u:p@h.example/secret?q=1",
                Some("h.example"),
                Some("https://h.example:443/"),
            ),
            (
                "https://h.example:8443/x",
                Some("h.example"),
                Some("https://h.example:8443/"),
            ),
            ("wss://h:1#f", Some("h"), Some("wss://h:1/")),
            (
                "https://[2001:DB8::1]:444/p",
                Some("2001:db8::1"),
                Some("https://[2001:db8::1]:444/"),
            ),
            ("ftp://[::1]/", Some("::1"), Some("ftp://[::1]/")),
            ("http://h?x", Some("h"), Some("http://h?x")),
            ("nonsense", None, None),
            ("http:///path", None, None),
            ("https://h:99999/", Some("h"), None),
        ];
        for (url, host, pac_url) in cases {
            assert_eq!(host_for_pac(url).as_deref(), *host, "host of {url}");
            assert_eq!(url_for_pac(url).as_deref(), *pac_url, "pac url of {url}");
        }
    }
}
