//! NTLMv2 messages (MS-NLMP) for HTTP proxy authentication, as pure functions.
//!
//! The handshake is three messages on one connection: the client's NEGOTIATE (type 1), the
//! proxy's CHALLENGE (type 2, in a 407), the client's AUTHENTICATE (type 3). Only NTLMv2
//! responses are produced: NTLMv1 and LM are broken and disabled on any current domain.
//!
//! Not done here: signing and sealing (HTTP authentication needs neither, so no key exchange is
//! negotiated), the MIC (optional when the client sends no MsvAvFlags), and NTLM inside SPNEGO.

use hmac::{Hmac, Mac};
use md4::{Digest as _, Md4};
use md5::Md5;
use secrecy::zeroize::Zeroizing;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
pub const NEGOTIATE_OEM: u32 = 0x0000_0002;
pub const REQUEST_TARGET: u32 = 0x0000_0004;
pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
pub const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
pub const NEGOTIATE_128: u32 = 0x2000_0000;
pub const NEGOTIATE_56: u32 = 0x8000_0000;

/// The flags this client asks for and accepts. NEGOTIATE_TARGET_INFO is the server's to set (as
/// curl does, it is not requested): servers that echo the client's flags without filling the
/// field, like Squid's ntlm_fake_auth, would otherwise claim a target info they do not send.
pub const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | NEGOTIATE_OEM
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_128
    | NEGOTIATE_56;

/// AV pair ids (MS-NLMP 2.2.2.1) that matter here.
const AV_EOL: u16 = 0;
const AV_TIMESTAMP: u16 = 7;

/// A proxy user split the way NTLM wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub domain: String,
}

impl Account {
    /// `DOMAIN\user` → (user, DOMAIN); `user@domain.example` (a UPN) → the whole UPN as the user
    /// and an empty domain, as Windows sends it; `user` → (user, "").
    pub fn parse(given: &str) -> Account {
        match given.split_once('\\') {
            Some((domain, user)) => Account {
                user: user.to_owned(),
                domain: domain.to_owned(),
            },
            None => Account {
                user: given.to_owned(),
                domain: String::new(),
            },
        }
    }
}

/// Why a CHALLENGE message was refused. Never contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    #[error("the NTLM challenge is not base64")]
    Base64,
    #[error("the NTLM challenge is {0} bytes, shorter than its 32-byte header")]
    Short(usize),
    #[error("the NTLM challenge does not start with the NTLMSSP signature")]
    Signature,
    #[error("the NTLM message is of type {0}, not a CHALLENGE (2)")]
    Type(u32),
    #[error("the NTLM challenge's {0} field points outside the message")]
    Field(&'static str),
}

/// The parts of a CHALLENGE message the response needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeMessage {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    pub target_info: Vec<u8>,
    /// MsvAvTimestamp from the target info, if the server sent one.
    pub timestamp: Option<[u8; 8]>,
}

/// The NEGOTIATE message: flags only, no domain or workstation (they are optional).
pub fn negotiate() -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0u8; 16]); // empty domain and workstation fields
    m
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a CHALLENGE message (MS-NLMP 2.2.1.2). Every offset is checked.
pub fn parse_challenge(m: &[u8]) -> Result<ChallengeMessage, NtlmError> {
    if m.len() < 32 {
        return Err(NtlmError::Short(m.len()));
    }
    if &m[..8] != SIGNATURE {
        return Err(NtlmError::Signature);
    }
    let ty = u32_at(m, 8);
    if ty != 2 {
        return Err(NtlmError::Type(ty));
    }
    let flags = u32_at(m, 20);
    let mut server_challenge = [0u8; 8];
    server_challenge.copy_from_slice(&m[24..32]);
    // TargetInfoFields mean something only with NEGOTIATE_TARGET_INFO (MS-NLMP 2.2.1.2): older
    // servers (Squid's ntlm_fake_auth among them) send a shorter header with other bytes there.
    let target_info = if flags & NEGOTIATE_TARGET_INFO != 0 && m.len() >= 48 {
        let len = usize::from(u16_at(m, 40));
        let off = u32_at(m, 44) as usize;
        m.get(off..off.saturating_add(len))
            .ok_or(NtlmError::Field("TargetInfo"))?
            .to_vec()
    } else {
        Vec::new()
    };
    let timestamp = av_pairs(&target_info)
        .find(|(id, v)| *id == AV_TIMESTAMP && v.len() == 8)
        .map(|(_, v)| {
            let mut t = [0u8; 8];
            t.copy_from_slice(v);
            t
        });
    Ok(ChallengeMessage {
        flags,
        server_challenge,
        target_info,
        timestamp,
    })
}

