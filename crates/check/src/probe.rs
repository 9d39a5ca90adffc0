//! One probe: a target along one method's route, step by step — DNS → TCP → proxy CONNECT →
//! proxy authentication → TLS → client certificate → HTTP — timing each step and stopping at the
//! first failure with a stable code.
//!
//! The route is walked as the sensor walks it, with the route layer (`uplink-route`): the same
//! tunnel code ([`uplink_route::tunnel`]) and the same decisions ([`uplink_route::decide`]) — the
//! next candidate after a proxy that could not be reached (refused, unreachable, blackholed: each
//! candidate's TCP connect gets only its share of the time left) or after a discovered proxy's
//! refusal; an administrator's proxy that answers and refuses is the answer. Every attempt is
//! recorded. Every step runs under the probe's one deadline, so a probe takes at most `timeout`
//! however many steps or candidates it walks.
//!
//! Plain `http://` targets through a proxy are tunnelled with CONNECT like everything else (a
//! proxy that allows CONNECT only to 443 reports them as denied: that is a finding too).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use uplink_diag::{Code, Context, Diagnosis, Step, Who};
use uplink_proxy::trust::Failure;
use uplink_proxy::Candidate;
use uplink_tunnel::{ProxyKind, TunnelError};

use crate::classify::{self, TlsContext};
use crate::model::{Anchor, HttpMethod, Method, Overrides, RouteSpec, Target};
use crate::result::{AttemptResult, MethodResult, StepResult};
use crate::verifier::Recording;

/// How probes run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bound on one probe, every step and candidate included.
    pub timeout: Duration,
    pub overrides: Overrides,
}

/// Largest response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Most body bytes read for a detail line.
const MAX_BODY_DETAIL: usize = 2048;

use uplink_route::tunnel::Io;

/// A failed step: the code and what to show. The step itself is already recorded.
struct Fail {
    code: Code,
    /// How the candidate failed, for the route layer's decision to move on
    /// ([`uplink_route::decide::move_on`]): the proxy unreachable, the proxy's refusal, or else.
    failure: Failure,
    /// The proxy's own words (Squid's `X-Squid-Error`, a SOCKS reply), for the fix.
    reason: Option<String>,
    /// The authentication schemes the proxy offered, for the fix.
    schemes: Vec<String>,
}

struct Walk {
    steps: Vec<StepResult>,
    status: Option<u16>,
    deadline: Instant,
    /// When this candidate's TCP connect gives up (at most `deadline`).
    connect_by: Instant,
}

impl Walk {
    fn ok(&mut self, step: Step, start: Instant, detail: impl Into<String>) {
        self.steps.push(StepResult {
            step,
            ok: true,
            ms: ms(start),
            detail: detail.into(),
        });
    }

