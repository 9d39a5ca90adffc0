//! `uplink winproxy` end to end: the real binary on the real samples, its .reg output compared
//! byte for byte with golden files made by hand (see tests/golden/winproxy/README.md).

use crate::support;

use std::path::{Path, PathBuf};

use support::*;

fn fixture(rel: &str) -> String {
    format!(
        "{}/../../../shared/fixtures/winproxy/{rel}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/winproxy")
        .join(name)
}

fn golden_bytes(name: &str) -> Vec<u8> {
    std::fs::read(golden(name)).unwrap_or_else(|e| panic!("golden file {name}: {e}"))
}

/// Asserts a written file equals a golden file, showing both as text when not.
#[track_caller]
fn assert_golden(written: &Path, name: &str) {
    let got = std::fs::read(written).unwrap_or_else(|e| panic!("{}: {e}", written.display()));
    let want = golden_bytes(name);
    if got != want {
        let show = |b: &[u8]| match b.strip_prefix(&[0xff, 0xfe]) {
            Some(u) => String::from_utf16_lossy(
                &u.chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                    .collect::<Vec<_>>(),
            ),
            None => String::from_utf8_lossy(b).into_owned(),
        };
        panic!(
            "{} differs from golden {name}\n--- want ({} bytes)\n{:?}\n--- got ({} bytes)\n{:?}",
            written.display(),
            want.len(),
            show(&want),
            got.len(),
            show(&got)
        );
    }
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exit code")
}

#[track_caller]
fn fails_with(o: std::process::Output, exit: i32, text: &str) {
    assert_eq!(
        code(&o),
        exit,
        "want exit {exit}\nstdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(text),
        "stderr lacks {text:?}:\n{}",
        stderr(&o)
    );
}

