//! Every real sample in shared/fixtures/winproxy: blobs decode to their documented meaning and
//! re-encode byte for byte; regedit's exports parse, and writing them again gives regedit's bytes.

use std::path::PathBuf;

use uplink_winproxy::{
    effective_proxy, find_proxy_values, ConnectionSettings, Decoded, Kind, RegFile, RegFormat,
    WinHttpSettings,
};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/winproxy/"
    ))
    .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    let p = fixture(rel);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "cannot read the fixture {}: {e}; clone the shared fixtures next to the repository",
            p.display()
        )
    })
}

fn samples() -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_slice(&read("proxy_blob_samples.json")).unwrap();
    let samples = doc["samples"].as_array().unwrap().clone();
    assert_eq!(
        samples.len(),
        15,
        "the sample file changed: review this test"
    );
    samples
}

#[test]
fn every_blob_sample_decodes_to_its_documented_meaning_and_round_trips() {
    for s in samples() {
        let id = s["id"].as_str().unwrap();
        let bytes = hex::decode(s["hex"].as_str().unwrap()).unwrap();
        let want = &s["decoded"];
        assert_eq!(bytes.len() as u64, want["length"].as_u64().unwrap(), "{id}");
        let flag = |name: &str| want["flags_decoded"][name].as_bool().unwrap();
        let flags_want = [
            flag("PROXY_TYPE_DIRECT(0x1)"),
            flag("PROXY_TYPE_PROXY(0x2)"),
            flag("PROXY_TYPE_AUTO_PROXY_URL(0x4)"),
            flag("PROXY_TYPE_AUTO_DETECT(0x8)"),
        ];
        let decoded = Decoded::from_blob(&bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
        let summary = decoded.summary();
        assert_eq!(summary.kind.as_str(), s["kind"].as_str().unwrap(), "{id}");
        assert_eq!(
            summary.version.map(u64::from),
            want["version"].as_u64(),
            "{id}"
        );
        assert_eq!(
            summary.counter.map(u64::from),
            want["counter"].as_u64(),
            "{id}"
        );
        assert_eq!(
            summary.flags_raw.map(u64::from),
            want["flags"].as_u64(),
            "{id}"
        );
        let f = summary.flags;
        assert_eq!(
            [f.direct, f.proxy, f.auto_config_url, f.auto_detect],
            flags_want,
            "{id}"
        );
        assert_eq!(
            summary.proxy_server,
            want["proxy_server"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(
            summary.bypass,
            want["proxy_bypass"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(
            summary.auto_config_url.as_deref(),
            want["auto_config_url"].as_str(),
            "{id}"
        );
        assert_eq!(
            summary.trailing_hex.as_deref(),
            want["trailing_hex"].as_str(),
            "{id}"
        );
        let re_encoded = match &decoded {
            Decoded::WinInet(v) => {
                assert_eq!(ConnectionSettings::decode(&bytes).as_ref(), Ok(v));
                v.encode().unwrap()
            }
            Decoded::WinHttp(v) => {
                assert_eq!(WinHttpSettings::decode(&bytes).as_ref(), Ok(v));
                v.encode().unwrap()
            }
            other => panic!("{id}: a blob decoded as {other:?}"),
        };
        assert_eq!(re_encoded, bytes, "{id}: re-encoding changed the bytes");
    }
}

#[test]
fn meanings_the_sources_state() {
    let by_id = |id: &str| {
        let s = samples()
            .into_iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no sample {id}"));
        Decoded::from_blob(&hex::decode(s["hex"].as_str().unwrap()).unwrap()).unwrap()
    };
    // Microsoft KB 4494447: "Data (for Direct Access or No Proxy)".
    let kb = by_id("ms-support-4494447:direct");
    assert_eq!(kb.kind(), Kind::Winhttp);
    assert!(kb.settings().is_direct());
    // soapffz: "set a 127.0.0.1:80 proxy in IE"; the dial-up connection carries it.
    let nk = by_id("soapffz-blog:Netkeeper").settings();
    assert_eq!(nk.proxy_server.as_deref(), Some("127.0.0.1:80"));
    assert!(nk.bypasses_local());
    assert!(nk.auto_detect);
    let e = nk.proxy_for("https").unwrap().unwrap();
    assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", Some(80)));
    // MatthewCKelly 02: every option on, a proxy with a scheme prefix.
    let all = by_id("MatthewCKelly/ProxySettings-02.reg:DefaultConnectionSettings").settings();
    let e = all.proxy_for("https").unwrap().unwrap();
    assert_eq!(
        (e.scheme.as_deref(), e.host.as_str(), e.port),
        (Some("http"), "127.20.20.20", Some(3128))
    );
    assert_eq!(all.bypass, ["home.crash.co.nz", "fh.local", "<local>"]);
    assert_eq!(
        all.pac_url.as_deref(),
        Some("http://webdefence.global.blackspider.com:8082/proxy.pac?p=b9gwgvhs")
    );
    // MatthewCKelly 06: the proxy flag is off, but the bypass list stays in the value.
    let six = by_id("MatthewCKelly/ProxySettings-06.reg:DefaultConnectionSettings");
    assert_eq!(six.summary().bypass, "home.crash.co.nz;fh.local;<local>");
    assert_eq!(six.settings().proxy_server, None);
    assert!(six.settings().bypass.is_empty());
    assert!(six.settings().auto_detect);
}

const EXPORTS: [&str; 6] = [
    "reg/ProxySettings-01.reg",
    "reg/ProxySettings-02.reg",
    "reg/ProxySettings-03.reg",
    "reg/ProxySettings-04.reg",
    "reg/ProxySettings-05.reg",
    "reg/ProxySettings-06.reg",
];

#[test]
fn regedit_exports_parse_to_the_sample_blobs() {
    let samples = samples();
    for rel in EXPORTS {
        let file = RegFile::parse(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(file.format, RegFormat::V5, "{rel}");
        let found: Vec<_> = find_proxy_values(&file)
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{rel}: {e}")))
            .collect();
        assert_eq!(found.len(), 2, "{rel}");
        let stem = rel.trim_start_matches("reg/");
        for f in &found {
            let name = f.value_name.as_deref().unwrap();
            let id = format!("MatthewCKelly/{stem}:{name}");
            let sample = samples
                .iter()
                .find(|s| s["id"] == id.as_str())
                .unwrap_or_else(|| panic!("no sample {id}"));
            assert_eq!(f.key.to_string(), sample["registry_key"].as_str().unwrap());
            let Decoded::WinInet(v) = &f.decoded else {
                panic!("{id}: {:?}", f.decoded)
            };
            assert_eq!(
                hex::encode(v.encode().unwrap()),
                sample["hex"].as_str().unwrap(),
                "{id}"
            );
        }
        // The export names the user's key, so the effective value is its DefaultConnectionSettings.
        let eff = effective_proxy(&file).unwrap().unwrap();
        assert_eq!(
            eff.source.value_name.as_deref(),
            Some("DefaultConnectionSettings")
        );
        assert_eq!(
            eff.ignored.len(),
            0,
            "SavedLegacySettings is never a candidate"
        );
    }
}

#[test]
fn writing_a_regedit_export_again_gives_regedits_bytes() {
    for rel in EXPORTS {
        let original = read(rel);
        let file = RegFile::parse(&original).unwrap();
        let written = file.to_bytes().unwrap();
        if written != original {
            let a = String::from_utf16_lossy(
                &original[2..]
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            );
            let b = RegFile::parse(&original).unwrap().to_text().unwrap();
            panic!("{rel}: written bytes differ\n--- regedit\n{a}\n--- uplink\n{b}");
        }
    }
}

#[test]
fn ansi_export_with_the_string_form() {
    let rel = "reg/marcvanandel_local-dev-env_proxy.reg";
    let file = RegFile::parse(&read(rel)).unwrap();
    // A version 5 header on an ANSI file with LF line ends and a line holding one space.
    assert_eq!(file.format, RegFormat::V5);
    let found: Vec<_> = find_proxy_values(&file)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(
        f.key.to_string(),
        r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Internet Settings"
    );
    assert_eq!(f.value_name, None);
    assert_eq!(
        f.value_names,
        ["ProxyEnable", "ProxyServer", "ProxyOverride"]
    );
    let summary = f.decoded.summary();
    assert_eq!(summary.kind, Kind::InternetSettings);
    assert_eq!(
        (summary.version, summary.counter, summary.trailing_hex),
        (None, None, None)
    );
    assert!(summary.flags.proxy && summary.flags.direct);
    assert!(!summary.flags.auto_config_url && !summary.flags.auto_detect);
    assert_eq!(summary.proxy_server, "www-proxy.cs.kadaster.nl:8082");
    let s = f.decoded.settings();
    assert_eq!(
        s.bypass,
        [
            "*.cs.kadaster.nl",
            "*.so.kadaster.nl",
            "*.in.kadaster.nl",
            "kadaster.local",
            "localhost",
            "<local>"
        ]
    );
    // Converted to the blob Windows would write, and back.
    let Decoded::InternetSettings(is) = &f.decoded else {
        unreachable!()
    };
    let blob = is.to_connection_settings(1).encode().unwrap();
    let back = ConnectionSettings::decode(&blob).unwrap();
    assert_eq!(back.settings(), s);
    assert_eq!(
        back.bypass,
        "*.cs.kadaster.nl;*.so.kadaster.nl;*.in.kadaster.nl;kadaster.local;localhost;<local>"
    );
    let eff = effective_proxy(&file).unwrap().unwrap();
    assert_eq!(eff.source.kind, Kind::InternetSettings);
    assert_eq!(eff.settings, s);
}

#[test]
fn truncating_any_sample_is_an_error_naming_a_field_never_a_panic() {
    for s in samples() {
        let bytes = hex::decode(s["hex"].as_str().unwrap()).unwrap();
        let kind = s["kind"].as_str().unwrap();
        // Cutting inside the header or the strings must fail; cutting only trailing bytes
        // leaves a shorter but valid value.
        let trailing = s["decoded"]["trailing_length"].as_u64().unwrap() as usize;
        for cut in 0..bytes.len() - trailing {
            let r = if kind == "winhttp" {
                WinHttpSettings::decode(&bytes[..cut]).map(|_| ())
            } else {
                ConnectionSettings::decode(&bytes[..cut]).map(|_| ())
            };
            let e = r.expect_err("a cut value decoded");
            assert!(
                e.offset() <= cut,
                "{}: cut at {cut}: offset {} is past the end: {e}",
                s["id"],
                e.offset()
            );
            assert!(e.to_string().contains(e.field().name()), "{e}");
        }
    }
}
