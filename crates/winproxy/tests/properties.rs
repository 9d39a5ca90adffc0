//! Properties over arbitrary inputs: encode then decode is the identity, decoding never panics
//! and what decodes re-encodes to the same bytes, and .reg files survive writing and reading.

use proptest::prelude::*;

use uplink_winproxy::inet_settings::InternetSettings;
use uplink_winproxy::regfile::{RegKey, WriteError};
use uplink_winproxy::{
    ConnectionSettings, Decoded, Flags, Hive, KeyPath, ProxySettings, RegData, RegFile, RegFormat,
    RegValue, WinHttpSettings,
};

fn ascii(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..0x80, 0..max)
        .prop_map(|b| b.into_iter().map(char::from).collect())
}

fn wininet() -> impl Strategy<Value = ConnectionSettings> {
    (
        prop_oneof![Just(0x46u32), Just(0x3c)],
        any::<u32>(),
        any::<u32>(),
        ascii(80),
        ascii(80),
        ascii(80),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(
            |(version, counter, flags, proxy_server, bypass, auto_config_url, trailing)| {
                ConnectionSettings {
                    version,
                    counter,
                    flags: Flags(flags),
                    proxy_server,
                    bypass,
                    auto_config_url,
                    trailing,
                }
            },
        )
}

fn winhttp() -> impl Strategy<Value = WinHttpSettings> {
    (
        prop_oneof![Just(0x18u32), Just(0x28)],
        any::<u32>(),
        any::<u32>(),
        ascii(80),
        ascii(80),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(
            |(magic, counter, flags, proxy_server, bypass, trailing)| WinHttpSettings {
                magic,
                counter,
                flags: Flags(flags),
                proxy_server,
                bypass,
                trailing,
            },
        )
}

const HOST: &str = "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,3}";

/// Settings as a person would write them: proxies, bypass patterns, a PAC URL.
fn settings() -> impl Strategy<Value = ProxySettings> {
    let entry = (
        prop::option::of(prop_oneof![Just("http"), Just("https"), Just("socks")]),
        HOST,
        1u16..,
    )
        .prop_map(|(p, h, port)| match p {
            Some(p) => format!("{p}={h}:{port}"),
            None => format!("{h}:{port}"),
        });
    (
        prop::option::of(proptest::collection::vec(entry, 1..4).prop_map(|v| v.join(";"))),
        proptest::collection::vec(
            prop_oneof![
                Just("<local>".to_owned()),
                HOST.prop_map(|h| format!("*.{h}"))
            ],
            0..5,
        ),
        prop::option::of(HOST.prop_map(|h| format!("http://{h}/proxy.pac"))),
        any::<bool>(),
    )
        .prop_map(
            |(proxy_server, bypass, pac_url, auto_detect)| ProxySettings {
                // Without a manual proxy there is no bypass list in the meaning.
                bypass: if proxy_server.is_some() {
                    bypass
                } else {
                    Vec::new()
                },
                proxy_server,
                pac_url,
                auto_detect,
            },
        )
}

/// Characters that exercise escaping and the encodings: quotes, backslashes, semicolons,
/// brackets, Latin-1 and Windows-1252 letters, and characters outside both code pages.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            8 => (0x20u8..0x7f).prop_map(char::from),
            1 => prop_oneof![Just('"'), Just('\\'), Just(';'), Just('['), Just(']'), Just('=')],
            1 => prop_oneof![Just('é'), Just('€'), Just('\t'), Just('Ω'), Just('𝄞')],
        ],
        0..max,
    )
    .prop_map(|c| c.into_iter().collect())
}

fn reg_data() -> impl Strategy<Value = RegData> {
    prop_oneof![
        text(40).prop_map(RegData::String),
        any::<u32>().prop_map(RegData::Dword),
        (
            prop_oneof![Just(3u32), 0u32..16, any::<u32>()],
            proptest::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(kind, bytes)| RegData::Hex { kind, bytes }),
        Just(RegData::Delete),
    ]
}