    fn fail(&mut self, step: Step, start: Instant, code: Code, detail: impl Into<String>) -> Fail {
        self.steps.push(StepResult {
            step,
            ok: false,
            ms: ms(start),
            detail: detail.into(),
        });
        Fail {
            code,
            failure: Failure::Other,
            reason: None,
            schemes: Vec::new(),
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

fn ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs one probe to completion (never longer than `opts.timeout`, give or take a scheduler tick).
pub async fn probe(
    target: &Target,
    method: Method,
    route: &RouteSpec,
    opts: &Options,
) -> MethodResult {
    let (candidates, note) = match route {
        RouteSpec::NotConfigured(why) => return MethodResult::not_configured(method, why),
        RouteSpec::Invalid(why) => return failed(method, Code::CONFIG_INVALID, why),
        RouteSpec::Failed { code, why } => return failed(method, *code, why),
        RouteSpec::Route(c) | RouteSpec::Noted { route: c, .. } if c.is_empty() => {
            return MethodResult::not_configured(method, "the route is empty")
        }
        RouteSpec::Route(c) => (c, None),
        RouteSpec::Noted { route, note } => (route, Some(note.as_str())),
    };
    let deadline = Instant::now() + opts.timeout;
    let mut skipped: Vec<String> = Vec::new();
    let mut tried: Vec<AttemptResult> = Vec::new();
    let mut last = None;
    for (i, candidate) in candidates.iter().enumerate() {
        let mut walk = Walk {
            steps: Vec::new(),
            status: None,
            deadline,
            // A blackholed proxy must leave time for the candidates after it.
            connect_by: Instant::now()
                + uplink_route::connect_budget(
                    deadline.saturating_duration_since(Instant::now()),
                    candidates.len() - i,
                ),
        };
        let outcome = attempt(target, candidate, opts, &mut walk).await;
        let more = i + 1 < candidates.len();
        tried.push(AttemptResult {
            route: candidate.to_string(),
            ok: outcome.is_ok(),
            code: outcome.as_ref().err().map(|f| f.code),
            steps: walk.steps.clone(),
        });
        match outcome {
            Err(f)
                if uplink_route::decide::move_on(
                    candidate.origin(),
                    f.failure,
                    more,
                    walk.remaining() > Duration::ZERO,
                ) =>
            {
                skipped.push(format!(
                    "{candidate} ({})",
                    walk.steps
                        .last()
                        .map(|s| s.detail.as_str())
                        .unwrap_or("failed")
                ));
                last = Some((candidate, walk, Err(f)));
            }
            other => {
                last = Some((candidate, walk, other));
                break;
            }
        }
    }
    let Some((candidate, mut walk, outcome)) = last else {
        return MethodResult::not_configured(method, "the route is empty");
    };
    if !skipped.is_empty() {
        if let Some(first) = walk.steps.first_mut() {
            first.detail = format!("{} (skipped before: {})", first.detail, skipped.join("; "));
        }
    }
    if let (Some(note), Some(first)) = (note, walk.steps.first_mut()) {
        first.detail = format!("{} (note: {note})", first.detail);
    }
    let (ok, code, fix) = match outcome {
        Ok(()) => (true, None, None),
        Err(f) => {
            let step = walk
                .steps
                .iter()
                .rev()
                .find(|s| !s.ok)
                .map(|s| s.step)
                .unwrap_or(f.code.step());
            let diagnosis =
                Diagnosis::new(f.code, fix_context(target, method, candidate, &walk, &f)).at(step);
            (false, Some(f.code), Some(diagnosis.fix()))
        }
    };
    MethodResult {
        method,
        ok,
        code,
        status: walk.status,
        route: Some(candidate.to_string()),
        steps: walk.steps,
        fix,
        attempts: if tried.len() > 1 { tried } else { Vec::new() },
    }
}

/// What the fix is fitted to: who acts (the `cli` method's proxy came from the command line),
/// the route, the target, the status, the proxy's words and schemes.
fn fix_context(
    target: &Target,
    method: Method,
    candidate: &Candidate,
    walk: &Walk,
    f: &Fail,
) -> Context {
    let credentials = match candidate {
        Candidate::Proxy { credentials, .. } => credentials.is_some(),
        Candidate::Direct => false,
    };
    Context {
        who: if method == Method::Cli {
            Who::CommandLine
        } else {
            Who::Sensor
        },
        route: Some(candidate.to_string()),
        host: Some(target.host.clone()),
        port: Some(target.port),
        status: walk.status,
        schemes: f.schemes.clone(),
        credentials,
        reason: f.reason.clone(),
        workspace_ca: match &target.anchor {
            Anchor::Ca { names, .. } => names.iter().any(|n| classify::is_workspace_ca(n)),
            Anchor::System(_) => false,
        },
    }
}

/// A method whose route could not be computed.
fn failed(method: Method, code: Code, why: &str) -> MethodResult {
    MethodResult {
        method,
        ok: false,
        code: Some(code),
        status: None,
        route: None,
        steps: Vec::new(),
        fix: Some(format!("{why}. {}", code.fix())),
        attempts: Vec::new(),
    }
}

async fn attempt(
    target: &Target,
    candidate: &Candidate,
    opts: &Options,
    walk: &mut Walk,
) -> Result<(), Fail> {
    let (dial_host, dial_port, proxy) = match candidate {
        Candidate::Direct => {
            let (h, p) = opts.overrides.connect_target(&target.host, target.port);
            (h, p, None)
        }
        Candidate::Proxy {
            url,
            credentials,
            proxy_ca,
            auth,
            ..
        } => (
            url.host.clone(),
            url.port,
            Some((url.host_port(), credentials, url, proxy_ca, auth)),
        ),
    };
    let via_proxy = proxy.is_some();
    let unreachable = |mut f: Fail| {
        if via_proxy {
            f.failure = Failure::Unreachable;
        }
        f
    };
    // Past the proxy's door, a failure through it is the proxy's refusal (for a discovered proxy,
    // the route moves on, as the sensor's does).
    let refused = |mut f: Fail| {
        if via_proxy && f.failure == Failure::Other {
            f.failure = Failure::Refused;
        }
        f
    };

    // DNS
    let start = Instant::now();
    let addrs = match resolve(&dial_host, dial_port, &opts.overrides, walk.remaining()).await {
        Ok((addrs, how)) => {
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            walk.ok(
                Step::Dns,
                start,
                format!("{dial_host} → {}{how}", list.join(", ")),
            );
            addrs
        }
        Err((code, detail)) => {
            let what = if via_proxy { "the proxy " } else { "" };
            return Err(unreachable(walk.fail(
                Step::Dns,
                start,
                code,
                format!("{what}{detail}"),
            )));
        }
    };

    // TCP
    let start = Instant::now();
    let mut tcp = None;
    let mut last_err = (
        Code::TCP_UNREACHABLE,
        String::from("no address to connect to"),
    );
    for addr in &addrs {
        match tokio::time::timeout_at(walk.connect_by, TcpStream::connect(*addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                tcp = Some((s, *addr));
                break;
            }
            Ok(Err(e)) => {
                last_err = (
                    classify::connect_error(e.kind(), e.raw_os_error()),
                    format!("connecting to {addr}: {e}"),
                )
            }
            Err(_) => {
                let within = if walk.connect_by < walk.deadline {
                    "this candidate's share of the probe's timeout"
                } else {
                    "the probe's timeout"
                };
                last_err = (
                    Code::TCP_TIMEOUT,
                    format!("no answer from {addr} within {within}"),
                );
                break;
            }
        }
    }
    let Some((tcp, addr)) = tcp else {
        let what = if via_proxy { "the proxy: " } else { "" };
        return Err(unreachable(walk.fail(
            Step::Tcp,
            start,
            last_err.0,
            format!("{what}{}", last_err.1),
        )));
    };
    walk.ok(Step::Tcp, start, format!("connected to {addr}"));

    // Proxy CONNECT and authentication (TLS to the proxy first for an HTTPS proxy; SOCKS5's
    // own exchange for a SOCKS proxy)
    let stream: Box<dyn Io> = match proxy {
        None => Box::new(tcp),
        // `auth`: a discovered proxy never gets Basic (uplink_proxy::trust), here as in the sensor.
        Some((label, credentials, url, proxy_ca, auth)) => {
            let start = Instant::now();
            // socks5:// (curl's meaning): this machine resolves the target's name.
            let resolved = match url.kind() {
                ProxyKind::Socks5 { remote_dns: false } => {
                    match resolve(&target.host, target.port, &opts.overrides, walk.remaining())
                        .await
                    {
                        Ok((addrs, _)) => Some(addrs[0].ip()),
                        Err((code, detail)) => {
                            return Err(walk.fail(Step::Dns, start, code, detail))
                        }
                    }
                }
                _ => None,
            };
            // The route layer's tunnel, exactly the sensor's.
            let through = uplink_route::tunnel::Through {
                url,
                credentials: credentials.as_ref(),
                auth,
                proxy_ca: proxy_ca.as_deref(),
                host: &target.host,
                port: target.port,
                resolved,
                timeout: walk.remaining(),
            };
            let tunnelled = uplink_route::tunnel::open(tcp, &through)
                .await
                .map(|o| (o.stream, o.scheme, o.rounds));
            match tunnelled {
                Ok((stream, scheme, rounds)) => {
                    walk.ok(
                        Step::ProxyConnect,
                        start,
                        format!(
                            "{label} tunnels to {}",
                            uplink_url::host_port(&target.host, target.port)
                        ),
                    );
                    if let Some(scheme) = scheme {
                        walk.ok(
                            Step::ProxyAuth,
                            start,
                            format!("{scheme} accepted after {rounds} round(s)"),
                        );
                    }
                    stream
                }
                Err(e) => return Err(refused(tunnel_failure(walk, start, &label, e))),
            }
        }
    };

    let mut io: Box<dyn Io> = stream;
    let authority = if target.port == if target.tls { 443 } else { 80 } {
        if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        }
    } else {
        uplink_url::host_port(&target.host, target.port)
    };

    // TLS
    if target.tls {
        let start = Instant::now();
        let verifier = match Recording::new(target.anchor.roots()) {
            Ok(v) => v,
            Err(e) => return Err(walk.fail(Step::Tls, start, Code::CONFIG_INVALID, e)),
        };
        let config = match client_config(target, verifier.clone()) {
            Ok(c) => c,
            Err(e) => return Err(walk.fail(Step::Tls, start, Code::CONFIG_INVALID, e)),
        };
        let name = match rustls::pki_types::ServerName::try_from(target.host.clone()) {
            Ok(n) => n,
            Err(_) => {
                return Err(walk.fail(
                    Step::Tls,
                    start,
                    Code::CONFIG_INVALID,
                    format!("{:?} is not a valid TLS server name", target.host),
                ))
            }
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let anchor_names: Vec<String> = match &target.anchor {
            Anchor::Ca { names, .. } => names.clone(),
            Anchor::System(_) => Vec::new(),
        };
        match tokio::time::timeout_at(walk.deadline, connector.connect(name, io)).await {
            Err(_) => {
                return Err(walk.fail(
                    Step::Tls,
                    start,
                    Code::TLS_HANDSHAKE_FAILED,
                    format!(
                        "no TLS answer from {} within the probe's timeout",
                        target.host
                    ),
                ))
            }
            Ok(Err(e)) => {
                let presented = verifier.presented();
                let cx = TlsContext {
                    host: &target.host,
                    presented: presented.as_deref(),
                    anchor_names: &anchor_names,
                    issuers: &target.issuers,
                    via_proxy,
                    client_cert: target.identity.is_some(),
                    peer: classify::Peer::Server,
                };
                let (code, detail) = match tls_inner(&e) {
                    Some(err) => classify::tls_error(err, &cx),
                    None => (
                        Code::TLS_HANDSHAKE_FAILED,
                        format!(
                            "TLS with {} failed: {e} (does the port speak TLS?)",
                            target.host
                        ),
                    ),
                };
                return Err(refused(walk.fail(Step::Tls, start, code, detail)));
            }
            Ok(Ok(tls)) => {
                let presented = verifier.presented().unwrap_or_default();
                if let Some((code, detail)) =
                    classify::issuer_check(&target.host, &presented, &target.issuers)
                {
                    return Err(refused(walk.fail(Step::Tls, start, code, detail)));
                }
                let version = tls
                    .get_ref()
                    .1
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                let issuer = presented
                    .first()
                    .map(|c| format!(", issuer {}", c.issuer))
                    .unwrap_or_default();
                walk.ok(Step::Tls, start, format!("{version}{issuer}"));
                io = Box::new(tls);
            }
        }
    }

    // Client certificate: the first request on the connection is the one that shows whether
    // the service accepted it (TLS 1.3 servers reject a certificate after the handshake).
    let mut reusable = true;
    if let Some(identity) = &target.identity {
        let start = Instant::now();
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: uplink-check\r\nContent-Type: application/x-ndjson\r\nContent-Length: 0\r\n\r\n",
            identity.probe_path
        );
        match exchange(&mut io, request.as_bytes(), false, walk.deadline).await {
            // No answer at all: the request went unanswered, which says nothing about the
            // certificate; the HTTP step is what failed.
            Err(ExchangeError::Timeout) => {
                return Err(walk.fail(
                    Step::Http,
                    start,
                    Code::TIMEOUT,
                    format!(
                        "no HTTP answer from {} within the probe's timeout (TLS was set up; the first request, which also shows whether the client certificate is accepted, was not answered)",
                        target.host
                    ),
                ))
            }
            Err(e) => {
                let (code, detail) = read_failure(&e, target, true);
                let code = if code == Code::HTTP_UNEXPECTED_STATUS {
                    Code::MTLS_REJECTED
                } else {
                    code
                };
                return Err(walk.fail(Step::ClientCert, start, code, detail));
            }
            Ok(r) if r.status == 401 || r.status == 403 => {
                return Err(walk.fail(
                    Step::ClientCert,
                    start,
                    Code::MTLS_REJECTED,
                    format!(
                        "{} answered {} to the sensor's certificate: {}",
                        target.host, r.status, r.body
                    ),
                ))
            }
            Ok(r) => {
                reusable = r.reusable;
                walk.ok(
                    Step::ClientCert,
                    start,
                    format!("accepted (the service answered {})", r.status),
                );
            }
        }
    }

    // HTTP
    let start = Instant::now();
    if !reusable {
        // A front end may close the connection after any answer (`Connection: close`, or a body
        // without a length): HTTP allows it, and the service did answer. Not a failure.
        walk.ok(
            Step::Http,
            start,
            "the service answered the client-certificate check and closed the connection (HTTP allows it); no second request sent",
        );
        return Ok(());
    }
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: uplink-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.http_method.as_str(),
        target.path
    );
    match exchange(
        &mut io,
        request.as_bytes(),
        target.http_method == HttpMethod::Head,
        walk.deadline,
    )
    .await
    {
        Err(e) => {
            let (code, detail) = read_failure(&e, target, target.identity.is_some());
            let step = if code == Code::MTLS_REJECTED {
                Step::ClientCert
            } else {
                Step::Http
            };
            Err(walk.fail(step, start, code, detail))
        }
        Ok(r) => {
            walk.status = Some(r.status);
            if target.expect.accepts(r.status) {
                walk.ok(Step::Http, start, format!("{} {}", r.status, r.reason));
                Ok(())
            } else {
                Err(walk.fail(
                    Step::Http,
                    start,
                    Code::HTTP_UNEXPECTED_STATUS,
                    format!(
                        "got {} {}, expected {}{}",
                        r.status,
                        r.reason,
                        target.expect.describe(),
                        if r.body.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", r.body)
                        }
                    ),
                ))
            }
        }
    }
}

