//! The ordered route to `host:port`, computed from its sources: the settings (explicit proxy,
//! mode, fallback, NO_PROXY), the PAC script ([`crate::pac`]), WPAD discovery ([`crate::wpad`])
//! and the captured environment. The proxy engine (`uplink_proxy::explain_with`, pure) decides;
//! this module runs the I/O it needs first (fetching and evaluating scripts, discovery).
//!
//! [`explain`] is the sensor's route (`sensor run`, `sensor status`, `proxy show`, and check's
//! `default` method); the `*_method` functions are the analyzer's other methods, each one source
//! alone, so `uplink check` tests exactly what the sensor would do with that source.
//!
//! Blocking (PAC fetches, DNS inside scripts, discovery): call off an async runtime's threads.

use secrecy::SecretString;
use std::path::Path;
use std::time::Duration;
use uplink_diag::Diagnose;
use uplink_proxy::settings::Unseal;
use uplink_proxy::{
    Candidate, Explanation, Fallback, Inputs, Mode, PacOutcome, Problem, ProxySettings,
};
use uplink_tunnel::Credentials;
use uplink_wpad::{Discovery, Sources};

/// The longest a caller waits for a route to be chosen (a PAC fetch is bounded by
/// [`crate::pac::FETCH_TIMEOUT`], DNS included, a discovery by its own budget; this bounds the
/// sum).
pub const SELECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Where WPAD discovery looks, and where its result is cached (None: discover afresh).
#[derive(Debug, Clone, Copy)]
pub struct WpadPlace<'a> {
    pub sources: &'a Sources,
    pub cache_file: Option<&'a Path>,
}

/// The route to `host:port` under `settings`, with sealed passwords opened by `unseal`, in `pac`
/// mode the script evaluated, in `wpad` and `auto` modes discovery run (or its cached result
/// used) and its script evaluated.
pub fn explain(
    settings: &ProxySettings,
    unseal: &dyn Unseal,
    wpad: WpadPlace<'_>,
    host: &str,
    port: u16,
) -> Explanation {
    let mut inputs = Inputs::default();
    match settings.mode() {
        Mode::Pac => {
            if let Some(pac) = &settings.pac {
                inputs.pac = Some(crate::pac::evaluate(pac, host, port));
            }
        }
        Mode::Wpad | Mode::Auto => {
            inputs.wpad = Some(match wpad.cache_file {
                Some(file) => crate::wpad::outcome(file, wpad.sources, host, port),
                None => {
                    crate::wpad::evaluate(&crate::wpad::discover(wpad.sources), None, host, port)
                }
            });
        }
        _ => {}
    }
    uplink_proxy::explain_with(settings, host, port, unseal, &inputs)
}

/// The analyzer's `pac` method: the script at `pac` (loaded by the caller, see
/// [`crate::pac::load_within`]) alone, its proxies with `credentials`, DIRECT only where the
/// script says so. A script that cannot be fetched or run is its `PAC_*` problem.
pub fn pac_method(
    pac: &str,
    source: Result<String, crate::pac::SourceError>,
    host: &str,
    port: u16,
    credentials: Option<Credentials>,
) -> Result<Explanation, Problem> {
    if let Err(e) = &source {
        return Err(Problem::new(e.code(), format!("the PAC script {pac}: {e}")));
    }
    let outcome = crate::pac::evaluate_loaded(pac, source, host, port);
    if let Err(e) = &outcome.result {
        return Err(Problem::new(e.code, format!("the PAC script {pac}: {e}")));
    }
    let settings = ProxySettings {
        mode: Some(Mode::Pac),
        pac: Some(pac.to_owned()),
        user: credentials.as_ref().map(|c| c.user.clone()),
        password: credentials.as_ref().map(|_| "from --proxy-password".into()),
        fallback: Some(Fallback::Never),
        ..Default::default()
    };
    let inputs = Inputs {
        pac: Some(outcome),
        wpad: None,
    };
    Ok(uplink_proxy::explain_with(
        &settings,
        host,
        port,
        &given(credentials),
        &inputs,
    ))
}

/// The analyzer's `wpad` method: what discovery found, evaluated for `host:port`. None when it
/// found no script (with the steps it tried).
pub fn wpad_method(d: &Discovery, host: &str, port: u16) -> Result<Explanation, String> {
    let outcome = crate::wpad::evaluate(d, None, host, port);
    if outcome.pac.is_none() {
        return Err(format!(
            "WPAD discovery found no script ({})",
            outcome.steps.join("; ")
        ));
    }
    let settings = ProxySettings {
        mode: Some(Mode::Wpad),
        ..Default::default()
    };
    let inputs = Inputs {
        pac: None,
        wpad: Some(outcome),
    };
    let none = |_: &str| -> Result<SecretString, String> { Err("no password".into()) };
    Ok(uplink_proxy::explain_with(
        &settings, host, port, &none, &inputs,
    ))
}

