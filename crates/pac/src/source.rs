//! What `uplink proxy pac` is given to run: where the script comes from (`--pac`) and the URLs
//! to evaluate it for (`--urls`). Pure: the caller reads the file or fetches the URL.

use std::path::Path;

/// Where a PAC script comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// An `http://` or `https://` URL (any case), to fetch with [`crate::fetch`].
    Url(&'a str),
    /// A file: a path, or a `file://` URL's path.
    File(&'a Path),
}

impl<'a> Source<'a> {
    pub fn parse(spec: &'a str) -> Source<'a> {
        let scheme = spec.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") => Source::Url(spec),
            _ => Source::File(Path::new(spec.strip_prefix("file://").unwrap_or(spec))),
        }
    }
}

/// The URLs of a list file, one per line, trimmed; blank lines and `#` comments skipped.
pub fn url_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        for (spec, want) in [
            (
                "http://wpad.corp/wpad.dat",
                Source::Url("http://wpad.corp/wpad.dat"),
            ),
            (
                "HTTPS://wpad.corp/x.pac",
                Source::Url("HTTPS://wpad.corp/x.pac"),
            ),
            (
                "file:///etc/proxy.pac",
                Source::File(Path::new("/etc/proxy.pac")),
            ),
            ("proxy.pac", Source::File(Path::new("proxy.pac"))),
            ("/abs/proxy.pac", Source::File(Path::new("/abs/proxy.pac"))),
            // Another scheme is no URL this reads: a (missing) file, whose error names it.
            ("ftp://x/p.pac", Source::File(Path::new("ftp://x/p.pac"))),
        ] {
            assert_eq!(Source::parse(spec), want, "{spec}");
        }
    }

    #[test]
    fn url_lists() {
        let text = "# test URLs\nhttps://a.example/\n\n   http://b.example/x  \r\n\t# indented comment\nc.example\n";
        assert_eq!(
            url_list(text),
            ["https://a.example/", "http://b.example/x", "c.example"]
        );
        assert!(url_list("").is_empty());
        assert!(url_list("\n# only\n\n").is_empty());
    }
}