fn samples() -> Vec<serde_json::Value> {
    let text = std::fs::read(fixture("proxy_blob_samples.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    doc["samples"].as_array().unwrap().clone()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn p(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// help

#[test]
fn help_teaches_each_command() {
    // (args, texts the help must contain)
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["winproxy", "--help"],
            &[
                "decode",
                "encode",
                "copy-to-services",
                "winhttp",
                "telemetry-policy",
            ],
        ),
        (
            &["winproxy", "decode", "--help"],
            &[
                "Examples:",
                "--format json",
                "\"trailing_hex\"",
                "Exit codes",
            ],
        ),
        (
            &["winproxy", "encode", "--help"],
            &["Examples:", "0x46", "--magic", "0x18", "Exit codes"],
        ),
        (
            &["winproxy", "copy-to-services", "--help"],
            &[
                "reg export",
                "S-1-5-18",
                "S-1-5-19",
                "--restore-out",
                "reg import",
            ],
        ),
        (
            &["winproxy", "winhttp", "set", "--help"],
            &["netsh winhttp set proxy", "--bypass", "Examples:"],
        ),
        (
            &["winproxy", "winhttp", "reset", "--help"],
            &["netsh winhttp reset proxy", "Examples:"],
        ),
        (
            &["winproxy", "telemetry-policy", "--help"],
            &[
                "TelemetryProxyServer",
                "DisableEnterpriseAuthProxy",
                "Example:",
            ],
        ),
    ];
    for (args, texts) in cases {
        let out = ok(uplink(args), "help");
        for t in *texts {
            assert!(out.contains(t), "{args:?} --help lacks {t:?}:\n{out}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// decode

#[test]
fn decode_hex_reports_every_sample_as_documented() {
    for s in samples() {
        let id = s["id"].as_str().unwrap();
        let out = ok(
            uplink(&[
                "winproxy",
                "decode",
                "--hex",
                s["hex"].as_str().unwrap(),
                "--format",
                "json",
            ]),
            id,
        );
        let got = json(&out);
        let want = &s["decoded"];
        assert_eq!(got["kind"], s["kind"], "{id}");
        assert_eq!(got["version"], want["version"], "{id}");
        assert_eq!(got["counter"], want["counter"], "{id}");
        assert_eq!(got["proxy_server"], want["proxy_server"], "{id}");
        assert_eq!(got["bypass"], want["proxy_bypass"], "{id}");
        assert_eq!(got["trailing_hex"], want["trailing_hex"], "{id}");
        if s["kind"] == "winhttp" {
            assert_eq!(got["auto_config_url"], serde_json::Value::Null, "{id}");
        } else {
            assert_eq!(got["auto_config_url"], want["auto_config_url"], "{id}");
        }
        let flags = &want["flags_decoded"];
        assert_eq!(
            got["flags"]["direct"], flags["PROXY_TYPE_DIRECT(0x1)"],
            "{id}"
        );
        assert_eq!(
            got["flags"]["proxy"], flags["PROXY_TYPE_PROXY(0x2)"],
            "{id}"
        );
        assert_eq!(
            got["flags"]["auto_config_url"], flags["PROXY_TYPE_AUTO_PROXY_URL(0x4)"],
            "{id}"
        );
        assert_eq!(
            got["flags"]["auto_detect"], flags["PROXY_TYPE_AUTO_DETECT(0x8)"],
            "{id}"
        );
    }
}

#[test]
fn decode_hex_text_says_what_the_value_means() {
    let out = ok(
        uplink(&[
            "winproxy",
            "decode",
            "--hex",
            "1800000000000000010000000000000000000000",
        ]),
        "decode",
    );
    for t in ["kind:", "winhttp", "magic:", "0x18", "direct connections"] {
        assert!(out.contains(t), "lacks {t:?}:\n{out}");
    }
    // Pasted from a .reg file: `hex:` prefix, commas, continuation backslashes.
    let out = ok(
        uplink(&[
            "winproxy",
            "decode",
            "--hex",
            "hex:46,00,00,00,0a,00,00,00,0b,00,00,00,0c,00,00,00,31,32,37,2e,30,2e,30,2e,31,3a,\\\n  38,30,07,00,00,00,3c,6c,6f,63,61,6c,3e,00,00,00,00",
        ]),
        "decode pasted",
    );
    assert!(out.contains("\"127.0.0.1:80\""), "{out}");
    assert!(
        out.contains("WPAD auto-detection, then proxy 127.0.0.1:80 except <local>"),
        "{out}"
    );
}

#[test]
fn decode_reg_lists_every_proxy_value_with_its_key() {
    let samples = samples();
    for n in 1..=6 {
        let rel = format!("reg/ProxySettings-0{n}.reg");
        let out = ok(
            uplink(&[
                "winproxy",
                "decode",
                "--reg",
                &fixture(&rel),
                "--format",
                "json",
            ]),
            &rel,
        );
        let got = json(&out);
        let entries = got.as_array().unwrap();
        assert_eq!(entries.len(), 2, "{rel}");
        for e in entries {
            let name = e["value_name"].as_str().unwrap();
            let id = format!("MatthewCKelly/ProxySettings-0{n}.reg:{name}");
            let s = samples.iter().find(|s| s["id"] == id.as_str()).unwrap();
            assert_eq!(e["key"], s["registry_key"], "{id}");
            assert_eq!(e["kind"], "wininet", "{id}");
            assert_eq!(e["counter"], s["decoded"]["counter"], "{id}");
            assert_eq!(e["proxy_server"], s["decoded"]["proxy_server"], "{id}");
            assert_eq!(e["bypass"], s["decoded"]["proxy_bypass"], "{id}");
            assert_eq!(
                e["auto_config_url"], s["decoded"]["auto_config_url"],
                "{id}"
            );
        }
    }
    // --value picks one, case-insensitively.
    let out = ok(
        uplink(&[
            "winproxy",
            "decode",
            "--reg",
            &fixture("reg/ProxySettings-03.reg"),
            "--value",
            "defaultconnectionsettings",
            "--format",
            "json",
        ]),
        "--value",
    );
    let got = json(&out);
    assert_eq!(got.as_array().unwrap().len(), 1);
    assert_eq!(got[0]["value_name"], "DefaultConnectionSettings");
}

#[test]
fn decode_reg_reads_the_string_form() {
    let out = ok(
        uplink(&[
            "winproxy",
            "decode",
            "--reg",
            &fixture("reg/marcvanandel_local-dev-env_proxy.reg"),
            "--format",
            "json",
        ]),
        "decode strings",
    );
    let got = json(&out);
    let e = &got[0];
    assert_eq!(e["kind"], "internet-settings");
    assert_eq!(
        e["key"],
        "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings"
    );
    assert_eq!(e["value_name"], serde_json::Value::Null);
    assert_eq!(e["proxy_server"], "www-proxy.cs.kadaster.nl:8082");
    assert_eq!(e["flags"]["proxy"], true);
    assert_eq!(e["effective"]["bypass"][5], "<local>");
    assert_eq!(e["version"], serde_json::Value::Null);
}

#[test]
fn decode_errors_say_where_and_what_to_do() {
    let dir = tmp();
    let broken = p(&dir, "broken.reg");
    std::fs::write(
        &broken,
        "REGEDIT4\r\n\r\n[HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\Connections]\r\n\
         \"DefaultConnectionSettings\"=hex:46,00,00,00,01,00,00,00,03,00,00,00,20,00,00,00,41\r\n\
         \"WinHttpSettings\"=hex:18,00,00,00,00,00,00,00,01,00,00,00,00,00,00,00,00,00,00,00\r\n",
    )
    .unwrap();
    let syntax = p(&dir, "syntax.reg");
    std::fs::write(
        &syntax,
        "REGEDIT4\n\n[HKEY_CURRENT_USER\\X]\n\"A\"=hex:4g\n",
    )
    .unwrap();
    let empty = p(&dir, "empty.reg");
    std::fs::write(
        &empty,
        "REGEDIT4\n\n[HKEY_CURRENT_USER\\X]\n\"A\"=dword:1\n",
    )
    .unwrap();
    fails_with(
        uplink(&["winproxy", "decode", "--hex", "4600000001000000030000000900000041"]),
        1,
        "the proxy server length at offset 12 says 9 bytes, but only 1 bytes remain after offset 16",
    );
    fails_with(
        uplink(&["winproxy", "decode", "--hex", "460000000100"]),
        1,
        "the counter at offset 4 needs 4 bytes, but the value is only 6 bytes long",
    );
    fails_with(
        uplink(&[
            "winproxy",
            "decode",
            "--hex",
            "99000000010000000100000000000000",
        ]),
        1,
        "unknown WinINet version 0x99 at offset 0",
    );
    fails_with(
        uplink(&[
            "winproxy",
            "decode",
            "--hex",
            "460000000100000003000000010000008a",
        ]),
        1,
        "non-ASCII byte 0x8a at offset 16",
    );
    fails_with(
        uplink(&[
            "winproxy", "decode", "--kind", "winhttp", "--hex", "46000000",
        ]),
        1,
        "unknown WinHTTP magic 0x46",
    );
    fails_with(
        uplink(&["winproxy", "decode", "--hex", "xyz"]),
        2,
        "is not a hex digit",
    );
    fails_with(uplink(&["winproxy", "decode"]), 2, "required");
    fails_with(
        uplink(&["winproxy", "decode", "--hex", "00", "--value", "X"]),
        2,
        "cannot be used with '--value",
    );
    fails_with(
        uplink(&["winproxy", "decode", "--reg", "x.reg", "--kind", "winhttp"]),
        2,
        "cannot be used with '--kind",
    );
    fails_with(
        uplink(&["winproxy", "decode", "--reg", &p(&dir, "missing.reg")]),
        1,
        "check the path",
    );
    fails_with(
        uplink(&["winproxy", "decode", "--reg", &syntax]),
        1,
        "line 4: bad byte \"4g\"",
    );
    fails_with(
        uplink(&["winproxy", "decode", "--reg", &empty]),
        1,
        "has no proxy values",
    );
    fails_with(
        uplink(&[
            "winproxy",
            "decode",
            "--reg",
            &fixture("reg/ProxySettings-01.reg"),
            "--value",
            "Nope",
        ]),
        1,
        "its proxy values are: SavedLegacySettings, DefaultConnectionSettings",
    );
    // One bad value among good ones: the good ones are reported, the bad one named, exit 1.
    let o = uplink(&["winproxy", "decode", "--reg", &broken, "--format", "json"]);
    let got = json(&stdout(&o));
    assert_eq!(got[1]["kind"], "winhttp");
    assert!(
        got[0]["error"].as_str().unwrap().contains("says 32 bytes"),
        "{got}"
    );
    fails_with(o, 1, "\"DefaultConnectionSettings\": corrupt WinINet value");
}

// ---------------------------------------------------------------------------------------------
// encode

#[test]
fn encode_writes_what_windows_writes() {
    let dir = tmp();
    let args = [
        "--proxy",
        "proxy.contoso.com:8080",
        "--bypass",
        "*.contoso.com;<local>",
    ];
    let hex = ok(
        uplink(&[&["winproxy", "encode"], &args[..]].concat()),
        "encode hex",
    );
    assert_eq!(hex.as_bytes(), golden_bytes("encode-wininet.hex"));
    let out = p(&dir, "user.reg");
    ok(
        uplink(
            &[
                &["winproxy", "encode", "--format", "reg", "--out", &out],
                &args[..],
            ]
            .concat(),
        ),
        "encode reg",
    );
    assert_golden(Path::new(&out), "encode-wininet.reg");
    // Without --out, the .reg bytes go to standard output.
    let o = uplink(&[&["winproxy", "encode", "--format", "reg"], &args[..]].concat());
    assert!(o.status.success());
    assert_eq!(o.stdout, golden_bytes("encode-wininet.reg"));

    let ansi = p(&dir, "is.reg");
    ok(
        uplink(
            &[
                &[
                    "winproxy",
                    "encode",
                    "--kind",
                    "internet-settings",
                    "--format",
                    "reg",
                    "--ansi",
                    "--out",
                    &ansi,
                ],
                &args[..],
            ]
            .concat(),
        ),
        "encode internet-settings",
    );
    assert_golden(Path::new(&ansi), "encode-internet-settings-ansi.reg");

    // WinHTTP, the older magic: 0x18, 0, flags 3, the proxy, an empty bypass list.
    let hex = ok(
        uplink(&[
            "winproxy",
            "encode",
            "--kind",
            "winhttp",
            "--magic",
            "0x18",
            "--proxy",
            "proxy.contoso.com:8080",
        ]),
        "encode winhttp",
    );
    assert_eq!(
        hex.trim(),
        format!(
            "180000000000000003000000160000007072{}00000000",
            "6f78792e636f6e746f736f2e636f6d3a38303830"
        )
    );
    // Nothing chosen: direct, as netsh winhttp reset proxy (default magic 0x28).
    let hex = ok(
        uplink(&["winproxy", "encode", "--kind", "winhttp"]),
        "encode direct",
    );
    assert_eq!(hex.trim(), "2800000000000000010000000000000000000000");
}

#[test]
fn encode_then_decode_gives_the_settings_back() {
    let hex = ok(
        uplink(&[
            "winproxy",
            "encode",
            "--proxy",
            "http=a.example:80;https=b.example:443",
            "--bypass",
            "10.*, <local>",
            "--pac-url",
            "http://wpad.example/wpad.dat",
            "--auto-detect",
            "--counter",
            "42",
        ]),
        "encode",
    );
    let got = json(&ok(
        uplink(&[
            "winproxy",
            "decode",
            "--hex",
            hex.trim(),
            "--format",
            "json",
        ]),
        "decode",
    ));
    assert_eq!(got["version"], 0x46);
    assert_eq!(got["counter"], 42);
    assert_eq!(got["flags_raw"], 0xf);
    assert_eq!(got["proxy_server"], "http=a.example:80;https=b.example:443");
    assert_eq!(got["bypass"], "10.*;<local>");
    assert_eq!(got["auto_config_url"], "http://wpad.example/wpad.dat");
    assert_eq!(got["trailing_hex"], "00".repeat(32));
}

#[test]
fn encode_refuses_what_windows_cannot_hold() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--kind", "winhttp", "--pac-url", "http://x/p.pac"],
            "hold no PAC URL",
        ),
        (
            &["--kind", "winhttp", "--auto-detect"],
            "hold no PAC URL or auto-detection",
        ),
        (&["--kind", "internet-settings"], "use --format reg"),
        (&["--proxy", "proxy.contoso.com"], "has no port"),
        (&["--proxy", "proxy:99999"], "invalid port \"99999\""),
        (&["--proxy", "pröxy:80"], "invalid host"),
        (&["--bypass", "a"], "--proxy"),
        (
            &["--proxy", "p:1", "--bypass", "a\"b"],
            "not a host pattern",
        ),
        (&["--pac-url", "wpad.dat"], "is not a URL"),
        (&["--magic", "0x18"], "--magic is for --kind winhttp"),
        (
            &["--kind", "winhttp", "--magic", "0x46"],
            "not a WinHTTP magic",
        ),
    ];
    for (args, text) in cases {
        fails_with(uplink(&[&["winproxy", "encode"], *args].concat()), 2, text);
    }
}

// ---------------------------------------------------------------------------------------------
// copy-to-services

#[test]
fn copy_to_services_writes_the_users_value_for_both_accounts() {
    let dir = tmp();
    let out = p(&dir, "services.reg");
    let stdout = ok(
        uplink(&[
            "winproxy",
            "copy-to-services",
            "--from",
            &fixture("reg/ProxySettings-02.reg"),
            "--out",
            &out,
        ]),
        "copy",
    );
    assert_golden(Path::new(&out), "services-from-ProxySettings-02.reg");
    assert!(
        stdout.contains("LocalSystem (HKEY_USERS\\S-1-5-18\\"),
        "{stdout}"
    );
    assert!(stdout.contains("reg import"), "{stdout}");
}

#[test]
fn copy_to_services_with_backup_writes_a_restore_file() {
    let dir = tmp();
    let (out, restore) = (p(&dir, "services.reg"), p(&dir, "restore.reg"));
    let b18 = golden("backup-18.reg");
    let b19 = golden("backup-19.reg");
    let stdout = ok(
        uplink(&[
            "winproxy",
            "copy-to-services",
            "--from",
            &fixture("reg/ProxySettings-02.reg"),
            "--out",
            &out,
            "--backup",
            b18.to_str().unwrap(),
            "--backup",
            b19.to_str().unwrap(),
            "--restore-out",
            &restore,
        ]),
        "copy with backup",
    );
    assert_golden(Path::new(&out), "services-from-ProxySettings-02.reg");
    assert_golden(Path::new(&restore), "restore.reg");
    assert!(
        stdout.contains("LocalService: delete the value"),
        "{stdout}"
    );
    assert!(stdout.contains("to undo, reg import"), "{stdout}");
}

#[test]
fn copy_to_services_writes_nothing_when_a_backup_is_missing() {
    let dir = tmp();
    let (out, restore) = (p(&dir, "services.reg"), p(&dir, "restore.reg"));
    let b18 = golden("backup-18.reg");
    let args = [
        "winproxy",
        "copy-to-services",
        "--from",
        &fixture("reg/ProxySettings-02.reg"),
        "--out",
        &out,
        "--backup",
        b18.to_str().unwrap(),
        "--restore-out",
        &restore,
    ];
    fails_with(
        uplink(&args),
        1,
        "the backup has no values for LocalService (HKU\\S-1-5-19\\",
    );
    assert!(!Path::new(&out).exists() && !Path::new(&restore).exists());
    // Allowed: the restore file deletes LocalService's value.
    ok(
        uplink(&[&args[..], &["--backup-missing-ok"]].concat()),
        "missing ok",
    );
    let got = json(&ok(
        uplink(&["winproxy", "decode", "--reg", &restore, "--format", "json"]),
        "decode restore",
    ));
    let entries = got.as_array().unwrap();
    assert_eq!(entries.len(), 1, "only LocalSystem's value is set: {got}");
    assert!(entries[0]["key"]
        .as_str()
        .unwrap()
        .starts_with("HKEY_USERS\\S-1-5-18\\"));
    assert_eq!(entries[0]["counter"], 3);
}

#[test]
fn copy_to_services_converts_the_string_form() {
    let dir = tmp();
    let out = p(&dir, "services.reg");
    let stdout = ok(
        uplink(&[
            "winproxy",
            "copy-to-services",
            "--from",
            &fixture("reg/marcvanandel_local-dev-env_proxy.reg"),
            "--out",
            &out,
            "--ansi",
        ]),
        "copy strings",
    );
    assert!(stdout.contains("converted"), "{stdout}");
    assert!(std::fs::read(&out)
        .unwrap()
        .starts_with(b"REGEDIT4\r\n\r\n[HKEY_USERS\\S-1-5-18\\"));
    let got = json(&ok(
        uplink(&["winproxy", "decode", "--reg", &out, "--format", "json"]),
        "decode",
    ));
    for e in got.as_array().unwrap() {
        assert_eq!(e["value_name"], "DefaultConnectionSettings");
        assert_eq!(e["proxy_server"], "www-proxy.cs.kadaster.nl:8082");
        assert_eq!(
            e["bypass"],
            "*.cs.kadaster.nl;*.so.kadaster.nl;*.in.kadaster.nl;kadaster.local;localhost;<local>"
        );
        assert_eq!(e["flags_raw"], 3);
        assert_eq!(e["version"], 0x46);
    }
}

#[test]
fn copy_to_services_usage_and_input_errors() {
    let dir = tmp();
    let out = p(&dir, "o.reg");
    let from = fixture("reg/ProxySettings-01.reg");
    fails_with(
        uplink(&[
            "winproxy",
            "copy-to-services",
            "--from",
            &from,
            "--out",
            &out,
            "--backup",
            &from,
        ]),
        2,
        "--restore-out",
    );
    fails_with(
        uplink(&[
            "winproxy",
            "copy-to-services",
            "--from",
            &from,
            "--out",
            &out,
            "--restore-out",
            &out,
        ]),
        2,
        "--backup",
    );
    let no_proxy = p(&dir, "none.reg");
    std::fs::write(
        &no_proxy,
        "REGEDIT4\n[HKEY_CURRENT_USER\\Software\\X]\n\"A\"=dword:1\n",
    )
    .unwrap();
    fails_with(
        uplink(&["winproxy", "copy-to-services", "--from", &no_proxy, "--out", &out]),
        1,
        "reg export \"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\Connections\"",
    );
    assert!(!Path::new(&out).exists());
}

// ---------------------------------------------------------------------------------------------
// winhttp, telemetry-policy

#[test]
fn winhttp_set_and_reset() {
    let dir = tmp();
    // (args, golden)
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "set",
                "proxy.contoso.com:8080",
                "--bypass",
                "localhost;*.contoso.com",
            ],
            "winhttp-set.reg",
        ),
        (
            &[
                "set",
                "proxy.contoso.com:8080",
                "--bypass",
                "localhost, *.contoso.com",
                "--wow64",
            ],
            "winhttp-set-wow64.reg",
        ),
        (&["reset"], "winhttp-reset.reg"),
        (
            &["reset", "--magic", "0x18", "--ansi"],
            "winhttp-reset-0x18-ansi.reg",
        ),
    ];
    for (args, name) in cases {
        let out = p(&dir, name);
        let stdout = ok(
            uplink(&[&["winproxy", "winhttp"], *args, &["--out", &out]].concat()),
            name,
        );
        assert_golden(Path::new(&out), name);
        assert!(stdout.contains("reg import"), "{stdout}");
    }
    fails_with(
        uplink(&[
            "winproxy",
            "winhttp",
            "set",
            "proxy.contoso.com",
            "--out",
            &p(&dir, "x.reg"),
        ]),
        2,
        "has no port",
    );
    fails_with(uplink(&["winproxy", "winhttp", "reset"]), 2, "--out");
}

#[test]
fn telemetry_policy() {
    let dir = tmp();
    let out = p(&dir, "telemetry.reg");
    ok(
        uplink(&[
            "winproxy",
            "telemetry-policy",
            "--proxy",
            "10.0.0.6:8080",
            "--out",
            &out,
        ]),
        "telemetry",
    );
    assert_golden(Path::new(&out), "telemetry-policy.reg");
    let got = json(&ok(
        uplink(&["winproxy", "decode", "--reg", &out, "--format", "json"]),
        "decode",
    ));
    assert_eq!(got[0]["kind"], "telemetry-policy");
    assert_eq!(got[0]["effective"]["proxy_server"], "10.0.0.6:8080");
    for bad in ["http://10.0.0.6:8080", "10.0.0.6", "a:1;b:2", "https=a:1"] {
        fails_with(
            uplink(&[
                "winproxy",
                "telemetry-policy",
                "--proxy",
                bad,
                "--out",
                &out,
            ]),
            2,
            "",
        );
    }
}
