//! The console's static files, compiled into the binary and served under [`PREFIX`]: the
//! stylesheet and the one script (the sensors table's auto-refresh). Separate files, never
//! inline, so the Content-Security-Policy forbids inline code.

/// Where the assets are served.
pub const PREFIX: &str = "/static/";

/// The asset at `path` (after [`PREFIX`]): its bytes and content type.
pub fn get(path: &str) -> Option<(&'static [u8], &'static str)> {
    match path {
        "console.css" => Some((
            include_bytes!("../static/console.css"),
            "text/css; charset=utf-8",
        )),
        "console.js" => Some((
            include_bytes!("../static/console.js"),
            "text/javascript; charset=utf-8",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn assets_are_found_by_name_only() {
        assert!(super::get("console.css").is_some());
        assert!(super::get("console.js")
            .unwrap()
            .1
            .starts_with("text/javascript"));
        assert!(super::get("../Cargo.toml").is_none());
        assert!(super::get("").is_none());
    }
}
