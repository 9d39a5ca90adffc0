//! What `uplink winproxy decode --reg` and `copy-to-services` say about the values they found:
//! which values a `--value NAME` picks, each found value as text, and each step of a restore.

use crate::procedure::Restore;
use crate::regfile::fold;
use crate::scan::{FoundError, FoundValue};
use crate::settings::Decoded;
use crate::wininet::ConnectionSettings;

/// A value found in a .reg file, decoded or not (see [`crate::find_proxy_values`]).
pub type Found = Result<FoundValue, FoundError>;

/// The value names a found value answers to (several for the Internet Settings strings).
pub fn value_names(found: &Found) -> Vec<String> {
    match found {
        Ok(f) => f.value_names.clone(),
        Err(e) => e.value_name.iter().cloned().collect(),
    }
}

/// The found values `name` picks — compared case-insensitively, as Windows compares value
/// names — or all of them without a name. When `name` picks none: the names present, for the
/// message (repeats in a row listed once).
pub fn select<'a>(all: &'a [Found], name: Option<&str>) -> Result<Vec<&'a Found>, Vec<String>> {
    let picked: Vec<&Found> = match name {
        None => all.iter().collect(),
        Some(want) => {
            let want = fold(want);
            all.iter()
                .filter(|r| value_names(r).iter().any(|n| fold(n) == want))
                .collect()
        }
    };
    if picked.is_empty() {
        let mut present: Vec<String> = all.iter().flat_map(value_names).collect();
        present.dedup();
        return Err(present);
    }
    Ok(picked)
}

/// A found value as `decode --reg` prints it: `[key]`, the value's name (the names, for the
/// string form and the telemetry policy), then what it holds, indented; a blank line after.
pub fn describe(f: &FoundValue) -> String {
    let mut out = format!("[{}]\n", f.key);
    match &f.value_name {
        Some(n) if !matches!(f.decoded, Decoded::TelemetryPolicy(_)) => {
            out.push_str(&format!("\"{n}\"\n"))
        }
        _ => out.push_str(&format!("{}\n", f.value_names.join(", "))),
    }
    out.push_str(&f.decoded.summary().describe("  "));
    out.push('\n');
    out
}

/// What a restore step does, for `copy-to-services`' report.
pub fn restore_step(r: &Restore) -> String {
    match r {
        Restore::Value(b) => match ConnectionSettings::decode(b) {
            Ok(cs) => format!("put back the saved value ({})", cs.settings().meaning()),
            Err(_) => "put back the saved value (which does not decode)".into(),
        },
        Restore::Delete => "delete the value (the backup has the key without it)".into(),
        Restore::DeleteAssumed => {
            "delete the value (no backup covered it; --backup-missing-ok)".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ProxySettings;
    use crate::{find_proxy_values, RegFile};

    const CONN: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";

    fn blob(p: &str) -> Vec<u8> {
        ConnectionSettings::new(
            &ProxySettings {
                proxy_server: Some(p.into()),
                ..Default::default()
            },
            1,
        )
        .encode()
        .unwrap()
    }

    fn reg_hex(b: &[u8]) -> String {
        b.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn found() -> Vec<Found> {
        let text = format!(
            "Windows Registry Editor Version 5.00\n\n\
             [HKEY_CURRENT_USER\\{CONN}]\n\
             \"DefaultConnectionSettings\"=hex:{}\n\
             \"Broken\"=hex:46,00\n\
             [HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings]\n\
             \"ProxyEnable\"=dword:1\n\"ProxyServer\"=\"s:80\"\n\
             [HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\DataCollection]\n\
             \"TelemetryProxyServer\"=\"t:8080\"\n\"DisableEnterpriseAuthProxy\"=dword:1\n",
            reg_hex(&blob("a:1"))
        );
        find_proxy_values(&RegFile::parse_str(&text).unwrap())
    }

    fn names(picked: &[&Found]) -> Vec<Vec<String>> {
        picked.iter().map(|f| value_names(f)).collect()
    }

    #[test]
    fn selecting_by_value_name() {
        let all = found();
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(select(&all, None).unwrap().len(), 4);
        // (name asked for, the names of what it picks)
        for (name, want) in [
            (
                "DefaultConnectionSettings",
                vec![vec!["DefaultConnectionSettings"]],
            ),
            (
                "defaultconnectionsettings",
                vec![vec!["DefaultConnectionSettings"]],
            ),
            ("BROKEN", vec![vec!["Broken"]]),
            // One of the string values picks the whole string form.
            ("proxyserver", vec![vec!["ProxyEnable", "ProxyServer"]]),
        ] {
            let picked = select(&all, Some(name)).unwrap();
            assert_eq!(names(&picked), want, "{name}");
        }
        let present = select(&all, Some("WinHttpSettings")).unwrap_err();
        assert!(
            present.contains(&"DefaultConnectionSettings".to_owned()),
            "{present:?}"
        );
        assert!(present.contains(&"Broken".to_owned()), "{present:?}");
        assert!(
            present.contains(&"TelemetryProxyServer".to_owned()),
            "{present:?}"
        );
        assert_eq!(select(&[], Some("x")).unwrap_err(), Vec::<String>::new());
    }

    #[test]
    fn descriptions_name_the_key_and_value() {
        let all = found();
        let texts: Vec<String> = all
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(describe)
            .collect();
        assert_eq!(texts.len(), 3);
        let wininet = &texts[0];
        assert!(
            wininet.starts_with(&format!(
                "[HKEY_CURRENT_USER\\{CONN}]\n\"DefaultConnectionSettings\"\n  "
            )),
            "{wininet}"
        );
        assert!(wininet.ends_with("\n\n"), "{wininet:?}");
        assert!(wininet.contains("a:1"), "{wininet}");
        // The string form: every value it was read from.
        assert!(
            texts[1].contains("]\nProxyEnable, ProxyServer\n"),
            "{}",
            texts[1]
        );
        // The telemetry policy: its values, not one name.
        assert!(texts[2].contains("]\nTelemetryProxyServer"), "{}", texts[2]);
        assert!(
            !texts[2].contains("\"TelemetryProxyServer\""),
            "{}",
            texts[2]
        );
    }

    #[test]
    fn restore_steps() {
        let saved = restore_step(&Restore::Value(blob("b:2")));
        assert!(saved.starts_with("put back the saved value ("), "{saved}");
        assert!(saved.contains("b:2"), "{saved}");
        assert_eq!(
            restore_step(&Restore::Value(vec![1, 2])),
            "put back the saved value (which does not decode)"
        );
        assert_eq!(
            restore_step(&Restore::Delete),
            "delete the value (the backup has the key without it)"
        );
        assert_eq!(
            restore_step(&Restore::DeleteAssumed),
            "delete the value (no backup covered it; --backup-missing-ok)"
        );
    }
}