/// The analyzer's `named` method: the sensor's explicit proxy (whatever its mode), with its
/// sealed password opened by `unseal`. `Ok(None)` when the settings name no proxy.
pub fn named_method(
    settings: &ProxySettings,
    unseal: &dyn Unseal,
) -> Result<Option<Candidate>, Problem> {
    let Some(url) = &settings.url else {
        return Ok(None);
    };
    let invalid = |m: String| Problem::new(uplink_diag::Code::CONFIG_INVALID, m);
    let (url, _) = uplink_url::ProxyUrl::parse(url)
        .map_err(|e| invalid(format!("the sensor's proxy URL: {e}")))?;
    let credentials = match (&settings.user, &settings.password) {
        (Some(user), Some(sealed)) => Some(Credentials {
            user: user.clone(),
            password: unseal.unseal(sealed).map_err(|e| {
                invalid(format!(
                    "the sensor's proxy password cannot be unsealed: {e}"
                ))
            })?,
        }),
        _ => None,
    };
    Ok(Some(Candidate::configured(
        url,
        credentials,
        settings.proxy_ca.clone(),
    )))
}

/// The route the environment's proxy variables give (no sensor installed: check's `default`).
pub fn env_method(env: &uplink_proxy::env::FromEnv, host: &str, port: u16) -> Explanation {
    let mut settings = ProxySettings {
        mode: Some(Mode::Env),
        env: Some(env.capture.clone()),
        ..Default::default()
    };
    if let Some(e) = settings.env.as_mut() {
        if e.user.is_some() {
            e.password = Some("from-environment".into());
        }
    }
    uplink_proxy::explain(&settings, host, port, &given(env.credentials.clone()))
}

/// An unseal that hands out the password given on the command line or in the environment.
fn given(credentials: Option<Credentials>) -> impl Fn(&str) -> Result<SecretString, String> {
    move |_: &str| {
        credentials
            .as_ref()
            .map(|c| c.password.clone())
            .ok_or_else(|| "no password".to_owned())
    }
}

/// The evaluated PAC outcome for `pac`, for the proxy engine (the sensor's `pac` mode).
pub fn pac_outcome(pac: &str, host: &str, port: u16) -> PacOutcome {
    crate::pac::evaluate(pac, host, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uplink_diag::Code;

    /// A script that cannot be fetched or run is its own code, not CONFIG_INVALID.
    #[test]
    fn pac_method_problems_have_their_codes() {
        let dir = std::env::temp_dir().join(format!("uplink-route-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let broken = dir.join("broken.pac");
        std::fs::write(&broken, "function FindProxyForURL(u, h) { return ").unwrap();
        let good = dir.join("good.pac");
        std::fs::write(
            &good,
            "function FindProxyForURL(u, h) { return 'PROXY [::1]:3128; DIRECT'; }",
        )
        .unwrap();
        let t = Duration::from_secs(2);
        let missing = dir.join("missing.pac");
        let cases: Vec<(&Path, Option<Code>)> = vec![
            (&missing, Some(Code::PAC_FETCH_FAILED)),
            (&broken, Some(Code::PAC_SCRIPT_ERROR)),
            (&good, None),
        ];
        for (path, want) in cases {
            let p = path.to_str().unwrap();
            let got = pac_method(p, crate::pac::load_within(p, t), "s.example", 443, None);
            match (got, want) {
                (Err(p), Some(code)) => assert_eq!(p.code, code, "{}: {p}", path.display()),
                (Ok(ex), None) => {
                    let route: Vec<String> = ex.route.iter().map(|c| c.to_string()).collect();
                    assert_eq!(route, ["PROXY [::1]:3128", "DIRECT"]);
                }
                (got, want) => panic!("{}: {got:?}, wanted {want:?}", path.display()),
            }
        }
        // A PAC URL nothing answers at: PAC_FETCH_FAILED; a refused fetch is not a timeout.
        let url = "http://127.0.0.1:9/p.pac";
        let refused = pac_method(url, crate::pac::load_within(url, t), "s.example", 443, None);
        assert_eq!(refused.unwrap_err().code, Code::PAC_FETCH_FAILED);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_named_method_is_the_sensors_explicit_proxy() {
        use secrecy::ExposeSecret;
        let unseal = |sealed: &str| -> Result<SecretString, String> {
            sealed
                .strip_prefix("sealed:")
                .map(|p| SecretString::from(p.to_owned()))
                .ok_or_else(|| "wrong key".to_owned())
        };
        let settings = |url: Option<&str>, password: Option<&str>| ProxySettings {
            url: url.map(str::to_owned),
            user: password.map(|_| "CONTOSO\\u".to_owned()),
            password: password.map(str::to_owned),
            ..Default::default()
        };
        assert!(named_method(&settings(None, None), &unseal)
            .unwrap()
            .is_none());
        let c = named_method(
            &settings(Some("http://[::1]:3128"), Some("sealed:pw")),
            &unseal,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.to_string(), "PROXY [::1]:3128");
        match c {
            Candidate::Proxy {
                credentials: Some(c),
                ..
            } => assert_eq!(c.password.expose_secret(), "pw"),
            other => panic!("{other:?}"),
        }
        for (url, password) in [("proxy:3128", None), ("http://p:1", Some("garbage"))] {
            let e = named_method(&settings(Some(url), password), &unseal).unwrap_err();
            assert_eq!(e.code, Code::CONFIG_INVALID, "{url}: {e}");
        }
    }
}
