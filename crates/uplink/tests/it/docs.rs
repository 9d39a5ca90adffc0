//! The documentation's commands, run as written: every `uplink winproxy …` and `uplink
//! allowlist …` line of README.md and docs/*.md (the tools that need no service) runs in a
//! directory holding the files it names — a Windows export, service-tags files, backups — made
//! from the shared fixtures, through `sh -c`, so its pipes and redirections count too. Every
//! line must exit as documented. (That each documented command parses with this build's flags
//! is the binary's unit test `every_documented_command_parses`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{stderr, UPLINK};

#[path = "../../src/doccmds.rs"]
#[allow(dead_code)]
mod doccmds;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    repo().join("../shared/fixtures")
}

/// Every fenced `uplink` command of README.md and docs/*.md, with the file it is in.
fn documented() -> Vec<(String, String)> {
    let mut files = vec![repo().join("README.md")];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for c in doccmds::doc_commands(&text) {
            out.push((name.clone(), c));
        }
    }
    out
}

/// A .reg file's text (UTF-16 with a BOM, as regedit writes, or UTF-8).
fn reg_text(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xff, 0xfe]) {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    } else {
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

fn utf16_reg(text: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

/// The files the documented commands name, in `dir`.
fn provide_files(dir: &Path) {
    let winproxy = fixtures().join("winproxy/reg");
    std::fs::copy(
        winproxy.join("ProxySettings-02.reg"),
        dir.join("user-export.reg"),
    )
    .unwrap();
    // One export holding both service accounts' keys, as `reg export` of HKU would give.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/winproxy");
    let b18 = reg_text(&std::fs::read(golden.join("backup-18.reg")).unwrap());
    let b19 = reg_text(&std::fs::read(golden.join("backup-19.reg")).unwrap());
    let b19_body = b19
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    std::fs::write(
        dir.join("current-services.reg"),
        utf16_reg(&format!("{}{b19_body}", b18.trim_end_matches('\u{feff}'))),
    )
    .unwrap();
    // This week's service tags, and last week's: the same with one prefix fewer in the tag the
    // docs diff, so `diff` has a change to report.
    let tags = fixtures().join("servicetags/ServiceTags_Public_cn370_20250911.json");
    std::fs::copy(&tags, dir.join("ServiceTags_Public.json")).unwrap();
    std::fs::copy(&tags, dir.join("today.json")).unwrap();
    let mut older: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tags).unwrap()).unwrap();
    for v in older["values"].as_array_mut().unwrap() {
        if v["name"] == "AzureAdvancedThreatProtection" {
            v["properties"]["addressPrefixes"]
                .as_array_mut()
                .unwrap()
                .remove(0);
        }
    }
    std::fs::write(dir.join("last-week.json"), older.to_string()).unwrap();
}

#[test]
fn the_documented_offline_commands_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    provide_files(dir.path());
    let bin = Path::new(UPLINK).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = Vec::new();
    for (file, line) in documented() {
        let Some(words) = doccmds::uplink_words(&line) else {
            continue;
        };
        let tool = words.get(1).map(String::as_str);
        if !matches!(tool, Some("winproxy" | "allowlist"))
            || words.get(2).is_some_and(|w| w == "verify")
        {
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", &line])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        // `allowlist diff` exits 1 when the tag changed, as the docs say it does here.
        let want = if words.get(2).is_some_and(|w| w == "diff") {
            1
        } else {
            0
        };
        assert_eq!(
            out.status.code(),
            Some(want),
            "{file}: `{line}` exited {:?}: {}",
            out.status.code(),
            stderr(&out)
        );
        ran.push(line);
    }
    // README's Windows and allow-list sections: four winproxy and four allowlist lines.
    assert!(ran.len() >= 8, "only these ran: {ran:#?}");
    for f in ["services.reg", "restore.reg", "winhttp.reg", "policy.reg"] {
        assert!(
            dir.path().join(f).is_file(),
            "the documented command did not write {f}"
        );
    }
}
