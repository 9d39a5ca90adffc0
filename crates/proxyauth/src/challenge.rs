//! `Proxy-Authenticate` challenges (RFC 7235 §2.1, §4.3) as a pure parser.
//!
//! ```text
//! Proxy-Authenticate = 1#challenge
//! challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param = token BWS "=" BWS ( token / quoted-string )
//! token68    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! One header value may hold several challenges, and a response may hold several headers: the
//! comma separates both the parameters of a challenge and the challenges themselves, so after a
//! comma the parser looks ahead: `token =` continues the parameters, anything else starts a new
//! challenge. Empty list elements (`,,`) are skipped as RFC 7230 §7 requires.
//!
//! What it deliberately does not do: interpret parameters (that is [`crate::digest`]'s job), or
//! accept unbounded input: at most [`MAX_CHALLENGES`] challenges and [`MAX_PARAMS`] parameters
//! each, so a hostile proxy cannot make it allocate without limit.

/// Most challenges accepted in one header value.
pub const MAX_CHALLENGES: usize = 16;
/// Most parameters accepted in one challenge.
pub const MAX_PARAMS: usize = 32;

/// One challenge: a scheme and either a token68 (NTLM, Negotiate) or parameters (Basic, Digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// As the proxy spelled it; compare with [`Challenge::is`].
    pub scheme: String,
    /// The token68 form (`NTLM TlRMTVNT...`), if that is what followed the scheme.
    pub token68: Option<String>,
    /// Parameters in order, names lower-cased, quoted strings unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// True if this challenge's scheme is `scheme` (case-insensitive, as RFC 7235 says).
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The value of parameter `name` (lower-case), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a header value is not a challenge list. Says where, never echoes the whole value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("Proxy-Authenticate is empty")]
    Empty,
    #[error("Proxy-Authenticate: expected {expected} at byte {at}")]
    Syntax { expected: &'static str, at: usize },
    #[error("Proxy-Authenticate: a quoted string starting at byte {at} is not closed")]
    Unterminated { at: usize },
    #[error("Proxy-Authenticate has more than {MAX_CHALLENGES} challenges")]
    TooManyChallenges,
    #[error("Proxy-Authenticate: a challenge has more than {MAX_PARAMS} parameters")]
    TooManyParams,
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Skips whitespace and empty list elements.
    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        // tchar is ASCII, so the slice is valid UTF-8.
        (self.at > start).then(|| std::str::from_utf8(&self.s[start..self.at]).unwrap_or(""))
    }

    /// A token68 that ends the challenge (followed by the end, or by a comma); otherwise rewinds.
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(is_token68_char) {
            self.at += 1;
        }
        if self.at == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.at += 1;
        }
        let end = self.at;
        self.skip_ws();
        if matches!(self.peek(), None | Some(b',')) {
            Some(std::str::from_utf8(&self.s[start..end]).unwrap_or(""))
        } else {
            self.at = start;
            None
        }
    }

    fn quoted(&mut self) -> Result<String, ChallengeError> {
        let start = self.at;
        self.at += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeError::Unterminated { at: start }),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        None => return Err(ChallengeError::Unterminated { at: start }),
                        Some(b) => out.push(b),
                    }
                    self.at += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
    }

    /// After a comma: is what follows `token BWS "="` (another parameter)?
    fn next_is_param(&self) -> bool {
        let mut probe = Cursor {
            s: self.s,
            at: self.at,
        };
        if probe.token().is_none() {
            return false;
        }
        probe.skip_ws();
        probe.peek() == Some(b'=')
    }
}

/// Parses one `Proxy-Authenticate` header value into its challenges.
pub fn parse(value: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut c = Cursor {
        s: value.as_bytes(),
        at: 0,
    };
    let mut out = Vec::new();
    c.skip_ws_and_commas();
    if c.peek().is_none() {
        return Err(ChallengeError::Empty);
    }
    while c.peek().is_some() {
        if out.len() == MAX_CHALLENGES {
            return Err(ChallengeError::TooManyChallenges);
        }
        let scheme = c.token().ok_or(ChallengeError::Syntax {
            expected: "an authentication scheme",
            at: c.at,
        })?;
        let mut challenge = Challenge {
            scheme: scheme.to_owned(),
            token68: None,
            params: Vec::new(),
        };
        let had_space = matches!(c.peek(), Some(b' ' | b'\t'));
        c.skip_ws();
        match c.peek() {
            None | Some(b',') => {}
            Some(_) if !had_space => {
                return Err(ChallengeError::Syntax {
                    expected: "a space after the scheme",
                    at: c.at,
                })
            }
            Some(_) => {
                if let Some(t) = c.token68() {
                    challenge.token68 = Some(t.to_owned());
                } else {
                    params(&mut c, &mut challenge.params)?;
                }
            }
        }
        out.push(challenge);
        c.skip_ws_and_commas();
    }
    Ok(out)
}

