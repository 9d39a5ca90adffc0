//! The `pac` source of the route: load the configured script (a file, or an `http://`/`https://`
//! URL), evaluate it for the service, and hand the answer to the proxy engine
//! (`uplink_proxy::explain_with`). Failures are typed ([`SourceError`]) and carry their code:
//! `PAC_FETCH_FAILED`, `PAC_SCRIPT_ERROR`, `PAC_TIMEOUT`.
//!
//! The script sees the service URL the way browsers pass https URLs to PAC scripts, for
//! privacy: `https://host:port/`, never a path. Evaluation is bounded by the PAC engine's limits
//! (time, memory, DNS timeouts); a failure becomes an explained route, never a hang.
//!
//! A file is read again for each new connection, so an edited file applies at the next
//! connection; compiled scripts are kept by source (per thread), so an unchanged one is not
//! compiled again. A URL is fetched again only when its copy is stale: the
//! process keeps each fetched script for its HTTP lifetime (`Cache-Control`/`Expires`, bounded to
//! 60 s .. 24 h, an hour without headers; see `uplink_pac::fetch`), and when a refetch fails it
//! keeps routing by the last script it had, saying so, rather than lose its route.

use uplink_diag::{Code, Diagnose};
use uplink_pac::fetch::FetchError;
use uplink_pac::{EvalOptions, Pac, PacError, PacProxy};
use uplink_proxy::{PacEntry, PacOutcome, Problem};

/// Why a PAC script (configured, given to `check --pac`, or found by WPAD) gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Fetch(#[from] FetchError),
    #[error("cannot read the PAC file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Script(#[from] PacError),
    #[error("fetched, but not a usable PAC: {0}")]
    NotPac(PacError),
}

impl Diagnose for SourceError {
    fn code(&self) -> Code {
        match self {
            SourceError::Fetch(FetchError::Timeout { .. }) => Code::PAC_TIMEOUT,
            SourceError::Fetch(_) | SourceError::File { .. } => Code::PAC_FETCH_FAILED,
            SourceError::Script(PacError::Timeout { .. })
            | SourceError::NotPac(PacError::Timeout { .. }) => Code::PAC_TIMEOUT,
            SourceError::Script(_) | SourceError::NotPac(_) => Code::PAC_SCRIPT_ERROR,
        }
    }
}

impl From<SourceError> for Problem {
    fn from(e: SourceError) -> Problem {
        Problem::new(e.code(), e.to_string())
    }
}