fn client_config(
    target: &Target,
    verifier: Arc<Recording>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(uplink_client::provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &target.identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            use rustls_pki_types::pem::PemObject;
            use secrecy::ExposeSecret;
            let chain: Result<Vec<_>, _> =
                rustls_pki_types::CertificateDer::pem_slice_iter(id.chain_pem.as_bytes()).collect();
            let chain =
                chain.map_err(|e| format!("the client certificate is not valid PEM: {e}"))?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(
                id.key_pem.expose_secret().as_bytes(),
            )
            .map_err(|_| "the client key is not a valid PEM private key".to_owned())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate cannot be used: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn tls_inner(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// A failure while writing a request or reading its answer.
fn read_failure(e: &ExchangeError, target: &Target, client_cert: bool) -> (Code, String) {
    match e {
        ExchangeError::Io(io) => match tls_inner(io) {
            Some(err) => {
                let cx = TlsContext {
                    host: &target.host,
                    client_cert,
                    ..Default::default()
                };
                classify::tls_error(err, &cx)
            }
            None => (
                Code::HTTP_UNEXPECTED_STATUS,
                format!(
                    "{} closed the connection without an HTTP answer: {io}",
                    target.host
                ),
            ),
        },
        ExchangeError::Timeout => (
            Code::TIMEOUT,
            format!(
                "no HTTP answer from {} within the probe's timeout",
                target.host
            ),
        ),
        ExchangeError::Bad(why) => (
            Code::HTTP_UNEXPECTED_STATUS,
            format!("{} sent an invalid HTTP answer: {why}", target.host),
        ),
    }
}

fn tunnel_failure(walk: &mut Walk, start: Instant, label: &str, e: TunnelError) -> Fail {
    let reason = e.proxy_reason();
    let schemes = match &e {
        TunnelError::Auth { source, .. } => offered(source),
        _ => Vec::new(),
    };
    let mut f = tunnel_step(walk, start, label, e);
    f.reason = reason;
    f.schemes = schemes;
    f
}

/// The schemes a proxy offered, as its 407 said.
fn offered(e: &uplink_proxyauth::AuthError) -> Vec<String> {
    use uplink_proxyauth::AuthError;
    match e {
        AuthError::NoCredentials { offered }
        | AuthError::Unsupported { offered, .. }
        | AuthError::Rejected { offered, .. } => offered.0.clone(),
        _ => Vec::new(),
    }
}

fn tunnel_step(walk: &mut Walk, start: Instant, label: &str, e: TunnelError) -> Fail {
    use uplink_diag::Diagnose;
    let code = e.code();
    let detail = e.to_string();
    match &e {
        TunnelError::Auth { .. } => {
            walk.ok(
                Step::ProxyConnect,
                start,
                format!("{label} asked for authentication (407)"),
            );
            walk.fail(Step::ProxyAuth, start, code, detail)
        }
        TunnelError::SocksAuthRequired { .. } | TunnelError::SocksRejected { .. } => {
            walk.ok(
                Step::ProxyConnect,
                start,
                format!("{label} asked for SOCKS5 authentication"),
            );
            walk.fail(Step::ProxyAuth, start, code, detail)
        }
        TunnelError::Denied { .. } | TunnelError::SocksDenied { .. } => {
            walk.fail(Step::ProxyConnect, start, code, detail)
        }
        TunnelError::Config { .. } => walk.fail(Step::ProxyConnect, start, code, detail),
        TunnelError::ProxyTls { .. }
        | TunnelError::Timeout { .. }
        | TunnelError::Protocol { .. }
        | TunnelError::Io { .. } => {
            let mut f = walk.fail(Step::ProxyConnect, start, code, detail);
            f.failure = Failure::Unreachable;
            f
        }
    }
}

/// Resolves `host:port`: `--resolve` first, IP literals, `localhost` names (RFC 6761), then the
/// system resolver. Returns the addresses and a note on how they were found.
async fn resolve(
    host: &str,
    port: u16,
    overrides: &Overrides,
    within: Duration,
) -> Result<(Vec<SocketAddr>, &'static str), (Code, String)> {
    if let Some(ip) = overrides.resolved(host, port) {
        return Ok((vec![SocketAddr::new(ip, port)], " (--resolve)"));
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok((vec![SocketAddr::new(ip, port)], ""));
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Ok((
            vec![
                SocketAddr::from(([127, 0, 0, 1], port)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
            ],
            " (RFC 6761 localhost)",
        ));
    }
    match tokio::time::timeout(within, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err((
            Code::DNS_TIMEOUT,
            format!("no DNS answer for {host} within the probe's timeout"),
        )),
        Ok(Err(e)) => {
            let msg = e.to_string();
            Err((
                classify::resolver_error(&msg),
                format!("cannot resolve {host}: {msg}"),
            ))
        }
        Ok(Ok(addrs)) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            // IPv4 first: a host with a broken IPv6 route should not burn the probe's deadline.
            addrs.sort_by_key(|a| a.is_ipv6());
            if addrs.is_empty() {
                Err((Code::DNS_NXDOMAIN, format!("{host} has no address")))
            } else {
                Ok((addrs, ""))
            }
        }
    }
}

#[derive(Debug)]
enum ExchangeError {
    Io(std::io::Error),
    Timeout,
    Bad(String),
}

struct Response {
    status: u16,
    reason: String,
    /// The start of the body, for detail lines (lossy UTF-8, one line).
    body: String,
    /// The body was fully read by its Content-Length and the server keeps the connection.
    reusable: bool,
}

/// Writes `request`, reads one response head (bounded) and the start of its body.
async fn exchange(
    io: &mut Box<dyn Io>,
    request: &[u8],
    head_only: bool,
    deadline: Instant,
) -> Result<Response, ExchangeError> {
    let work = async {
        io.write_all(request).await.map_err(ExchangeError::Io)?;
        io.flush().await.map_err(ExchangeError::Io)?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            let n = io.read(&mut chunk).await.map_err(ExchangeError::Io)?;
            if n == 0 {
                if buf.is_empty() {
                    return Err(ExchangeError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    )));
                }
                return Err(ExchangeError::Bad(
                    "the answer ended inside its header".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse_head(&buf) {
                Ok(Some(head)) => {
                    let mut body = buf[head.len..].to_vec();
                    let mut reusable = false;
                    if !head_only {
                        let want = head
                            .content_length
                            .unwrap_or(MAX_BODY_DETAIL)
                            .min(MAX_BODY_DETAIL);
                        while body.len() < want {
                            let n = io.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            body.extend_from_slice(&chunk[..n]);
                        }
                        reusable =
                            head.content_length.is_some_and(|l| body.len() == l) && !head.close;
                    }
                    let text = String::from_utf8_lossy(&body[..body.len().min(300)])
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    return Ok(Response {
                        status: head.status,
                        reason: head.reason,
                        body: text,
                        reusable,
                    });
                }
                Ok(None) if buf.len() > MAX_HEAD => {
                    return Err(ExchangeError::Bad(format!(
                        "the header is larger than {MAX_HEAD} bytes"
                    )))
                }
                Ok(None) => continue,
                Err(e) => return Err(ExchangeError::Bad(e)),
            }
        }
    };
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or(Err(ExchangeError::Timeout))
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub content_length: Option<usize>,
    pub close: bool,
    /// Bytes of the head, CRLFCRLF included.
    pub len: usize,
}

/// Parses an HTTP/1.x response head: `Ok(None)` while incomplete. Pure.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let mut content_length = None;
            let mut close = r.version == Some(0);
            for h in r.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    content_length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = h.value.eq_ignore_ascii_case(b"close");
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    content_length = None;
                }
            }
            Ok(Some(Head {
                status: r.code.unwrap_or(0),
                reason: r.reason.unwrap_or_default().to_owned(),
                content_length,
                close,
                len,
            }))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOk")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.content_length, h.close, h.len),
            (200, Some(2), false, 38)
        );
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.reason.as_str(), h.close),
            (404, "Not Found", true)
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.content_length, None);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nX: y").unwrap(), None);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