/// The AV pairs of a target info block, stopping at EOL or at the first malformed pair.
fn av_pairs(info: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let head = info.get(at..at + 4)?;
        let id = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        if id == AV_EOL {
            return None;
        }
        let value = info.get(at + 4..at + 4 + len)?;
        at += 4 + len;
        Some((id, value))
    })
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv2 (MS-NLMP 3.3.2): HMAC-MD5 keyed with MD4(UTF-16LE(password)) over
/// UTF-16LE(UPPER(user) + domain).
pub fn ntowf_v2(user: &str, domain: &str, password: &str) -> Zeroizing<[u8; 16]> {
    let pw = Zeroizing::new(utf16le(password));
    let nt_hash: Zeroizing<[u8; 16]> = Zeroizing::new(Md4::digest(&*pw).into());
    let who = utf16le(&format!("{}{domain}", user.to_uppercase()));
    Zeroizing::new(hmac_md5(&*nt_hash, &[&who]))
}

/// The NTLMv2 responses (MS-NLMP 3.3.2) for a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responses {
    /// NTProofStr followed by the client's blob ("temp").
    pub nt: Vec<u8>,
    /// LMv2, or 24 zero bytes when the server sent a timestamp (MS-NLMP 3.1.5.1.2).
    pub lm: Vec<u8>,
}

