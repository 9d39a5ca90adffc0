//! `Proxy-Authenticate` values come from the network: the challenge parser must never panic, and
//! what it accepts must drive the authenticator without panicking either.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Several header values: split the input on newlines, as several Proxy-Authenticate lines.
    let (challenges, _) = uplink_proxyauth::challenge::parse_all(text.split('\n'));
    let mut auth = uplink_proxyauth::Authenticator::new(
        Some(("CONTOSO\\fuzz".to_owned(), "pw".to_owned().into())),
        "sensor.example:443",
        uplink_proxyauth::Options::default(),
    );
    // Answer the same challenges for more rounds than the bound: it must end in an error.
    for _ in 0..8 {
        if auth.respond(&challenges).is_err() {
            return;
        }
    }
    panic!("the authenticator answered more rounds than its bound");
});
