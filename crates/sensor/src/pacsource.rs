//! The `pac` mode: load the configured script (a file, or an `http://`/`https://` URL), evaluate it for the
//! service, and hand the answer to the proxy engine (`uplink_proxy::explain_with`).
//!
//! The script sees the service URL the way browsers pass https URLs to PAC scripts, for
//! privacy: `https://host:port/`, never a path. Evaluation is bounded by the PAC engine's limits
//! (time, memory, DNS timeouts); a failure becomes an explained route, never a hang.
//!
//! Deliberately simple: the script is loaded and compiled again for each new connection (routes
//! are chosen once per connection, and compiling even a 150 KB enterprise PAC takes
//! milliseconds), so an edited file or a changed URL's content applies at the next connection.

use uplink_pac::{EvalOptions, Pac, PacProxy};
use uplink_proxy::{PacEntry, PacOutcome};

/// Largest PAC file read from disk.
pub const MAX_PAC_BYTES: u64 = 8 << 20;

/// Reads the script: a local file, or an `http://` or `https://` URL (https trusting the
/// system roots: a PAC is an intranet resource, not the service).
pub fn load(pac: &str) -> Result<String, String> {
    let lower = pac.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return uplink_pac::fetch::fetch(pac, &Default::default())
            .map(|f| f.body)
            .map_err(|e| e.to_string());
    }
    let meta =
        std::fs::metadata(pac).map_err(|e| format!("cannot read the PAC file {pac}: {e}"))?;
    if meta.len() > MAX_PAC_BYTES {
        return Err(format!(
            "the PAC file {pac} is {} bytes; the limit is {MAX_PAC_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(pac).map_err(|e| format!("cannot read the PAC file {pac}: {e}"))
}

/// Compiles a script, for checking it when it is configured.
pub fn check(pac: &str) -> Result<(), String> {
    let src = load(pac)?;
    Pac::compile(&src).map(|_| ()).map_err(|e| e.to_string())
}

/// Evaluates the script at `pac` for `https://host:port/`.
pub fn evaluate(pac: &str, host: &str, port: u16) -> PacOutcome {
    evaluate_loaded(pac, load(pac), host, port)
}

/// Evaluates a script already loaded (or the reason it could not be) for `https://host:port/`;
/// `label` says where it came from. WPAD hands its discovered script here.
pub fn evaluate_loaded(
    label: &str,
    source: Result<String, String>,
    host: &str,
    port: u16,
) -> PacOutcome {
    let pac = label;
    let service = format!("https://{host}:{port}/");
    let url = uplink_pac::url_for_pac(&service).unwrap_or(service);
    let answer = source.and_then(|src| {
        let mut engine = Pac::compile(&src).map_err(|e| e.to_string())?;
        engine
            .find_proxy(&url, host, &EvalOptions::default())
            .map_err(|e| e.to_string())
    });
    match answer {
        Ok(raw) => {
            let entries = uplink_pac::parse_pac_result(&raw)
                .into_iter()
                .map(|p| match p {
                    PacProxy::Direct => PacEntry::Direct,
                    PacProxy::Proxy(hp) => PacEntry::Proxy {
                        host: hp.host,
                        port: hp.port,
                    },
                    other => PacEntry::Unsupported(uplink_pac::to_pac_string(&[other])),
                })
                .collect();
            PacOutcome {
                script: pac.to_owned(),
                raw: Some(raw),
                result: Ok(entries),
            }
        }
        Err(e) => PacOutcome {
            script: pac.to_owned(),
            raw: None,
            result: Err(e),
        },
    }
}