fn key() -> impl Strategy<Value = RegKey> {
    let hive = prop_oneof![
        Just(Hive::ClassesRoot),
        Just(Hive::CurrentUser),
        Just(Hive::LocalMachine),
        Just(Hive::Users),
        Just(Hive::CurrentConfig),
    ];
    // Brackets and semicolons too: a key line ends at its last `]`.
    let component =
        "[A-Za-z0-9._{}\\[\\];-]([A-Za-z0-9._{}\\[\\]; -]{0,12}[A-Za-z0-9._{}\\[\\];-])?";
    (
        hive,
        proptest::collection::vec(component, 0..6),
        any::<bool>(),
        proptest::collection::vec((text(20), reg_data()), 0..6),
    )
        .prop_map(|(hive, components, delete, values)| RegKey {
            path: KeyPath::new(hive, &components.join("\\")),
            delete,
            values: if delete {
                Vec::new()
            } else {
                values
                    .into_iter()
                    .map(|(name, data)| RegValue { name, data })
                    .collect()
            },
        })
}

fn reg_file() -> impl Strategy<Value = RegFile> {
    (
        prop_oneof![Just(RegFormat::V5), Just(RegFormat::Regedit4)],
        proptest::collection::vec(key(), 0..6),
    )
        .prop_map(|(format, keys)| RegFile { format, keys })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wininet_encode_then_decode_is_identity(v in wininet()) {
        let bytes = v.encode().unwrap();
        prop_assert_eq!(ConnectionSettings::decode(&bytes), Ok(v));
    }

    #[test]
    fn winhttp_encode_then_decode_is_identity(v in winhttp()) {
        let bytes = v.encode().unwrap();
        prop_assert_eq!(WinHttpSettings::decode(&bytes), Ok(v));
    }

    #[test]
    fn any_bytes_either_fail_in_range_or_round_trip(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        magic in prop_oneof![Just(0x46u8), Just(0x3c), Just(0x18), Just(0x28), any::<u8>()],
    ) {
        if let Some(b) = bytes.first_mut() {
            *b = magic;
        }
        for n in 1..4.min(bytes.len()) {
            bytes[n] = 0;
        }
        match Decoded::from_blob(&bytes) {
            Ok(Decoded::WinInet(v)) => prop_assert_eq!(v.encode().unwrap(), bytes),
            Ok(Decoded::WinHttp(v)) => prop_assert_eq!(v.encode().unwrap(), bytes),
            Ok(other) => prop_assert!(false, "a blob decoded as {:?}", other),
            Err(e) => prop_assert!(e.offset() <= bytes.len(), "{}", e),
        }
    }

    #[test]
    fn a_new_blob_means_its_settings(s in settings(), counter in any::<u32>()) {
        let cs = ConnectionSettings::new(&s, counter);
        prop_assert_eq!((cs.version, cs.trailing.as_slice()), (0x46, &[0u8; 32][..]));
        let back = ConnectionSettings::decode(&cs.encode().unwrap()).unwrap();
        prop_assert_eq!(back.settings(), s.clone());
        if let Some(p) = &s.proxy_server {
            let http = WinHttpSettings::set(0x28, p, &s.bypass);
            let back = WinHttpSettings::decode(&http.encode().unwrap()).unwrap();
            prop_assert_eq!(back.settings().proxy_server, s.proxy_server.clone());
            prop_assert_eq!(back.settings().bypass, s.bypass.clone());
        }
    }

    #[test]
    fn string_form_and_blob_convert_both_ways(s in settings()) {
        let blob = ConnectionSettings::new(&s, 1);
        let strings = InternetSettings::from_connection_settings(&blob);
        prop_assert_eq!(strings.settings(), s.clone());
        prop_assert_eq!(strings.to_connection_settings(1).settings(), s.clone());
        let reread = InternetSettings::from_values(&strings.to_values()).unwrap().unwrap();
        prop_assert_eq!(reread.settings(), s);
    }

    #[test]
    fn reg_files_survive_writing_and_reading(mut file in reg_file()) {
        let bytes = match file.to_bytes() {
            Ok(b) => b,
            // Characters outside Windows-1252 cannot go into REGEDIT4: version 5 holds them.
            Err(WriteError::NotAnsi { .. }) => {
                file.format = RegFormat::V5;
                file.to_bytes().unwrap()
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let back = RegFile::parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}\n{}", file.to_text().unwrap())))?;
        prop_assert_eq!(back, file);
    }

    #[test]
    fn reg_parser_never_panics(text in "(REGEDIT4|Windows Registry Editor Version 5.00)\n([\\[\\]\"@=\\\\;:,a-fhx0-9 \n-]|hex|dword|HKCU|HKEY_USERS){0,200}") {
        let _ = RegFile::parse_str(&text);
        let _ = RegFile::parse(text.as_bytes());
    }
}