/// Computes the responses. `time` is the FILETIME to put in the blob when the server sent none.
pub fn responses(
    key: &[u8; 16],
    challenge: &ChallengeMessage,
    client_challenge: [u8; 8],
    time: [u8; 8],
) -> Responses {
    let time = challenge.timestamp.unwrap_or(time);
    let mut temp = Vec::with_capacity(28 + challenge.target_info.len() + 4);
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(&time);
    temp.extend_from_slice(&client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(&challenge.target_info);
    temp.extend_from_slice(&[0; 4]);
    let proof = hmac_md5(key, &[&challenge.server_challenge, &temp]);
    let mut nt = proof.to_vec();
    nt.extend_from_slice(&temp);
    let lm = if challenge.timestamp.is_some() {
        vec![0; 24]
    } else {
        let mut lm = hmac_md5(key, &[&challenge.server_challenge, &client_challenge]).to_vec();
        lm.extend_from_slice(&client_challenge);
        lm
    };
    Responses { nt, lm }
}

/// The AUTHENTICATE message (MS-NLMP 2.2.1.3), without Version or MIC.
pub fn authenticate(
    account: &Account,
    workstation: &str,
    challenge: &ChallengeMessage,
    r: &Responses,
) -> Vec<u8> {
    let unicode = challenge.flags & NEGOTIATE_UNICODE != 0;
    let text = |s: &str| {
        if unicode {
            utf16le(s)
        } else {
            s.as_bytes().to_vec()
        }
    };
    let flags = (challenge.flags & CLIENT_FLAGS)
        | if unicode {
            NEGOTIATE_UNICODE
        } else {
            NEGOTIATE_OEM
        };
    let flags = flags & !if unicode { NEGOTIATE_OEM } else { 0 };
    const HEADER: usize = 64;
    let fields: [Vec<u8>; 6] = [
        r.lm.clone(),
        r.nt.clone(),
        text(&account.domain),
        text(&account.user),
        text(workstation),
        Vec::new(), // EncryptedRandomSessionKey: no key exchange
    ];
    let mut m = Vec::with_capacity(HEADER + fields.iter().map(Vec::len).sum::<usize>());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = HEADER;
    for f in &fields {
        // Field lengths are bounded by the proxy's target info (< 64 KiB) and our own strings.
        let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += f.len();
    }
    m.extend_from_slice(&flags.to_le_bytes());
    debug_assert_eq!(m.len(), HEADER);
    for f in &fields {
        m.extend_from_slice(f);
    }
    m
}

/// FILETIME (100 ns since 1601-01-01) for a time since the Unix epoch.
pub fn filetime(since_unix_epoch: std::time::Duration) -> [u8; 8] {
    const EPOCH_DIFF_SECS: u64 = 11_644_473_600;
    let ticks = (since_unix_epoch.as_secs() + EPOCH_DIFF_SECS) * 10_000_000
        + u64::from(since_unix_epoch.subsec_nanos() / 100);
    ticks.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// MS-NLMP 4.2.4.3: the CHALLENGE message of the NTLMv2 example.
    const CHALLENGE: &str = "4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef00000000000000002400240044000000060070170000000f53006500720076006500720002000c0044006f006d00610069006e0001000c0053006500720076006500720000000000";

    #[test]
    fn ms_nlmp_4_2_4_ntlmv2_vectors() {
        // 4.2.4.1.1
        let key = ntowf_v2("User", "Domain", "Password");
        assert_eq!(hex::encode(*key), "0c868a403bfd7a93a3001ef22ef02e3f");
        // The user name is upper-cased, the domain is not.
        assert_eq!(*ntowf_v2("user", "Domain", "Password"), *key);
        assert_ne!(*ntowf_v2("User", "DOMAIN", "Password"), *key);

        let c = parse_challenge(&unhex(CHALLENGE)).unwrap();
        assert_eq!(c.flags, 0xe28a8233);
        assert_eq!(
            c.server_challenge,
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        assert_eq!(
            c.target_info,
            unhex("02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000")
        );
        assert_eq!(c.timestamp, None);

        let r = responses(&key, &c, [0xaa; 8], [0; 8]);
        // 4.2.4.2.1 LMv2
        assert_eq!(
            hex::encode(&r.lm),
            "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
        );
        // 4.2.4.2.2 NTProofStr, then the blob ("temp") of 4.2.4.1.3
        assert_eq!(hex::encode(&r.nt[..16]), "68cd0ab851e51c96aabc927bebef6a1c");
        assert_eq!(
            hex::encode(&r.nt[16..]),
            format!(
                "0101000000000000{}{}00000000{}00000000",
                "0000000000000000",
                "aaaaaaaaaaaaaaaa",
                hex::encode(&c.target_info)
            )
        );
        // 4.2.4.1.2 SessionBaseKey = HMAC_MD5(NTOWFv2, NTProofStr)
        assert_eq!(
            hex::encode(hmac_md5(&*key, &[&r.nt[..16]])),
            "8de40ccadbc14a82f15cb0ad0de95ca3"
        );
    }

    #[test]
    fn authenticate_message_layout() {
        let c = parse_challenge(&unhex(CHALLENGE)).unwrap();
        let account = Account::parse("Domain\\User");
        let key = ntowf_v2(&account.user, &account.domain, "Password");
        let r = responses(&key, &c, [0xaa; 8], [0; 8]);
        let m = authenticate(&account, "COMPUTER", &c, &r);
        assert_eq!(&m[..8], SIGNATURE);
        assert_eq!(u32_at(&m, 8), 3);
        let field = |at: usize| {
            let len = usize::from(u16_at(&m, at));
            assert_eq!(u16_at(&m, at + 2) as usize, len, "MaxLen equals Len");
            let off = u32_at(&m, at + 4) as usize;
            m[off..off + len].to_vec()
        };
        assert_eq!(field(12), r.lm);
        assert_eq!(field(20), r.nt);
        assert_eq!(field(28), utf16le("Domain"));
        assert_eq!(field(36), utf16le("User"));
        assert_eq!(field(44), utf16le("COMPUTER"));
        assert!(field(52).is_empty());
        let flags = u32_at(&m, 60);
        assert_eq!(flags & NEGOTIATE_UNICODE, NEGOTIATE_UNICODE);
        assert_eq!(flags & NEGOTIATE_OEM, 0);
        assert_eq!(flags & 0x4000_0000, 0, "no key exchange is claimed");
        // The payload starts right after the 64-byte header and is exactly the fields.
        assert_eq!(u32_at(&m, 16), 64);
        assert_eq!(m.len(), 64 + 24 + r.nt.len() + 12 + 8 + 16);
    }

    #[test]
    fn negotiate_message() {
        let m = negotiate();
        assert_eq!(m.len(), 32);
        assert_eq!(&m[..8], SIGNATURE);
        assert_eq!(u32_at(&m, 8), 1);
        assert_eq!(u32_at(&m, 12), CLIENT_FLAGS);
        assert_eq!(CLIENT_FLAGS & NEGOTIATE_NTLM, NEGOTIATE_NTLM);
    }

    #[test]
    fn server_timestamp_is_used_and_lm_is_zero() {
        let mut info = Vec::new();
        info.extend_from_slice(&AV_TIMESTAMP.to_le_bytes());
        info.extend_from_slice(&8u16.to_le_bytes());
        info.extend_from_slice(&[9; 8]);
        info.extend_from_slice(&[0; 4]);
        let mut m = unhex(&CHALLENGE[..96]); // the 48-byte header
        m[40..42].copy_from_slice(&(info.len() as u16).to_le_bytes());
        m[42..44].copy_from_slice(&(info.len() as u16).to_le_bytes());
        m[44..48].copy_from_slice(&48u32.to_le_bytes());
        m.extend_from_slice(&info);
        let c = parse_challenge(&m).unwrap();
        assert_eq!(c.timestamp, Some([9; 8]));
        let r = responses(&ntowf_v2("u", "d", "p"), &c, [1; 8], [2; 8]);
        assert_eq!(r.lm, vec![0; 24]);
        assert_eq!(&r.nt[24..32], &[9; 8], "the server's time, not ours");
    }

    #[test]
    fn hostile_challenges_are_errors() {
        let good = unhex(CHALLENGE);
        assert_eq!(parse_challenge(&good[..20]), Err(NtlmError::Short(20)));
        let mut bad_sig = good.clone();
        bad_sig[0] = b'X';
        assert_eq!(parse_challenge(&bad_sig), Err(NtlmError::Signature));
        let mut type3 = good.clone();
        type3[8] = 3;
        assert_eq!(parse_challenge(&type3), Err(NtlmError::Type(3)));
        let mut outside = good.clone();
        outside[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_challenge(&outside),
            Err(NtlmError::Field("TargetInfo"))
        );
        // A 32-byte message without target info still parses.
        let mut old = good[..32].to_vec();
        old[20..24].copy_from_slice(&0x0000_8201u32.to_le_bytes());
        assert!(parse_challenge(&old).unwrap().target_info.is_empty());
        // Without NEGOTIATE_TARGET_INFO, bytes 40..48 are not a field (ntlm_fake_auth's form).
        let mut no_flag = good.clone();
        no_flag[20..24].copy_from_slice(&(0xe28a8233u32 & !NEGOTIATE_TARGET_INFO).to_le_bytes());
        no_flag[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_challenge(&no_flag).unwrap().target_info.is_empty());
        // Malformed AV pairs end the walk instead of panicking.
        assert_eq!(av_pairs(&[7, 0, 200, 0, 1]).count(), 0);
    }

    #[test]
    fn accounts() {
        let cases = [
            ("CONTOSO\\proxyuser", "proxyuser", "CONTOSO"),
            ("proxyuser@contoso.com", "proxyuser@contoso.com", ""),
            ("proxyuser", "proxyuser", ""),
        ];
        for (given, user, domain) in cases {
            assert_eq!(
                Account::parse(given),
                Account {
                    user: user.into(),
                    domain: domain.into()
                },
                "{given}"
            );
        }
    }

    #[test]
    fn filetime_epoch() {
        assert_eq!(
            u64::from_le_bytes(filetime(std::time::Duration::ZERO)),
            116_444_736_000_000_000
        );
    }
}
