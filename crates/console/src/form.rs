//! `application/x-www-form-urlencoded` bodies and query strings, parsed. Pure.

/// The `key=value` pairs of a form body or query string, percent-decoded (`+` is a space).
/// Malformed escapes are kept as they are; invalid UTF-8 becomes U+FFFD.
pub fn pairs(input: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    }
    input
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The first value of `key`.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What [`encode`] escapes: everything but RFC 3986's unreserved characters.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded for a path segment or a query string's value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("a=1&b=", &[("a", "1"), ("b", "")]),
            (
                "username=al+ice&password=p%26w%3D",
                &[("username", "al ice"), ("password", "p&w=")],
            ),
            ("flag", &[("flag", "")]),
            ("x=%zz&y=%41", &[("x", "%zz"), ("y", "A")]),
            ("&&a=1&", &[("a", "1")]),
            ("x=%FF", &[("x", "\u{FFFD}")]),
        ];
        for (input, want) in cases {
            let got = pairs(input);
            let got: Vec<(&str, &str)> =
                got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(&got, want, "{input:?}");
        }
        let p = pairs("a=1&a=2");
        assert_eq!(get(&p, "a"), Some("1"));
        assert_eq!(get(&p, "b"), None);
        assert_eq!(pairs(&format!("q={}", encode("a b&c/é")))[0].1, "a b&c/é");
    }
}
