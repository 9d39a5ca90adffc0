//! A PostgreSQL URL as given to `--database`: kept whole for the driver, shown only redacted.
//!
//! The URL may carry a password (`postgres://user:secret@host/db`, or `?password=secret`). It
//! must never reach a log line, an error or `Debug` output, so the only ways to see it are
//! [`DatabaseUrl::expose`] (for the driver) and [`DatabaseUrl::redacted`] (for people), as
//! atuin's server settings do for its `db_uri`.

use crate::StoreError;

/// A `postgres://` or `postgresql://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Accepts a PostgreSQL URL; anything else is a [`StoreError::Settings`] naming the forms
    /// that work (without echoing what was given: it may hold a password).
    pub fn new(url: &str) -> Result<DatabaseUrl, StoreError> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            return Err(StoreError::Settings(format!(
                "--database {:?} is not a PostgreSQL URL: write postgres://USER@HOST:PORT/DB, or postgres://USER@/DB?host=/run/postgresql for a Unix socket (for the embedded store, use --data-dir instead)",
                redact(url)
            )));
        }
        Ok(DatabaseUrl(url.to_owned()))
    }

    /// The URL itself, password included: for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `****`: for logs and errors.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces the password of `scheme://user:password@host…` and of `password=` query parameters.
fn redact(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    out.push_str(scheme);
    // The authority ends at the first '/', '?' or '#'; its user info at its last '@'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":****");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let params: Vec<String> = tail[q + 1..]
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "postgres://u:s3cret@db:5432/uplink",
                "postgres://u:****@db:5432/uplink",
            ),
            ("postgres://u@db/uplink", "postgres://u@db/uplink"),
            ("postgresql://u:p%40ss@db", "postgresql://u:****@db"),
            ("postgres://u:a@b@db/x", "postgres://u:****@db/x"),
            (
                "postgres://u@/uplink?host=/run/postgresql&password=s3cret",
                "postgres://u@/uplink?host=/run/postgresql&password=****",
            ),
            (
                "postgres:///uplink?host=/tmp",
                "postgres:///uplink?host=/tmp",
            ),
            ("postgres://db", "postgres://db"),
        ];
        for (url, want) in cases {
            let u = DatabaseUrl::new(url).unwrap();
            assert_eq!(u.redacted(), want, "{url}");
            assert_eq!(u.to_string(), want);
            assert!(!format!("{u:?}").contains("s3cret"), "{url}");
            assert_eq!(u.expose(), url);
        }
    }

    #[test]
    fn other_schemes_are_refused_without_echoing_a_password() {
        for url in ["mysql://u:s3cret@db/x", "/var/lib/uplink", "sqlite://x.db"] {
            let err = DatabaseUrl::new(url).unwrap_err().to_string();
            assert!(
                err.contains("not a PostgreSQL URL") && err.contains("--data-dir"),
                "{err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