/// Whether `pac` names a URL (else a file).
pub fn is_url(pac: &str) -> bool {
    let lower = pac.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Time limit of one PAC fetch, DNS included.
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

thread_local! {
    /// Compiled scripts, by source, per thread (a compiled script cannot leave its thread): the
    /// uploader's route choices and the analyzer's probes evaluate the same script many times.
    static COMPILED: std::cell::RefCell<uplink_pac::PacCache> =
        std::cell::RefCell::new(uplink_pac::PacCache::new(4, uplink_pac::Limits::default()));
}

/// Scripts compiled on this thread so far (for tests).
pub fn compiles_on_this_thread() -> u64 {
    COMPILED.with(|c| c.borrow().compiles())
}

/// Largest PAC file read from disk.
pub const MAX_PAC_BYTES: u64 = 8 << 20;

/// Reads the script: a local file, or an `http://` or `https://` URL (https trusting the
/// system roots: a PAC is an intranet resource, not the service).
pub fn load(pac: &str) -> Result<String, SourceError> {
    load_within(pac, FETCH_TIMEOUT)
}

/// [`load`] with a fetch bounded by `timeout` (the analyzer's `--timeout`).
pub fn load_within(pac: &str, timeout: std::time::Duration) -> Result<String, SourceError> {
    if is_url(pac) {
        let opts = uplink_pac::fetch::FetchOptions {
            timeout,
            ..Default::default()
        };
        return Ok(uplink_pac::fetch::fetch(pac, &opts)?.body);
    }
    let file_err = |reason: String| SourceError::File {
        path: pac.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(pac).map_err(|e| file_err(e.to_string()))?;
    if meta.len() > MAX_PAC_BYTES {
        return Err(file_err(format!(
            "it is {} bytes; the limit is {MAX_PAC_BYTES}",
            meta.len()
        )));
    }
    std::fs::read_to_string(pac).map_err(|e| file_err(e.to_string()))
}

/// A fetched script, kept by URL for the life of the process.
struct Fetched {
    script: String,
    fresh_until: std::time::Instant,
}

static FETCHED: std::sync::Mutex<Option<std::collections::HashMap<String, Fetched>>> =
    std::sync::Mutex::new(None);

/// [`load`] for the uploader: a URL's script comes from the process's copy while it is fresh.
/// Returns the script and, when a stale copy stood in for a failed fetch, a note saying so.
pub fn load_cached(pac: &str) -> Result<(String, Option<String>), SourceError> {
    if !is_url(pac) {
        return load(pac).map(|s| (s, None));
    }
    load_cached_with(pac, std::time::Instant::now(), |url| {
        let opts = uplink_pac::fetch::FetchOptions {
            timeout: FETCH_TIMEOUT,
            ..Default::default()
        };
        uplink_pac::fetch::fetch(url, &opts)
            .map(|f| (f.body, f.refresh_after))
            .map_err(SourceError::from)
    })
}

fn load_cached_with<E: std::fmt::Display>(
    url: &str,
    now: std::time::Instant,
    fetch: impl FnOnce(&str) -> Result<(String, std::time::Duration), E>,
) -> Result<(String, Option<String>), E> {
    let mut guard = FETCHED.lock().unwrap_or_else(|p| p.into_inner());
    let cache = guard.get_or_insert_with(Default::default);
    if let Some(f) = cache.get(url).filter(|f| now < f.fresh_until) {
        return Ok((f.script.clone(), None));
    }
    match fetch(url) {
        Ok((script, refresh_after)) => {
            cache.insert(
                url.to_owned(),
                Fetched {
                    script: script.clone(),
                    fresh_until: now + refresh_after,
                },
            );
            Ok((script, None))
        }
        Err(e) => match cache.get(url) {
            Some(stale) => Ok((
                stale.script.clone(),
                Some(format!(
                    "refetching failed ({e}); using the last script fetched"
                )),
            )),
            None => Err(e),
        },
    }
}

/// Compiles a script, for checking it when it is configured.
pub fn check(pac: &str) -> Result<(), SourceError> {
    let src = load(pac)?;
    Pac::compile(&src)?;
    Ok(())
}

/// Evaluates the script at `pac` for `https://host:port/`.
pub fn evaluate(pac: &str, host: &str, port: u16) -> PacOutcome {
    match load_cached(pac) {
        Ok((script, None)) => evaluate_loaded(pac, Ok(script), host, port),
        Ok((script, Some(note))) => {
            tracing::warn!(pac, "{note}");
            evaluate_loaded(&format!("{pac} ({note})"), Ok(script), host, port)
        }
        Err(e) => evaluate_loaded(pac, Err(e), host, port),
    }
}

/// Evaluates a script already loaded (or the reason it could not be) for `https://host:port/`;
/// `label` says where it came from. WPAD hands its discovered script here.
pub fn evaluate_loaded(
    label: &str,
    source: Result<String, SourceError>,
    host: &str,
    port: u16,
) -> PacOutcome {
    let pac = label;
    let service = format!("https://{}/", uplink_url::host_port(host, port));
    let url = uplink_pac::url_for_pac(&service).unwrap_or(service);
    let answer = source.and_then(|src| {
        COMPILED.with(|cache| {
            let mut cache = cache.borrow_mut();
            let engine = cache.get_or_compile(&src).map_err(SourceError::from)?;
            engine
                .find_proxy(&url, host, &EvalOptions::default())
                .map_err(SourceError::from)
        })
    });
    match answer {
        Ok(raw) => {
            let parsed = uplink_pac::parse_pac_result_strict(&raw);
            let mut entries: Vec<PacEntry> = parsed
                .proxies
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
            // Entries Chromium's rules skip (`PROXIE host:port`, a bad port) stay skipped — a
            // result with nothing usable is DIRECT, as in browsers — but not silently: they go
            // last as unusable entries, which the route's explanation names as skipped.
            if !parsed.skipped.is_empty() {
                tracing::warn!(pac, skipped = ?parsed.skipped, "the PAC script's answer has entries no browser would use; they are ignored");
                entries.extend(
                    parsed
                        .skipped
                        .iter()
                        .map(|e| PacEntry::Unsupported(format!("{e} (not a PAC entry)"))),
                );
            }
            PacOutcome {
                script: pac.to_owned(),
                raw: Some(raw),
                result: Ok(entries),
            }
        }
        Err(e) => PacOutcome {
            script: pac.to_owned(),
            raw: None,
            result: Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn an_unknown_keyword_is_not_silent() {
        let src = "function FindProxyForURL(u, h) { return 'PROXIE p.example:3128'; }";
        let out = evaluate_loaded("k.pac", Ok(src.into()), "a.example", 443);
        let entries = out.result.unwrap();
        assert_eq!(entries[0], PacEntry::Direct, "{entries:?}");
        assert!(
            matches!(&entries[1], PacEntry::Unsupported(e) if e.contains("PROXIE p.example:3128")),
            "{entries:?}"
        );
        // The route stays DIRECT (browsers' rule), and the explanation names what was skipped.
        let ex =
            crate::sources::pac_method("k.pac", Ok(src.into()), "a.example", 443, None).unwrap();
        let route: Vec<String> = ex.route.iter().map(|c| c.to_string()).collect();
        assert_eq!(route, ["DIRECT"], "{ex:?}");
        let said = format!("{:?}", ex.sources);
        assert!(said.contains("skipped PROXIE p.example:3128"), "{said}");
    }

    #[test]
    fn a_script_is_compiled_once_per_thread_and_source() {
        let src = "function FindProxyForURL(u, h) { return h == 'a.example' ? 'PROXY p:3128' : 'DIRECT'; }";
        let before = compiles_on_this_thread();
        let a = evaluate_loaded("s.pac", Ok(src.into()), "a.example", 443);
        let b = evaluate_loaded("s.pac", Ok(src.into()), "b.example", 443);
        assert_eq!(compiles_on_this_thread() - before, 1);
        assert_eq!(a.raw.as_deref(), Some("PROXY p:3128"));
        assert_eq!(b.raw.as_deref(), Some("DIRECT"));
        // A changed script is compiled anew.
        let c = evaluate_loaded(
            "s.pac",
            Ok(src.replace("p:3128", "q:8080")),
            "a.example",
            443,
        );
        assert_eq!(c.raw.as_deref(), Some("PROXY q:8080"));
        assert_eq!(compiles_on_this_thread() - before, 2);
    }

    #[test]
    fn fetched_scripts_live_for_their_freshness_and_stand_in_when_a_refetch_fails() {
        let url = "http://pac.test.invalid/cache-test.pac";
        let t0 = Instant::now();
        let fetched = |body: &str, secs: u64| {
            let body = body.to_owned();
            move |_: &str| Ok::<_, String>((body, Duration::from_secs(secs)))
        };
        let fails = |_: &str| -> Result<(String, Duration), String> { Err("refused".into()) };
        let never = |_: &str| -> Result<(String, Duration), String> {
            panic!("a fresh copy must not be fetched again")
        };
        // No copy and the fetch fails: the error.
        assert_eq!(load_cached_with(url, t0, fails), Err("refused".into()));
        // Fetched for 600 s: used without fetching until then.
        assert_eq!(
            load_cached_with(url, t0, fetched("v1", 600)).unwrap().0,
            "v1"
        );
        assert_eq!(
            load_cached_with(url, t0 + Duration::from_secs(599), never).unwrap(),
            ("v1".to_owned(), None)
        );
        // Stale: fetched again.
        assert_eq!(
            load_cached_with(url, t0 + Duration::from_secs(600), fetched("v2", 60))
                .unwrap()
                .0,
            "v2"
        );
        // Stale and the fetch fails: the last script, with a note.
        let (script, note) = load_cached_with(url, t0 + Duration::from_secs(700), fails).unwrap();
        assert_eq!(script, "v2");
        assert!(note.unwrap().contains("refused"));
    }
}
