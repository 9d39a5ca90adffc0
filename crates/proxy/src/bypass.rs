//! WinINet bypass lists (`ProxyOverride`, the bypass string of a WinINet or WinHTTP blob), with
//! WinINet's rules: entries separated by `;` (whitespace and commas tolerated), `*` wildcards
//! anywhere, case-insensitive, an optional `scheme://` prefix, and `<local>` meaning "any host
//! name without a dot". Settings imported from Windows keep these rules rather than curl's.

/// A parsed WinINet bypass list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WinInetBypass {
    local: bool,
    patterns: Vec<String>,
}

impl WinInetBypass {
    pub fn parse(list: &str) -> WinInetBypass {
        let mut out = WinInetBypass::default();
        for raw in list.split([';', ',', ' ', '\t', '\r', '\n']) {
            let e = raw.trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            if e == "<local>" {
                out.local = true;
                continue;
            }
            let e = e
                .split_once("://")
                .map_or(e.as_str(), |(_, rest)| rest)
                .to_owned();
            out.patterns.push(e);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        !self.local && self.patterns.is_empty()
    }

    /// True when `host` (on `port`) bypasses the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = crate::noproxy::normalize_host(host);
        if self.local && !host.contains('.') && !host.contains(':') {
            return true;
        }
        let with_port = format!("{host}:{port}");
        self.patterns
            .iter()
            .any(|p| glob(p, &host) || glob(p, &with_port))
    }
}

/// `*` matches any run of characters (including none); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wininet_rules() {
        let list = WinInetBypass::parse("<local>; *.contoso.com;10.*; http://intranet ; *:8443");
        let cases = [
            ("fileserver", 443, true), // <local>: no dot
            ("fileserver.contoso.com", 443, true),
            ("contoso.com", 443, false), // *.contoso.com needs a label before
            ("WWW.CONTOSO.COM", 443, true),
            ("10.1.2.3", 443, true),
            ("110.1.2.3", 443, false),
            ("intranet", 80, true),
            ("api.example.com", 8443, true), // *:8443
            ("api.example.com", 443, false),
        ];
        for (host, port, want) in cases {
            assert_eq!(list.matches(host, port), want, "{host}:{port}");
        }
        assert!(WinInetBypass::parse("").is_empty());
        assert!(!WinInetBypass::parse("<local>").matches("a.b", 443));
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("a*c", "abbbc", true),
            ("a*c", "abd", false),
            ("*.x.*", "a.x.b", true),
            ("**", "q", true),
            ("a", "ab", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }
}
