//! The NTLM CHALLENGE message is attacker-controlled bytes: parsing it and building the
//! AUTHENTICATE message from it must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use uplink_proxyauth::ntlm;
    if let Ok(c) = ntlm::parse_challenge(data) {
        let key = ntlm::ntowf_v2("user", "DOMAIN", "pw");
        let r = ntlm::responses(&key, &c, [1; 8], [2; 8]);
        let _ = ntlm::authenticate(&ntlm::Account::parse("DOMAIN\\user"), "", &c, &r);
    }
});
