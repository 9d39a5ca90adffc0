//! Secrets out of text that goes into a support bundle. Pure.
//!
//! Two layers: the secrets the caller knows (the `--proxy-password`, the sensor's unsealed proxy
//! password, passwords in proxy variables) are replaced wherever they appear; and shapes that
//! hold secrets whoever wrote them are blanked — passwords in URLs, `password = …` style keys,
//! sealed values, PEM private keys, `Proxy-Authorization` headers.

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Redacts `text`: every occurrence of each of `secrets` (empty ones ignored), then the shapes.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    let mut known: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    // Longest first, so a secret that contains another is replaced whole.
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in known {
        out = out.replace(s, REDACTED);
        // Also as it appears percent-encoded in URLs.
        let enc = percent_encode(s);
        if enc != s {
            out = out.replace(&enc, REDACTED);
        }
    }
    let out = private_keys(&out);
    out.lines().map(redact_line).collect::<Vec<_>>().join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// `s` as it appears in a URL's user info: everything but RFC 3986's unreserved characters
/// percent-encoded (upper-case hex, as browsers and curl write it).
fn percent_encode(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

fn private_keys(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let l = line.trim();
        if l.starts_with("-----BEGIN") && l.contains("PRIVATE KEY") {
            inside = true;
            out.push_str("<private key redacted>\n");
            continue;
        }
        if inside {
            if l.starts_with("-----END") {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
    }
    out
}

const SECRET_KEYS: [&str; 7] = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_key",
    "proxy-authorization",
    "authorization",
];

fn redact_line(line: &str) -> String {
    let mut line = userinfo(line);
    // `key = value`, `key: value`, `KEY=value` where the key names a secret.
    let lower = line.to_ascii_lowercase();
    for sep in ['=', ':'] {
        if let Some(i) = line.find(sep) {
            let key = lower[..i].trim().trim_matches('"');
            let key_last = key.rsplit(['.', ' ', '\t']).next().unwrap_or(key);
            if !key_last.is_empty()
                && SECRET_KEYS.iter().any(|k| key_last.contains(k))
                && !line[i + 1..].trim().is_empty()
            {
                line = format!("{}{sep} {REDACTED}", &line[..i]);
                break;
            }
        }
    }
    // Sealed values are not secret by themselves, but they are useless to a reader: blank them.
    if let Some(i) = line.find("enc:v1:") {
        let end = line[i..]
            .find(|c: char| c == '"' || c.is_whitespace())
            .map(|e| i + e)
            .unwrap_or(line.len());
        line.replace_range(i..end, REDACTED);
    }
    line
}

/// `scheme://user:password@host` → `scheme://user:<redacted>@host`, anywhere in the line.
fn userinfo(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(s) = rest.find("://") {
        let (head, tail) = rest.split_at(s + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_percent_encoded_as_in_urls() {
        let cases = [
            ("Az09-._~", "Az09-._~"),
            ("p@ss:w/rd", "p%40ss%3Aw%2Frd"),
            ("a b%", "a%20b%25"),
            ("é", "%C3%A9"),
        ];
        for (secret, want) in cases {
            assert_eq!(percent_encode(secret), want, "{secret:?}");
        }
        assert_eq!(
            redact("proxy=http://u:p%40ss%3A1@h:3128", &["p@ss:1"]),
            "proxy=http://u:<redacted>@h:3128"
        );
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "https_proxy=http://bob:S3cr%21t@proxy:3128",
                &[],
                "https_proxy=http://bob:<redacted>@proxy:3128",
            ),
            (
                "proxy http://u:pw@p:1 and http://p2:2/x",
                &[],
                "proxy http://u:<redacted>@p:1 and http://p2:2/x",
            ),
            ("password = \"enc:v1:abcdef\"", &[], "password = <redacted>"),
            (
                "  proxy.password: hunter2",
                &[],
                "  proxy.password: <redacted>",
            ),
            (
                "UPLINK_PROXY_PASSWORD=x",
                &[],
                "UPLINK_PROXY_PASSWORD= <redacted>",
            ),
            (
                "Proxy-Authorization: Basic Ym9iOnB3",
                &[],
                "Proxy-Authorization: <redacted>",
            ),
            (
                "note: value enc:v1:zzz here",
                &[],
                "note: value <redacted> here",
            ),
            (
                "the password is Tr0ub4dor in prose",
                &["Tr0ub4dor"],
                "the password is <redacted> in prose",
            ),
            (
                "url http://x/?p=a%2Fb",
                &["a/b"],
                "url http://x/?p=<redacted>",
            ),
            ("user = \"CORP\\\\bob\"", &[], "user = \"CORP\\\\bob\""),
            ("status: ok", &[""], "status: ok"),
        ];
        for (input, secrets, want) in cases {
            assert_eq!(redact(input, secrets), *want, "input {input:?}");
        }
    }

    #[test]
    fn private_keys_are_removed_whole() {
        let text = "a\n-----BEGIN PRIVATE KEY-----\nMIIB\nAAAA\n-----END PRIVATE KEY-----\nb\n";
        assert_eq!(redact(text, &[]), "a\n<private key redacted>\nb\n");
        let ec = "-----BEGIN EC PRIVATE KEY-----\nxx\n-----END EC PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nyy\n";
        let r = redact(ec, &[]);
        assert!(!r.contains("xx") && r.contains("yy"), "{r}");
    }
}
