//! Plain, JSON and CSV renderings of endpoints and prefixes: for people, scripts and
//! spreadsheets. (Squid, PAC and firewall syntaxes are in their own modules.)
//!
//! Every function returns the whole output, ending in a newline, so that golden tests compare
//! bytes and the binary writes once.

use crate::catalog::Endpoint;
use crate::servicetags::Selection;

/// One host or URL pattern per line, each once, in catalog order.
pub fn urls_plain(endpoints: &[Endpoint]) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    for e in endpoints {
        if seen.insert(e.pattern.as_str()) {
            out.push_str(&e.pattern);
            out.push('\n');
        }
    }
    out
}

/// An array of `{"host", "port", "pattern", "purpose", "source", "region", "issuers"}`.
pub fn urls_json(endpoints: &[Endpoint]) -> String {
    let mut s = serde_json::to_string_pretty(endpoints).expect("endpoints serialize");
    s.push('\n');
    s
}

/// RFC 4180 CSV with a header row; issuers are joined with "; ".
pub fn urls_csv(endpoints: &[Endpoint]) -> String {
    let mut out = String::from("host,port,pattern,purpose,source,region,issuers\r\n");
    for e in endpoints {
        let row = [
            e.host.clone(),
            e.port.to_string(),
            e.pattern.clone(),
            e.purpose.to_string(),
            e.source.clone(),
            e.region.clone().unwrap_or_default(),
            e.issuers.join("; "),
        ];
        push_csv_row(&mut out, &row);
    }
    out
}

/// One prefix per line.
pub fn prefixes_plain(s: &Selection) -> String {
    let mut out = String::with_capacity(s.prefixes.len() * 20);
    for p in &s.prefixes {
        out.push_str(&p.to_string());
        out.push('\n');
    }
    out
}

/// The selection with the numbers that identify the data: `{"tag", "cloud", "change_number",
/// "tag_change_number", "region", "family", "aggregated", "prefixes"}`.
pub fn prefixes_json(s: &Selection) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        tag: &'a str,
        cloud: &'a str,
        change_number: u64,
        tag_change_number: Option<u64>,
        region: &'a str,
        family: Option<&'static str>,
        aggregated: bool,
        prefixes: &'a [crate::cidr::Prefix],
    }
    let out = Out {
        tag: &s.tag,
        cloud: &s.cloud,
        change_number: s.change_number,
        tag_change_number: s.tag_change_number,
        region: &s.region,
        family: s.family.map(|f| f.name()),
        aggregated: s.aggregated,
        prefixes: &s.prefixes,
    };
    let mut text = serde_json::to_string_pretty(&out).expect("selection serializes");
    text.push('\n');
    text
}

/// `prefix,family,first,last` with a header row.
pub fn prefixes_csv(s: &Selection) -> String {
    let mut out = String::from("prefix,family,first,last\r\n");
    for p in &s.prefixes {
        push_csv_row(
            &mut out,
            &[
                p.to_string(),
                p.family().to_string(),
                p.first_text(),
                p.last_text(),
            ],
        );
    }
    out
}

fn push_csv_row(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Purpose;

    fn ep(pattern: &str, port: u16, source: &str) -> Endpoint {
        Endpoint {
            host: pattern.split('/').next().unwrap().into(),
            port,
            pattern: pattern.into(),
            purpose: Purpose::Revocation,
            source: source.into(),
            region: None,
            issuers: vec![],
        }
    }

    #[test]
    fn plain_lists_each_pattern_once() {
        let eps = [
            ep("crl.microsoft.com", 80, "a"),
            ep("www.microsoft.com/pkiops/*", 80, "a"),
            ep("crl.microsoft.com", 443, "b"),
        ];
        assert_eq!(
            urls_plain(&eps),
            "crl.microsoft.com\nwww.microsoft.com/pkiops/*\n"
        );
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut e = ep("a.example", 443, "Docs, \"Configure\" page");
        e.issuers = vec!["CA 1".into(), "CA 2".into()];
        e.region = Some("eu".into());
        assert_eq!(
            urls_csv(&[e]),
            "host,port,pattern,purpose,source,region,issuers\r\na.example,443,a.example,revocation,\"Docs, \"\"Configure\"\" page\",eu,CA 1; CA 2\r\n"
        );
    }

    #[test]
    fn json_has_the_documented_keys() {
        let v: serde_json::Value =
            serde_json::from_str(&urls_json(&[ep("a.example/x/*", 80, "s")])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"host": "a.example", "port": 80, "pattern": "a.example/x/*",
                "purpose": "revocation", "source": "s", "region": null, "issuers": []}])
        );
    }
}