/// `#auth-param`, stopping before a comma that starts the next challenge.
fn params(c: &mut Cursor<'_>, out: &mut Vec<(String, String)>) -> Result<(), ChallengeError> {
    loop {
        let name = c.token().ok_or(ChallengeError::Syntax {
            expected: "a parameter name",
            at: c.at,
        })?;
        c.skip_ws();
        if c.peek() != Some(b'=') {
            return Err(ChallengeError::Syntax {
                expected: "'=' after a parameter name",
                at: c.at,
            });
        }
        c.at += 1;
        c.skip_ws();
        let value = match c.peek() {
            Some(b'"') => c.quoted()?,
            _ => c
                .token()
                .ok_or(ChallengeError::Syntax {
                    expected: "a token or a quoted string",
                    at: c.at,
                })?
                .to_owned(),
        };
        if out.len() == MAX_PARAMS {
            return Err(ChallengeError::TooManyParams);
        }
        out.push((name.to_ascii_lowercase(), value));
        c.skip_ws();
        match c.peek() {
            None => return Ok(()),
            Some(b',') => {
                let before = c.at;
                c.skip_ws_and_commas();
                if c.peek().is_none() {
                    return Ok(());
                }
                if !c.next_is_param() {
                    c.at = before;
                    return Ok(());
                }
            }
            Some(_) => {
                return Err(ChallengeError::Syntax {
                    expected: "',' between parameters",
                    at: c.at,
                })
            }
        }
    }
}

/// Parses every `Proxy-Authenticate` value of a response. A malformed value is skipped (and
/// returned in the second list) so that one broken header does not hide the good ones.
pub fn parse_all<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> (Vec<Challenge>, Vec<ChallengeError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for v in values {
        match parse(v) {
            Ok(cs) => good.extend(cs),
            Err(e) => bad.push(e),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(scheme: &str, token68: Option<&str>, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            token68: token68.map(Into::into),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn valid_values() {
        let cases: Vec<(&str, Vec<Challenge>)> = vec![
            ("Basic realm=\"x\"", vec![ch("Basic", None, &[("realm", "x")])]),
            ("NTLM", vec![ch("NTLM", None, &[])]),
            ("Negotiate", vec![ch("Negotiate", None, &[])]),
            (
                "NTLM TlRMTVNTUAACAAAADAAMADgAAAA=",
                vec![ch("NTLM", Some("TlRMTVNTUAACAAAADAAMADgAAAA="), &[])],
            ),
            ("Negotiate YII=  ", vec![ch("Negotiate", Some("YII="), &[])]),
            (
                "Digest realm=\"squid\", nonce=\"abc,def\", qop=\"auth,auth-int\", stale=FALSE",
                vec![ch(
                    "Digest",
                    None,
                    &[
                        ("realm", "squid"),
                        ("nonce", "abc,def"),
                        ("qop", "auth,auth-int"),
                        ("stale", "FALSE"),
                    ],
                )],
            ),
            // Several challenges in one header, with params and token68 mixed (RFC 7235 §4.1's example).
            (
                "Newauth realm=\"apps\", type=1, title=\"Login to \\\"apps\\\"\", Basic realm=\"simple\"",
                vec![
                    ch(
                        "Newauth",
                        None,
                        &[("realm", "apps"), ("type", "1"), ("title", "Login to \"apps\"")],
                    ),
                    ch("Basic", None, &[("realm", "simple")]),
                ],
            ),
            (
                "Negotiate, NTLM, Basic realm=\"r\"",
                vec![
                    ch("Negotiate", None, &[]),
                    ch("NTLM", None, &[]),
                    ch("Basic", None, &[("realm", "r")]),
                ],
            ),
            (
                "NTLM abc==, Digest Realm = r , NONCE=\"n\"",
                vec![
                    ch("NTLM", Some("abc=="), &[]),
                    ch("Digest", None, &[("realm", "r"), ("nonce", "n")]),
                ],
            ),
            // Empty list elements and stray whitespace are fine.
            (
                " , Basic realm=x,, ,Digest nonce=y ,",
                vec![
                    ch("Basic", None, &[("realm", "x")]),
                    ch("Digest", None, &[("nonce", "y")]),
                ],
            ),
            // A parameter with an empty quoted value.
            ("Basic realm=\"\"", vec![ch("Basic", None, &[("realm", "")])]),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Ok(&want), "{input:?}");
        }
    }

    #[test]
    fn invalid_values() {
        let cases = [
            ("", "empty"),
            (" , ", "empty"),
            ("\"Basic\"", "authentication scheme"),
            ("Basic realm=\"x", "not closed"),
            ("Basic realm=\"x\\", "not closed"),
            ("Basic realm x", "'='"),
            ("Basic a=b, realm=", "token or a quoted string"),
            ("Basic realm=\"x\" charset=y", "','"),
            ("Basic=x", "space after the scheme"),
            ("Digest a=b, =c", "authentication scheme"),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn bounded() {
        let many = vec!["NTLM"; MAX_CHALLENGES + 1].join(", ");
        assert_eq!(parse(&many), Err(ChallengeError::TooManyChallenges));
        assert_eq!(
            parse(&vec!["NTLM"; MAX_CHALLENGES].join(","))
                .unwrap()
                .len(),
            MAX_CHALLENGES
        );
        let params: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        assert_eq!(
            parse(&format!("Digest {}", params.join(", "))),
            Err(ChallengeError::TooManyParams)
        );
    }

    #[test]
    fn several_headers_keep_the_good_ones() {
        let (good, bad) = parse_all(["Basic realm=\"x", "NTLM", "Digest realm=r, Negotiate"]);
        let schemes: Vec<&str> = good.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["NTLM", "Digest", "Negotiate"]);
        assert_eq!(bad.len(), 1);
        assert!(good[0].is("ntlm") && good[1].param("realm") == Some("r"));
    }
}
