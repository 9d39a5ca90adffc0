//! Connections and requests: TLS by SNI, then routing by `Host` and path.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::Digest;
use subtle::ConstantTimeEq;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use uplink_diag::Code;
use uplink_protocol::names::{self, Role};
use uplink_protocol::{body, EnrollRequest, EnrollResponse, ErrorBody, EventsResponse};
use uplink_store::{EventBatch, SensorRecord, Store, StoreError};

use crate::conns::{ConnState, Registered, Tracked};
use crate::registry::Workspace;
use crate::Shared;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest enrollment request (a CSR is about 500 bytes).
const MAX_ENROLL_BODY: usize = 64 * 1024;
/// Health for load balancers: any host (or none), no client certificate.
const HEALTHZ_PATH: &str = "/healthz";

/// What a connection established during its handshake.
struct ConnCtx {
    /// The SNI, normalised.
    sni: Option<String>,
    /// The workspace and role the SNI names.
    target: Option<(Arc<Workspace>, Role)>,
    /// The verified client certificate's workspace and sensor id.
    client: Option<ClientId>,
    /// The client's address (the PROXY header's, behind a balancer), for the audit trail.
    peer: std::net::IpAddr,
}

#[derive(Debug)]
struct ClientId {
    workspace: String,
    sensor_id: String,
    /// CA rotation: the issuer of its certificate (DER), checked on every request against the
    /// workspace's CAs as they are now (a retired CA's certificate is refused on a connection
    /// kept alive from before the retirement too).
    issuer_raw: Vec<u8>,
}

pub(crate) async fn serve_connection<S: Store>(
    shared: Arc<Shared<S>>,
    tcp: TcpStream,
    registered: Registered,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), BoxError> {
    let state = registered.state.clone();
    let counter = shared.clone();
    let _counted = crate::metrics::ConnectionGuard::new(&counter.metrics);
    tokio::select! {
        served = serve_tracked(shared, tcp, state.clone(), watcher) => served,
        () = state.evicted() => {
            tracing::debug!(peer = %state.ip, "connection closed to make room for a new one");
            Ok(())
        }
    }
}

async fn serve_tracked<S: Store>(
    shared: Arc<Shared<S>>,
    tcp: TcpStream,
    state: Arc<ConnState>,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), BoxError> {
    let limits = shared.config.limits.clone();
    let acceptor = LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        Tracked::new(tcp, state.clone(), false),
    );
    let start = tokio::time::timeout(limits.handshake_timeout, acceptor).await??;
    let sni = start
        .client_hello()
        .server_name()
        .map(names::normalize_host);
    let target = match &sni {
        Some(name) => shared.registry.lookup(name, &shared.store).await?,
        None => None,
    };
    let config = match &target {
        // An admin-provided certificate for console hosts (docs/console.md).
        Some((_, Role::Console)) if shared.config.console_tls.is_some() => shared
            .config
            .console_tls
            .clone()
            .unwrap_or_else(|| shared.registry.fallback()),
        Some((ws, _)) => ws.server_config.clone(),
        None => shared.registry.fallback(),
    };
    let tls = tokio::time::timeout(limits.handshake_timeout, start.into_stream(config)).await??;
    let client = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| {
            let info = uplink_pki::cert_info(leaf).ok()?;
            let snapshot = shared.registry.snapshot();
            let ws = snapshot.by_ca_subject.get(&info.issuer_raw)?;
            Some(ClientId {
                workspace: ws.name.clone(),
                sensor_id: info.subject_cn?,
                issuer_raw: info.issuer_raw,
            })
        });
    if client.is_some() {
        state.set_authenticated();
    }
    let ctx = Arc::new(ConnCtx {
        sni,
        target,
        client,
        peer: state.ip,
    });
    let (body_idle, request_timeout) = (limits.body_idle_timeout, limits.request_timeout);
    let conn_state = state.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let (shared, ctx, state) = (shared.clone(), ctx.clone(), conn_state.clone());
        async move {
            req.extensions_mut().insert(BodyClock {
                idle: body_idle,
                deadline: tokio::time::Instant::from_std(state.request_began() + request_timeout),
            });
            let enrolling = req.uri().path() == uplink_protocol::ENROLL_PATH;
            // Every line a request logs (a refused enrollment, a failed ingest) names the
            // address it came from (a proxy's, for sensors behind one).
            let span = tracing::info_span!("request", peer = %state.ip);
            let resp = tracing::Instrument::instrument(handle(&shared, &ctx, req), span).await;
            if enrolling && resp.status() == StatusCode::OK {
                shared.metrics.enrollments.inc();
                // It proved it holds the workspace's access key: no longer a stranger.
                state.set_authenticated();
            }
            state.request_done();
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(Tracked::new(tls, state.clone(), true)),
            service,
        );
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    // The backstop: whatever a request is doing (a slow store, a client that does not read the
    // answer), its connection is closed at twice the request timeout after its first byte. A
    // request that starts while this sleeps has its backstop after the wake-up.
    let backstop = request_timeout.saturating_mul(2);
    loop {
        let wake = state
            .backstop_deadline(backstop)
            .unwrap_or_else(|| std::time::Instant::now() + request_timeout);
        tokio::select! {
            served = &mut conn => return served.map_err(Into::into),
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                if state.backstop_deadline(backstop).is_some_and(|d| d <= std::time::Instant::now()) {
                    tracing::debug!(peer = %state.ip, "request unfinished at twice the request timeout: closing the connection");
                    return Ok(());
                }
            }
        }
    }
}

/// When a request's body must arrive: each piece within `idle` of the previous one, all of it by
/// `deadline`. Put in the request's extensions by the connection; [`read_body`] obeys it.
#[derive(Debug, Clone, Copy)]
struct BodyClock {
    idle: std::time::Duration,
    deadline: tokio::time::Instant,
}

async fn handle<S: Store>(
    shared: &Shared<S>,
    ctx: &ConnCtx,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() == HEALTHZ_PATH {
        return healthz(shared, req.method()).await;
    }
    let target = match route(
        ctx.sni.as_deref(),
        ctx.target.as_ref(),
        request_host(&req).as_deref(),
    ) {
        Ok(target) => target,
        Err(refusal) => return refusal.response(),
    };
    // The workspace as it is now, not as it was when the connection was made: a kept-alive
    // connection across a CA rotation gets the new trust set and certificates of the new CA.
    let now = shared.registry.current(&target.0.name);
    let (ws, role) = (now.as_ref().unwrap_or(&target.0), target.1);
    if crate::crl::is_crl_path(req.uri().path(), &ws.ca.sha256()) {
        return crl(ws, req.method());
    }
    // CA rotation: a previous CA's CRL at its digest's name.
    if let Some(resp) = crate::rotation::previous_crl(ws, req.uri().path(), req.method()) {
        return resp;
    }
    match role {
        // The admin JSON API (docs/admin-api.md).
        Role::Console if req.uri().path().starts_with(crate::adminapi::PREFIX) => {
            crate::adminapi::handle(shared, ws, ctx.peer, req).await
        }
        // The web console's pages (docs/console.md).
        Role::Console => crate::console::handle(shared, ws, ctx.peer, req).await,
        Role::SensorApi => {
            let mut resp = sensor_api(shared, ctx, ws, req).await;
            // CA rotation: every answer names the workspace's trust set.
            crate::rotation::announce(ws, &mut resp);
            resp
        }
    }
}

/// `GET /pki/crl.der`: the workspace CA's CRL, on either host, no client certificate needed.
fn crl(ws: &Workspace, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    match crate::crl::current(ws) {
        Ok(der) => {
            let mut resp = Response::new(Full::new(Bytes::from(der.as_ref().clone())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/pkix-crl"),
            );
            resp
        }
        Err(e) => {
            tracing::error!(workspace = %ws.name, error = %e, "signing the CRL failed");
            unavailable()
        }
    }
}

async fn sensor_api<S: Store>(
    shared: &Shared<S>,
    ctx: &ConnCtx,
    ws: &Workspace,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    // CA rotation: the trust set, for sensors over their authenticated connection.
    if path == uplink_protocol::TRUST_PATH {
        return match sensor_of(
            shared,
            ctx,
            ws,
            "the trust set is for sensors: present the sensor's client certificate",
        ) {
            Ok(_) => crate::rotation::trust(ws, req.method()),
            Err(resp) => resp,
        };
    }
    match endpoint(path, req.method()) {
        Endpoint::Ping => ok_text("Ok"),
        Endpoint::Enroll => {
            // Enrollment limits (issue #24, `lifecycle.rs`): an address that failed too often
            // is answered 429 before its request is read; each failure is counted.
            let resp = match crate::lifecycle::failed_too_often(shared, ws, ctx.peer).await {
                Some(limited) => limited,
                None => enroll(shared, ws, req).await,
            };
            crate::lifecycle::count_failure(shared, ws, ctx.peer, &resp).await;
            let actor = "access key holder".to_owned();
            crate::lifecycle::audit(shared, &ws.name, actor, ctx.peer, "enroll", &resp).await;
            resp
        }
        Endpoint::Events => {
            let resp = events(shared, ctx, ws, req).await;
            crate::policy::stamp(shared, &ws.name, resp).await
        }
        Endpoint::Renew => {
            let resp = renew(shared, ctx, ws, req).await;
            let actor = match &ctx.client {
                Some(c) => format!("sensor {}", c.sensor_id),
                None => "no client certificate".to_owned(),
            };
            crate::lifecycle::audit(shared, &ws.name, actor, ctx.peer, "renew", &resp).await;
            resp
        }
        Endpoint::Heartbeat => {
            let resp = heartbeat(shared, ctx, ws, req).await;
            crate::policy::stamp(shared, &ws.name, resp).await
        }
        // The sensor says it is uninstalled (issue #24, `lifecycle.rs`).
        Endpoint::Uninstall => {
            let resp = match sensor_of(
                shared,
                ctx,
                ws,
                "telling the service about an uninstall needs the sensor's client certificate",
            ) {
                Ok(client) => crate::lifecycle::uninstalled(shared, ws, &client.sensor_id).await,
                Err(resp) => resp,
            };
            let actor = match &ctx.client {
                Some(c) => format!("sensor {}", c.sensor_id),
                None => "no client certificate".to_owned(),
            };
            crate::lifecycle::audit(shared, &ws.name, actor, ctx.peer, "uninstall", &resp).await;
            resp
        }
        // Central policy (issue #26): the policy for the sensor presenting its certificate.
        Endpoint::Policy => {
            match sensor_of(
                shared,
                ctx,
                ws,
                "the policy is answered to an enrolled sensor only: present its client certificate",
            ) {
                Ok(c) => crate::policy::answer(shared, &ws.name, &c.sensor_id).await,
                Err(resp) => resp,
            }
        }
        Endpoint::WrongMethod(allow) => method_not_allowed(allow),
        Endpoint::NotFound => error(
            StatusCode::NOT_FOUND,
            Code::HTTP_UNEXPECTED_STATUS,
            format!("no such endpoint {path:?}; see docs/protocol.md"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Routing decisions, pure: which workspace and endpoint a request is for, or why it is refused.

/// A request refused before any handler ran: its status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    code: Code,
    message: String,
}

impl Refusal {
    fn response(self) -> Response<Full<Bytes>> {
        error(self.status, self.code, self.message)
    }
}

/// The host a request addresses, normalised: its `Host` header, else its URI's authority.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(names::normalize_host)
}

/// The workspace a request is served by: the one its connection's SNI named (`target`, when the
/// SNI named a workspace), and only when the request's host is that same name — a connection made
/// for one workspace never serves another's requests.
fn route<'a, T>(
    sni: Option<&str>,
    target: Option<&'a T>,
    host: Option<&str>,
) -> Result<&'a T, Refusal> {
    let refuse = |status, code, message| {
        Err(Refusal {
            status,
            code,
            message,
        })
    };
    let Some(host) = host else {
        return refuse(
            StatusCode::BAD_REQUEST,
            Code::REQUEST_REJECTED,
            "the request has no Host header: send the workspace's host name".into(),
        );
    };
    match (sni, target) {
        (Some(sni), Some(target)) if sni == host => Ok(target),
        (Some(sni), _) if sni != host => refuse(
            StatusCode::MISDIRECTED_REQUEST,
            Code::REQUEST_REJECTED,
            format!("the TLS server name {sni:?} and the Host header {host:?} differ: connect to the host you address"),
        ),
        (None, _) => refuse(
            StatusCode::MISDIRECTED_REQUEST,
            Code::REQUEST_REJECTED,
            format!("the connection named no server (no TLS SNI) but the request is for {host:?}: connect by host name, not by IP address"),
        ),
        _ => refuse(
            StatusCode::NOT_FOUND,
            Code::HTTP_UNEXPECTED_STATUS,
            format!("no workspace is served at {host:?}: check the host name in the sensor URL (<workspace>sensorapi.<domain>)"),
        ),
    }
}

/// The sensor API's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Ping,
    Enroll,
    Events,
    Renew,
    Heartbeat,
    Uninstall,
    /// `GET /api/v1/policy` (issue #26).
    Policy,
    /// A known path with another method: the methods it takes (the `Allow` header).
    WrongMethod(&'static str),
    NotFound,
}

fn endpoint(path: &str, method: &Method) -> Endpoint {
    match (path, method) {
        (uplink_protocol::PING_PATH, &Method::GET | &Method::HEAD) => Endpoint::Ping,
        (uplink_protocol::ENROLL_PATH, &Method::POST) => Endpoint::Enroll,
        (uplink_protocol::EVENTS_PATH, &Method::POST) => Endpoint::Events,
        (uplink_protocol::RENEW_PATH, &Method::POST) => Endpoint::Renew,
        (uplink_protocol::HEARTBEAT_PATH, &Method::POST) => Endpoint::Heartbeat,
        (uplink_protocol::UNINSTALL_PATH, &Method::POST) => Endpoint::Uninstall,
        (uplink_policy::POLICY_PATH, &Method::GET) => Endpoint::Policy,
        (uplink_protocol::PING_PATH, _) => Endpoint::WrongMethod("GET, HEAD"),
        (uplink_policy::POLICY_PATH, _) => Endpoint::WrongMethod("GET"),
        (
            uplink_protocol::ENROLL_PATH
            | uplink_protocol::EVENTS_PATH
            | uplink_protocol::RENEW_PATH
            | uplink_protocol::HEARTBEAT_PATH
            | uplink_protocol::UNINSTALL_PATH,
            _,
        ) => Endpoint::WrongMethod("POST"),
        _ => Endpoint::NotFound,
    }
}

/// The validity of the certificates the workspace issues: its setting, the same on every replica.
fn client_validity(ws: &Workspace) -> time::Duration {
    time::Duration::seconds(ws.lifecycle.client_cert_validity_secs as i64)
}

/// The sensor a request comes from: its verified client certificate's, which must belong to
/// `workspace`. `missing` says what to do without one.
fn client_of<'a>(
    client: Option<&'a ClientId>,
    workspace: &str,
    missing: &str,
    revoked: &dyn Fn(&str) -> bool,
) -> Result<&'a ClientId, Refusal> {
    let Some(client) = client else {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: Code::MTLS_REJECTED,
            message: missing.to_owned(),
        });
    };
    if client.workspace != workspace {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: Code::MTLS_REJECTED,
            message: format!(
                "the client certificate belongs to workspace {:?}, not to {:?} which this host serves: use the sensor URL of its own workspace",
                client.workspace, workspace
            ),
        });
    }
    if revoked(&client.sensor_id) {
        return Err(revoked_refusal(&client.sensor_id, workspace));
    }
    Ok(client)
}

/// The answer to a revoked sensor (issue #24): 403 `CERT_REVOKED`, saying how to come back.
fn revoked_refusal(sensor_id: &str, workspace: &str) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        code: Code::CERT_REVOKED,
        message: format!(
            "the certificate of sensor {sensor_id} was revoked by the administrator of workspace {workspace:?}: nothing of this request was stored. The sensor keeps its queued events. If the machine should come back, enroll it again with the workspace's access key (uplink sensor install); it becomes a new sensor"
        ),
    }
}

/// The `Content-Length` a request declares, if it is a number (over the limit: 413 unread).
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a whole body of at most `limit` bytes, within the request's [`BodyClock`]: a body that
/// stalls or takes too long is answered 408, and hyper then closes the connection (the rest of the
/// body is never read).
pub(crate) async fn read_body(
    req: Request<Incoming>,
    limit: usize,
) -> Result<(http::request::Parts, Bytes), Response<Full<Bytes>>> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::REQUEST_REJECTED,
            format!("the request body is larger than {limit} bytes: send smaller batches"),
        )
    };
    let declared = declared_length(&req);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let clock = req.extensions().get::<BodyClock>().copied();
    let (parts, body) = req.into_parts();
    let mut body = Limited::new(body, limit);
    let mut buf = bytes::BytesMut::with_capacity(
        usize::try_from(declared.unwrap_or(0)).map_or(limit, |n| n.min(limit)),
    );
    loop {
        let next = body.frame();
        let frame = match clock {
            None => next.await,
            Some(clock) => {
                let idle_end = tokio::time::Instant::now() + clock.idle;
                match tokio::time::timeout_at(idle_end.min(clock.deadline), next).await {
                    Ok(frame) => frame,
                    Err(_) => {
                        let why = if idle_end <= clock.deadline {
                            format!(
                                "the request body stalled: no byte for {} s",
                                clock.idle.as_secs_f64()
                            )
                        } else {
                            "the request was not received in full within the request timeout"
                                .to_owned()
                        };
                        let mut resp = error(
                            StatusCode::REQUEST_TIMEOUT,
                            Code::REQUEST_REJECTED,
                            format!("{why}; nothing was stored and the connection is closed: send the body without pauses"),
                        );
                        resp.headers_mut().insert(
                            header::CONNECTION,
                            header::HeaderValue::from_static("close"),
                        );
                        return Err(resp);
                    }
                }
            }
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Some(Err(e)) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    Code::REQUEST_REJECTED,
                    format!("the request body could not be read: {e}"),
                ))
            }
        }
    }
    Ok((parts, buf.freeze()))
}

/// `GET /healthz`: 200 while the store can ingest, 503 while it cannot, with a JSON reason
/// that names the failing part ([`health_reason`]; the details, which name the database, go to
/// the log, not to an unauthenticated caller). A load balancer's health check takes this
/// replica out of rotation on the 503. `ping` stays what it is: it proves the route.
async fn healthz<S: Store>(shared: &Shared<S>, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    match shared.store.health().await {
        Ok(()) => ok_text("ok"),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store cannot ingest");
            let mut resp = json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({
                    "status": "unavailable",
                    "code": Code::SERVICE_UNAVAILABLE.as_str(),
                    "reason": health_reason(&e),
                }),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            resp
        }
    }
}

/// What `/healthz` says about a store error: which part fails, without paths or URLs. Pure.
fn health_reason(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unreachable { .. } => "store unreachable",
        StoreError::WriterGone | StoreError::Commit { .. } => "store writer unhealthy",
        StoreError::FilesGone { .. } => "store files deleted or replaced",
        StoreError::ReadOnly { .. } => "store read-only",
        StoreError::Damaged { .. } => "store damaged",
        StoreError::Io { .. } => "store disk error",
        _ => "store failing",
    }
}

/// An enrollment or renewal refused: logged (workspace, status, code, reason — never the access
/// key), then answered.
fn refused(
    what: &'static str,
    ws: &Workspace,
    resp: Response<Full<Bytes>>,
    code: Code,
    reason: &str,
) -> Response<Full<Bytes>> {
    tracing::warn!(
        workspace = %ws.name,
        status = resp.status().as_u16(),
        code = code.as_str(),
        reason,
        "{what} refused"
    );
    resp
}

/// What a JSON error says without quoting the input (which holds the access key).
fn json_problem(e: &serde_json::Error) -> String {
    format!(
        "not valid JSON ({:?} error at line {} column {})",
        e.classify(),
        e.line(),
        e.column()
    )
}

async fn enroll<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (_, body) = match read_body(req, MAX_ENROLL_BODY).await {
        Ok(x) => x,
        Err(resp) => {
            return refused(
                "enrollment",
                ws,
                resp,
                Code::REQUEST_REJECTED,
                "body unreadable or too large",
            )
        }
    };
    let request: EnrollRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refused(
                "enrollment",
                ws,
                error(
                    StatusCode::BAD_REQUEST,
                    Code::REQUEST_REJECTED,
                    format!("the enrollment request is not valid JSON: {e}"),
                ),
                Code::REQUEST_REJECTED,
                &json_problem(&e),
            );
        }
    };
    let presented = sha2::Sha256::digest(request.access_key.as_bytes());
    if !bool::from(presented.as_slice().ct_eq(&ws.access_key_sha256)) {
        return refused(
            "enrollment",
            ws,
            error(
                StatusCode::UNAUTHORIZED,
                Code::ENROLL_DENIED,
                format!("the access key is not valid for workspace {:?}: use the bundle made for this workspace", ws.name),
            ),
            Code::ENROLL_DENIED,
            "wrong access key",
        );
    }
    // The right key: take one of the workspace's enrollments of this window (or 429).
    if let Err(limited) = crate::lifecycle::enrollment_slot(shared, ws).await {
        return limited;
    }
    let sensor_id = hex::encode(rand::random::<[u8; 16]>());
    let signed = match ws.ca.sign_client_csr(
        request.csr_pem.as_bytes(),
        &sensor_id,
        &ws.name,
        client_validity(ws),
    ) {
        Ok(s) => s,
        Err(e) => {
            return refused(
                "enrollment",
                ws,
                error(
                    StatusCode::BAD_REQUEST,
                    Code::REQUEST_REJECTED,
                    format!("the CSR was refused: {e}"),
                ),
                Code::REQUEST_REJECTED,
                &e.to_string(),
            )
        }
    };
    let name: String = request
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(253)
        .collect();
    let record = SensorRecord {
        sensor_id: sensor_id.clone(),
        workspace: ws.name.clone(),
        name,
        cert_sha256: uplink_pki::sha256_hex(&signed.cert_der),
        key_sha256: Some(signed.key_sha256.clone()),
        enrolled_at: uplink_store::now_ms(),
        last_seen: None,
    };
    match shared.store.add_sensor(record).await {
        Ok(()) => {}
        Err(StoreError::KeyAlreadyEnrolled {
            sensor_id: holder, ..
        }) => {
            return refused(
                "enrollment",
                ws,
                error(
                    StatusCode::CONFLICT,
                    Code::KEY_ALREADY_ENROLLED,
                    format!("this CSR's public key ({}) is already enrolled in workspace {:?}: a new sensor must generate its own key (uplink sensor install does); an enrolled sensor renews its certificate instead", signed.key_type, ws.name),
                ),
                Code::KEY_ALREADY_ENROLLED,
                &format!(
                    "public key (SHA-256 {}) already enrolled as sensor {holder}",
                    signed.key_sha256
                ),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "storing an enrolled sensor failed");
            return unavailable();
        }
    }
    crate::crl::record(shared, &sensor_id, &signed, &ws.ca.sha256()).await;
    tracing::info!(workspace = %ws.name, sensor = %sensor_id, key = %signed.key_type, "sensor enrolled");
    let response = EnrollResponse {
        workspace: ws.name.clone(),
        sensor_id,
        certificate_pem: signed.cert_pem,
        chain_pem: ws.ca.cert_pem().to_owned(),
        not_after: signed
            .not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    };
    let mut resp = json(StatusCode::OK, &response);
    resp.extensions_mut()
        .insert(crate::lifecycle::Outcome::Issued {
            sensor_id: response.sensor_id.clone(),
        });
    resp
}

/// The sensor a request comes from: its verified client certificate, which must belong to the
/// workspace this host serves. `missing` says what to do without one.
// The error is the response itself, built once on a rare path; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn sensor_of<'a, S: Store>(
    shared: &Shared<S>,
    ctx: &'a ConnCtx,
    ws: &Workspace,
    missing: &str,
) -> Result<&'a ClientId, Response<Full<Bytes>>> {
    // The current snapshot's revoked set, not the one of the connection's workspace: a
    // revocation applies to kept-alive connections from the next request on.
    let revoked = |id: &str| shared.registry.is_revoked(&ws.name, id);
    let client = client_of(ctx.client.as_ref(), &ws.name, missing, &revoked).map_err(|r| {
        if r.code == Code::CERT_REVOKED {
            tracing::warn!(workspace = %ws.name, "request of a revoked sensor refused");
        }
        r.response()
    })?;
    // CA rotation: `ws` is the workspace as it is now (`handle`).
    if !crate::rotation::trusts(ws, &client.issuer_raw) {
        tracing::warn!(workspace = %ws.name, sensor = %client.sensor_id, "request with a certificate of a retired CA refused");
        return Err(error(
            StatusCode::FORBIDDEN,
            Code::MTLS_REJECTED,
            format!(
                "the client certificate of sensor {} is from a CA that workspace {:?} no longer trusts (retired by `uplink workspace rotate-ca --retire-old`): enroll the machine again with the workspace's access key",
                client.sensor_id, ws.name
            ),
        ));
    }
    Ok(client)
}

/// A new certificate for the sensor that presents its current one: same sensor id, same
/// workspace, the new CSR's key. The store records the new certificate's fingerprint; a sensor
/// removed from the workspace cannot renew.
async fn renew<S: Store>(
    shared: &Shared<S>,
    ctx: &ConnCtx,
    ws: &Workspace,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let client = match sensor_of(
        shared,
        ctx,
        ws,
        "renewal needs the sensor's current client certificate; an expired sensor must be enrolled again (uplink sensor install)",
    ) {
        Ok(c) => c,
        Err(resp) => {
            return refused("renewal", ws, resp, Code::MTLS_REJECTED, "no client certificate of this workspace")
        }
    };
    let (_, body) = match read_body(req, MAX_ENROLL_BODY).await {
        Ok(x) => x,
        Err(resp) => {
            return refused(
                "renewal",
                ws,
                resp,
                Code::REQUEST_REJECTED,
                "body unreadable or too large",
            )
        }
    };
    let request: uplink_protocol::RenewRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refused(
                "renewal",
                ws,
                error(
                    StatusCode::BAD_REQUEST,
                    Code::REQUEST_REJECTED,
                    format!("the renewal request is not valid JSON: {e}"),
                ),
                Code::REQUEST_REJECTED,
                &json_problem(&e),
            );
        }
    };
    let signed = match ws.ca.sign_client_csr(
        request.csr_pem.as_bytes(),
        &client.sensor_id,
        &ws.name,
        client_validity(ws),
    ) {
        Ok(s) => s,
        Err(e) => {
            return refused(
                "renewal",
                ws,
                error(
                    StatusCode::BAD_REQUEST,
                    Code::REQUEST_REJECTED,
                    format!("the CSR was refused: {e}"),
                ),
                Code::REQUEST_REJECTED,
                &e.to_string(),
            )
        }
    };
    let fingerprint = uplink_pki::sha256_hex(&signed.cert_der);
    match shared
        .store
        .renew_sensor(&ws.name, &client.sensor_id, &fingerprint, &signed.key_sha256)
        .await
    {
        Ok(()) => {}
        Err(StoreError::NoSuchSensor(id)) => {
            return refused(
                "renewal",
                ws,
                error(
                    StatusCode::FORBIDDEN,
                    Code::MTLS_REJECTED,
                    format!("sensor {id} is not enrolled in this workspace (it may have been removed): re-enroll it"),
                ),
                Code::MTLS_REJECTED,
                "sensor not enrolled",
            )
        }
        Err(StoreError::Revoked { sensor_id, .. }) => {
            return refused(
                "renewal",
                ws,
                revoked_refusal(&sensor_id, &ws.name).response(),
                Code::CERT_REVOKED,
                "sensor revoked",
            )
        }
        Err(StoreError::KeyAlreadyEnrolled { sensor_id: holder, .. }) => {
            return refused(
                "renewal",
                ws,
                error(
                    StatusCode::CONFLICT,
                    Code::KEY_ALREADY_ENROLLED,
                    format!("this CSR's public key ({}) belongs to another sensor of workspace {:?}: renew with a key of this sensor's own (uplink generates one)", signed.key_type, ws.name),
                ),
                Code::KEY_ALREADY_ENROLLED,
                &format!(
                    "sensor {} asked for the public key (SHA-256 {}) of sensor {holder}",
                    client.sensor_id, signed.key_sha256
                ),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a renewed certificate failed");
            return unavailable();
        }
    }
    crate::crl::record(shared, &client.sensor_id, &signed, &ws.ca.sha256()).await;
    tracing::info!(workspace = %ws.name, sensor = %client.sensor_id, "sensor certificate renewed");
    let mut resp = json(
        StatusCode::OK,
        &EnrollResponse {
            workspace: ws.name.clone(),
            sensor_id: client.sensor_id.clone(),
            certificate_pem: signed.cert_pem,
            chain_pem: ws.ca.cert_pem().to_owned(),
            not_after: signed
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        },
    );
    resp.extensions_mut()
        .insert(crate::lifecycle::Outcome::Issued {
            sensor_id: client.sensor_id.clone(),
        });
    resp
}

async fn events<S: Store>(
    shared: &Shared<S>,
    ctx: &ConnCtx,
    ws: &Workspace,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let limits = &shared.config.limits;
    let client = match sensor_of(
        shared,
        ctx,
        ws,
        "this endpoint needs the sensor's client certificate: enroll the sensor (uplink sensor install) and present its certificate",
    ) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let encoding = match body::Encoding::from_header(
        req.headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    ) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::REQUEST_REJECTED,
                e.to_string(),
            )
        }
    };
    let (_, raw) = match read_body(req, limits.max_body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let (started, wire_bytes) = (std::time::Instant::now(), raw.len() as u64);
    // Reserve the batch's memory before decoding it; beyond the budget, the sensor retries later.
    let bound = body::decoded_bound(encoding, &raw, limits.max_decoded);
    let Some(permit) = shared
        .budget
        .try_reserve(crate::budget::cost(encoding, raw.len(), bound))
    else {
        tracing::debug!(sensor = %client.sensor_id, bytes = raw.len(), decoded = bound, "decode budget exhausted: answering 503");
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::SERVICE_UNAVAILABLE,
            format!(
                "the service is busy decoding other batches (its decode budget is {} MiB); nothing was stored: retry in a moment",
                shared.budget.total() >> 20
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    };
    // Decompressing and parsing take CPU in proportion to the batch: off the async workers, so
    // pings and other connections are answered meanwhile.
    let (max_decoded, max_events) = (limits.max_decoded, limits.max_events);
    let as_sent = shared.store.keeps_batches_as_sent();
    let decoded = tokio::task::spawn_blocking(move || {
        let (mut batch, heartbeat) =
            decode_batch(encoding, &raw, max_decoded, max_events, as_sent)?;
        // The SQLite store keeps a compressed batch as it came, once, instead of each event's
        // text (docs/storage.md, "Batches stored as sent"); its decoding is the batch's text.
        if encoding == body::Encoding::Zstd {
            batch.keep_zstd(Vec::from(raw));
        }
        Ok::<_, Box<Response<Full<Bytes>>>>((batch, heartbeat))
    })
    .await;
    let (batch, heartbeat) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(resp)) => return *resp,
        Err(e) => {
            tracing::error!(error = %e, "decoding a batch failed");
            return unavailable();
        }
    };
    // The batch's last heartbeat (`heartbeat`) is also the sensor's report (kept if it is the
    // newest).
    let stored = shared.store.ingest_batch(&client.sensor_id, batch).await;
    // The batch's memory is the store's to free now.
    drop(permit);
    match &stored {
        Ok(outcome) => {
            let m = &shared.metrics;
            m.ingest_events.inc_by(outcome.accepted);
            m.ingest_duplicates.inc_by(outcome.duplicates);
            m.ingest_bytes.inc_by(wire_bytes);

            m.batch_seconds.observe(started.elapsed().as_secs_f64());
        }
        Err(StoreError::NoSuchSensor(_)) => {}
        Err(_) => {
            shared.metrics.store_errors.inc();
        }
    }
    match stored {
        Ok(outcome) => {
            if let Some(body) = heartbeat {
                // The batch is committed: a report that cannot be stored costs the fleet view
                // one heartbeat, never the batch.
                match uplink_protocol::heartbeat::parse(body.as_bytes()) {
                    Ok(h) => {
                        if let Err(e) = crate::fleet::report(shared, &ws.name, &client.sensor_id, &h).await {
                            tracing::warn!(error = %e, sensor = %client.sensor_id, "storing a queued heartbeat as the sensor's report failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, sensor = %client.sensor_id, "a queued heartbeat is not a report"),
                }
            }
            json(StatusCode::OK, &EventsResponse { accepted: outcome.accepted, duplicates: outcome.duplicates })
        }
        Err(StoreError::NoSuchSensor(id)) => error(
            StatusCode::FORBIDDEN,
            Code::MTLS_REJECTED,
            format!("sensor {id} is not enrolled in this workspace (it may have been removed): re-enroll it"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "ingest failed");
            unavailable()
        }
    }
}

/// Largest report body (a heartbeat with a full outage log is a few KiB).
const MAX_REPORT_BODY: usize = 64 * 1024;

/// `POST /api/v1/heartbeat`: the sensor's report, stored (and the sensor's state and issues
/// derived from it) before the answer, `204`.
async fn heartbeat<S: Store>(
    shared: &Shared<S>,
    ctx: &ConnCtx,
    ws: &Workspace,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let client = match sensor_of(
        shared,
        ctx,
        ws,
        "this endpoint needs the sensor's client certificate: enroll the sensor (uplink sensor install) and present its certificate",
    ) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let (_, body) = match read_body(req, MAX_REPORT_BODY).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let report = match uplink_protocol::heartbeat::parse(&body) {
        Ok(h) => h,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                Code::REQUEST_REJECTED,
                format!("the report was refused, nothing stored: {e}"),
            )
        }
    };
    match crate::fleet::report(shared, &ws.name, &client.sensor_id, &report).await {
        Ok(()) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp.headers_mut().insert(
                uplink_protocol::VERSION_HEADER,
                header::HeaderValue::from(uplink_protocol::VERSION),
            );
            resp
        }
        Err(StoreError::NoSuchSensor(id)) => error(
            StatusCode::FORBIDDEN,
            Code::MTLS_REJECTED,
            format!("sensor {id} is not enrolled in this workspace (it may have been removed): re-enroll it"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing a report failed");
            unavailable()
        }
    }
}

/// A batch decoded for the store, and the line of its last heartbeat (the sensor's report).
type Decoded = (EventBatch, Option<String>);

/// Decodes and validates a batch: the events for the store and the line of its last heartbeat
/// (the sensor's report), or the response refusing it. With `as_sent` (a store that keeps a compressed batch as sent), a zstd body in frames that
/// declare their sizes (the sensor's) is checked frame by frame as it decodes, and the batch
/// keeps where each event lies, not the decoded text ([`EventBatch::sent`]).
fn decode_batch(
    encoding: body::Encoding,
    raw: &[u8],
    max_decoded: usize,
    max_events: usize,
    as_sent: bool,
) -> Result<Decoded, Box<Response<Full<Bytes>>>> {
    if as_sent && encoding == body::Encoding::Zstd {
        if let Some(decoded) = decode_as_sent(raw, max_decoded, max_events)? {
            return Ok(decoded);
        }
    }
    let decoded = match body::decode(encoding, raw, max_decoded) {
        Ok(d) => d,
        Err(e @ body::BodyError::TooLargeDecoded { .. }) => {
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::REQUEST_REJECTED,
                e.to_string(),
            )))
        }
        Err(e) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                Code::REQUEST_REJECTED,
                e.to_string(),
            )))
        }
    };
    let refused = |e: uplink_protocol::batch::BatchError| {
        let status = match e {
            uplink_protocol::batch::BatchError::TooManyEvents { .. } => {
                return Box::new(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Code::REQUEST_REJECTED,
                    e.to_string(),
                ))
            }
            _ => StatusCode::BAD_REQUEST,
        };
        Box::new(error(
            status,
            Code::REQUEST_REJECTED,
            format!("the batch was refused, nothing stored: {e}"),
        ))
    };
    // The decoded body becomes the store's one buffer of the batch (issue #28): each event is
    // a seq and where its kind and body lie in it, not two strings of its own.
    let not_utf8 = |e: std::str::Utf8Error| uplink_protocol::batch::BatchError::NotUtf8 {
        offset: e.valid_up_to(),
    };
    let text = match decoded {
        std::borrow::Cow::Owned(bytes) => {
            String::from_utf8(bytes).map_err(|e| refused(not_utf8(e.utf8_error())))?
        }
        std::borrow::Cow::Borrowed(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| refused(not_utf8(e)))?
            .to_owned(),
    };
    let parsed = uplink_protocol::batch::parse_str(&text, max_events).map_err(refused)?;
    let base = text.as_ptr() as usize;
    let within = |piece: &str| {
        let start = (piece.as_ptr() as usize).wrapping_sub(base);
        (start <= text.len() && piece.len() <= text.len() - start)
            .then_some(start..start + piece.len())
    };
    // Each kind is appended after the text, once per run of events of the same kind, rather
    // than pointed to in each event's line: the store's writer, on another thread, then reads
    // a few bytes it has in cache for each event's kind, not a line of the text (and with a
    // batch stored as sent, nothing of the text at all).
    let mut kinds: Vec<&str> = Vec::new();
    let mut spans = Vec::with_capacity(parsed.len());
    for e in &parsed {
        if kinds.last() != Some(&&*e.kind) {
            kinds.push(&e.kind);
        }
        spans.push((e.seq, kinds.len() - 1, within(e.raw)));
    }
    let kinds: Vec<String> = kinds.into_iter().map(str::to_owned).collect();
    drop(parsed);
    let mut batch = EventBatch::new(text, spans.len());
    let appended: Vec<_> = kinds.iter().map(|k| batch.append(k)).collect();
    for (seq, kind, body) in spans {
        let kind = appended[kind].clone();
        // A line is always a piece of the text it was parsed from.
        if !body.is_some_and(|body| batch.push(seq, kind, body)) {
            return Err(Box::new(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::SERVICE_UNAVAILABLE,
                format!("the event of seq {seq} could not be laid out for the store; nothing was stored: report this to uplink's developers"),
            )));
        }
    }
    let heartbeat = batch
        .iter()
        .rev()
        .find(|e| e.kind == "heartbeat")
        .map(|e| e.body.to_owned());
    Ok((batch, heartbeat))
}

/// [`decode_batch`] of a zstd body, frame by frame ([`uplink_protocol::batch::parse_zstd_frames`]):
/// `None` for a body that is not in frames that declare their sizes (of 64 KiB on average at
/// least: the sensor's are 256 KiB), is larger than `max_decoded`, or is refused (the whole body
/// decoded and parsed then says why). The last heartbeat's line is copied as its frame is read.
fn decode_as_sent(
    raw: &[u8],
    max_decoded: usize,
    max_events: usize,
) -> Result<Option<Decoded>, Box<Response<Full<Bytes>>>> {
    // A list of frames is 32 bytes each, which the decode budget does not count: a body of
    // many tiny frames goes the whole way.
    let max_frames = max_decoded / AS_SENT_MIN_FRAME + 2;
    let Some(frames) = body::zstd_frames_at_most(raw, max_frames)
        .filter(|f| f.last().is_none_or(|last| last.decoded.end <= max_decoded))
    else {
        return Ok(None);
    };
    // Each kind once per run of events of that kind, as in `decode_batch`.
    let mut kinds: Vec<String> = Vec::new();
    let mut spans = Vec::new();
    let mut heartbeat = None;
    let parsed = uplink_protocol::batch::parse_zstd_frames(raw, &frames, max_events, |e, line| {
        if kinds.last().map(String::as_str) != Some(&*e.kind) {
            kinds.push(e.kind.to_string());
        }
        if e.kind == "heartbeat" {
            heartbeat = Some(e.raw.to_owned());
        }
        spans.push((e.seq, kinds.len() - 1, line));
    });
    let Some(len) = parsed else {
        return Ok(None);
    };
    let mut batch = EventBatch::sent(len, spans.len());
    let appended: Vec<_> = kinds.iter().map(|k| batch.append(k)).collect();
    for (seq, kind, line) in spans {
        if !batch.push(seq, appended[kind].clone(), line) {
            return Err(Box::new(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::SERVICE_UNAVAILABLE,
                format!("the event of seq {seq} could not be laid out for the store; nothing was stored: report this to uplink's developers"),
            )));
        }
    }
    Ok(Some((batch, heartbeat)))
}

/// The least average size of a body's frames [`decode_as_sent`] takes.
const AS_SENT_MIN_FRAME: usize = 64 << 10;

fn ok_text(body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        uplink_protocol::VERSION_HEADER,
        header::HeaderValue::from(uplink_protocol::VERSION),
    );
    resp
}

pub(crate) fn error(status: StatusCode, code: Code, message: String) -> Response<Full<Bytes>> {
    let note = crate::lifecycle::Outcome::Refused {
        code,
        message: message.clone(),
    };
    let mut resp = json(
        status,
        &ErrorBody {
            code: code.as_str().to_owned(),
            message,
        },
    );
    resp.extensions_mut().insert(note);
    resp
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::REQUEST_REJECTED,
        format!("use {allow} on this endpoint"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}

pub(crate) fn unavailable() -> Response<Full<Bytes>> {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        Code::SERVICE_UNAVAILABLE,
        "the service's storage is unavailable; nothing was stored: retry later".into(),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status, `Code` and message of a response built here (its body is one JSON frame).
    fn parts(resp: Response<Full<Bytes>>) -> (StatusCode, String, String) {
        use hyper::body::Body as _;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let frame = match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => frame,
            other => panic!("a full body is ready at once: {other:?}"),
        };
        let data = frame.into_data().expect("a data frame");
        let e: ErrorBody = serde_json::from_slice(&data).expect("an error body");
        (status, e.code, e.message)
    }

    #[test]
    fn health_reasons_name_the_part_not_the_place() {
        let at = || "postgres://u:****@db.internal/x".to_string();
        let cases: Vec<(StoreError, &str)> = vec![
            (
                StoreError::Unreachable {
                    backend: uplink_store::Backend::Postgres,
                    at: at(),
                    detail: "connection refused".into(),
                },
                "store unreachable",
            ),
            (StoreError::WriterGone, "store writer unhealthy"),
            (
                StoreError::ReadOnly {
                    path: "/var/lib/uplink/uplink.db".into(),
                },
                "store read-only",
            ),
            (
                StoreError::Backend {
                    backend: uplink_store::Backend::Postgres,
                    at: at(),
                    detail: "permission denied".into(),
                },
                "store failing",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(health_reason(&e), want, "{e}");
        }
    }

    #[test]
    fn routing_by_sni_and_host() {
        let ws = "contososensorapi.uplink.localhost";
        let other = "fabrikamsensorapi.uplink.localhost";
        // (SNI, whether the SNI named a workspace, Host, expected status: 200 = routed)
        let cases: &[(Option<&str>, bool, Option<&str>, u16)] = &[
            (Some(ws), true, Some(ws), 200),
            // A connection for one workspace never serves another's requests.
            (Some(ws), true, Some(other), 421),
            (Some(other), false, Some(ws), 421),
            // No SNI (connected by address): refused whatever the Host.
            (None, false, Some(ws), 421),
            (None, true, Some(ws), 421),
            // The SNI names no workspace.
            (Some(ws), false, Some(ws), 404),
            // No Host at all.
            (Some(ws), true, None, 400),
            (None, false, None, 400),
        ];
        for &(sni, known, host, want) in cases {
            let target = "the workspace";
            let got = route(sni, known.then_some(&target), host);
            match got {
                Ok(t) => {
                    assert_eq!(want, 200, "{sni:?} {known} {host:?}");
                    assert_eq!(*t, target);
                }
                Err(r) => {
                    assert_eq!(r.status.as_u16(), want, "{sni:?} {known} {host:?}: {r:?}");
                    let code = if want == 404 {
                        Code::HTTP_UNEXPECTED_STATUS
                    } else {
                        Code::REQUEST_REJECTED
                    };
                    assert_eq!(r.code, code, "{r:?}");
                    if let Some(h) = host {
                        assert!(
                            r.message.contains(&format!("{h:?}")),
                            "names the host: {r:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_request_host_is_the_header_else_the_uri_normalised() {
        // (Host header, request URI, expected host)
        let cases: &[(Option<&str>, &str, Option<&str>)] = &[
            (
                Some("ContosoSensorAPI.uplink.localhost"),
                "/x",
                Some("contososensorapi.uplink.localhost"),
            ),
            (Some("a.example:8443"), "/x", Some("a.example")),
            (Some("a.example."), "/x", Some("a.example")),
            (Some("[::1]:8443"), "/x", Some("::1")),
            // The header wins over an absolute URI.
            (Some("a.example"), "https://b.example/x", Some("a.example")),
            (None, "https://B.example:443/x", Some("b.example")),
            (None, "/x", None),
        ];
        for &(header, uri, want) in cases {
            let mut req = Request::builder().uri(uri);
            if let Some(h) = header {
                req = req.header(header::HOST, h);
            }
            let req = req.body(()).unwrap();
            assert_eq!(request_host(&req).as_deref(), want, "{header:?} {uri}");
        }
        // A Host that is not text reads as absent, then the URI decides.
        let req = Request::builder()
            .uri("/x")
            .header(
                header::HOST,
                header::HeaderValue::from_bytes(b"\xff").unwrap(),
            )
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), None);
    }

    #[test]
    fn endpoints_by_path_and_method() {
        use uplink_protocol::{ENROLL_PATH, EVENTS_PATH, HEARTBEAT_PATH, PING_PATH, RENEW_PATH};
        let cases: &[(&str, Method, Endpoint)] = &[
            (PING_PATH, Method::GET, Endpoint::Ping),
            (PING_PATH, Method::HEAD, Endpoint::Ping),
            (PING_PATH, Method::POST, Endpoint::WrongMethod("GET, HEAD")),
            (ENROLL_PATH, Method::POST, Endpoint::Enroll),
            (ENROLL_PATH, Method::GET, Endpoint::WrongMethod("POST")),
            (EVENTS_PATH, Method::POST, Endpoint::Events),
            (EVENTS_PATH, Method::PUT, Endpoint::WrongMethod("POST")),
            (RENEW_PATH, Method::POST, Endpoint::Renew),
            (RENEW_PATH, Method::DELETE, Endpoint::WrongMethod("POST")),
            (HEARTBEAT_PATH, Method::POST, Endpoint::Heartbeat),
            (HEARTBEAT_PATH, Method::GET, Endpoint::WrongMethod("POST")),
            (uplink_policy::POLICY_PATH, Method::GET, Endpoint::Policy),
            (
                uplink_policy::POLICY_PATH,
                Method::POST,
                Endpoint::WrongMethod("GET"),
            ),
            ("/", Method::GET, Endpoint::NotFound),
            ("/api/v1/events/", Method::POST, Endpoint::NotFound),
            (HEALTHZ_PATH, Method::GET, Endpoint::NotFound),
        ];
        for (path, method, want) in cases {
            assert_eq!(endpoint(path, method), *want, "{method} {path}");
        }
        let resp = method_not_allowed("POST");
        assert_eq!(resp.headers()[header::ALLOW], "POST");
        let (status, code, _) = parts(resp);
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "REQUEST_REJECTED")
        );
    }

    #[test]
    fn clients_only_of_the_host_workspace() {
        let mine = ClientId {
            workspace: "contoso".into(),
            sensor_id: "s-1".into(),
            issuer_raw: vec![],
        };
        let theirs = ClientId {
            workspace: "fabrikam".into(),
            sensor_id: "s-2".into(),
            issuer_raw: vec![],
        };
        let none_revoked = |_: &str| false;
        assert_eq!(
            client_of(Some(&mine), "contoso", "enroll first", &none_revoked)
                .unwrap()
                .sensor_id,
            "s-1"
        );
        let none = client_of(None, "contoso", "enroll first", &none_revoked).unwrap_err();
        assert_eq!(
            none,
            Refusal {
                status: StatusCode::UNAUTHORIZED,
                code: Code::MTLS_REJECTED,
                message: "enroll first".into()
            }
        );
        let wrong = client_of(Some(&theirs), "contoso", "enroll first", &none_revoked).unwrap_err();
        assert_eq!(
            (wrong.status, wrong.code),
            (StatusCode::FORBIDDEN, Code::MTLS_REJECTED)
        );
        assert!(wrong.message.contains("\"fabrikam\""), "{wrong:?}");
        // A revoked sensor of this workspace: 403 CERT_REVOKED, saying how to come back.
        let revoked = |id: &str| id == "s-1";
        let refused = client_of(Some(&mine), "contoso", "enroll first", &revoked).unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::FORBIDDEN, Code::CERT_REVOKED)
        );
        assert!(refused.message.contains("s-1"), "{refused:?}");
        assert!(refused.message.contains("access key"), "{refused:?}");
        // Another workspace's certificate is refused as such, revoked or not.
        let wrong = client_of(Some(&theirs), "contoso", "enroll first", &revoked).unwrap_err();
        assert_eq!(wrong.code, Code::MTLS_REJECTED);
    }

    #[test]
    fn declared_lengths() {
        for (value, want) in [
            (Some("12"), Some(12)),
            (Some("0"), Some(0)),
            (Some("18446744073709551615"), Some(u64::MAX)),
            (Some("-1"), None),
            (Some("twelve"), None),
            (None, None),
        ] {
            let mut req = Request::builder();
            if let Some(v) = value {
                req = req.header(header::CONTENT_LENGTH, v);
            }
            assert_eq!(declared_length(&req.body(()).unwrap()), want, "{value:?}");
        }
    }

    /// The one buffer of a batch (issue #28): each kind (sent plainly, escaped, or the default)
    /// is appended once per run; every body is the line as sent.
    #[test]
    fn a_batch_keeps_each_kind_and_line_as_sent() {
        let lines = [
            "{\"seq\":1,\"kind\":\"a\"}",
            "{\"seq\":2}",
            "{\"seq\":3} ",
            "{\"kind\":\"b\\u0062\",\"seq\":4}",
            "{\"kind\":\"b\\u0062\",\"seq\":5}",
            "{\"seq\":6,\"kind\":\"c:d\",\"msg\":\"héé\"}",
            "{\"seq\":7}",
        ];
        let raw = format!("{}\r\n\n", lines.join("\n"));
        // (zstd bodies, decoded to an owned buffer, go the same way: hardening_svc:: tests.)
        let (batch, heartbeat) =
            decode_batch(body::Encoding::Identity, raw.as_bytes(), 1 << 20, 10, false).unwrap();
        assert_eq!(heartbeat, None);
        let got: Vec<_> = batch.iter().map(|e| (e.seq, e.kind, e.body)).collect();
        let kinds = ["a", "event", "event", "bb", "bb", "c:d", "event"];
        let want: Vec<_> = (0..7).map(|i| (i as u64 + 1, kinds[i], lines[i])).collect();
        assert_eq!(got, want);
    }

    /// A batch as sent (for a store that keeps it so) holds what the batch decoded whole holds:
    /// the same events, kinds and lines where they lie in the decoded body, whatever the frames
    /// (lines and characters across them), and the same last heartbeat (the sensor's report);
    /// and not the text, which it gets back decoded. A body of frames too small on average for
    /// its limit goes the whole way.
    #[test]
    fn a_batch_as_sent_holds_what_the_batch_decoded_whole_holds() {
        let long = format!(
            "{{\"seq\":9,\"kind\":\"log\",\"line\":\"{}é\"}}",
            "x".repeat(5000)
        );
        let beat =
            |seq: u32| format!("{{\"seq\":{seq},\"kind\":\"heartbeat\",\"state\":\"ok {seq}\"}}");
        let text = format!(
            "{{\"seq\":1,\"kind\":\"a\"}}\n{{\"seq\":2}}\r\n\n{}\n{{\"kind\":\"b\\u0062\",\"seq\":4}}\n{{\"seq\":6,\"msg\":\"日本 🚀\"}}\n{long}\n{}\n{{\"seq\":10}}",
            beat(3),
            beat(8),
        );
        // (frames of, the limit on the decoded body, whether the batch goes as sent)
        let cases = [
            (1, 1 << 30, true),
            (7, 1 << 30, true),
            (100, 1 << 30, true),
            (4096, 1 << 20, true),
            (1 << 18, 1 << 20, true),
            (7, 1 << 20, false),
        ];
        for (size, max_decoded, as_sent) in cases {
            let mut raw = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                raw.extend(zstd::bulk::compress(chunk, 1).unwrap());
            }
            let decode = |as_sent| {
                decode_batch(body::Encoding::Zstd, &raw, max_decoded, 100, as_sent).unwrap()
            };
            let (whole, whole_beat) = decode(false);
            let (mut sent, sent_beat) = decode(true);
            assert!(whole.has_text(), "frames of {size}");
            assert_eq!(sent.has_text(), !as_sent, "frames of {size}");
            assert_eq!(whole_beat, Some(beat(8)));
            assert_eq!(sent_beat, Some(beat(8)), "frames of {size}");
            assert_eq!(sent.text_len(), text.len());
            assert!(
                sent.body_ranges().eq(whole.body_ranges()),
                "frames of {size}"
            );
            sent.keep_zstd(raw.clone());
            let sent = sent.with_text().unwrap();
            let events: Vec<_> = sent.iter().collect();
            assert_eq!(events, whole.iter().collect::<Vec<_>>(), "frames of {size}");
            assert_eq!(events.len(), 8);
            assert_eq!((events[3].seq, events[3].kind), (4, "bb"));
        }
    }

    #[test]
    fn batches_map_to_statuses() {
        let ok = b"{\"seq\":1,\"kind\":\"a\"}\n{\"seq\":2}\n".as_slice();
        let (events, _) = decode_batch(body::Encoding::Identity, ok, 1 << 20, 10, false).unwrap();
        assert_eq!(
            events.iter().map(|e| (e.seq, e.kind)).collect::<Vec<_>>(),
            [(1, "a"), (2, "event")]
        );
        // (encoding, body, max decoded bytes, max events, status, message starts with)
        type Case<'a> = (body::Encoding, &'a [u8], usize, usize, StatusCode, &'a str);
        let cases: &[Case] = &[
            (
                body::Encoding::Identity,
                ok,
                ok.len() - 1,
                10,
                StatusCode::PAYLOAD_TOO_LARGE,
                "",
            ),
            (
                body::Encoding::Identity,
                ok,
                1 << 20,
                1,
                StatusCode::PAYLOAD_TOO_LARGE,
                "the batch has",
            ),
            (
                body::Encoding::Identity,
                b"",
                1 << 20,
                10,
                StatusCode::BAD_REQUEST,
                "the batch was refused",
            ),
            (
                body::Encoding::Identity,
                b"not json\n",
                1 << 20,
                10,
                StatusCode::BAD_REQUEST,
                "the batch was refused, nothing stored: line 1",
            ),
            (
                body::Encoding::Identity,
                b"{\"seq\":1}\n{\"seq\":1}\n",
                1 << 20,
                10,
                StatusCode::BAD_REQUEST,
                "the batch was refused",
            ),
            (
                body::Encoding::Zstd,
                b"not zstd",
                1 << 20,
                10,
                StatusCode::BAD_REQUEST,
                "",
            ),
        ];
        // The same compressed, in frames that declare their sizes (a batch as sent is refused
        // as the batch decoded whole is).
        let framed: Vec<(Vec<u8>, &Case)> = cases
            .iter()
            .filter(|c| c.0 == body::Encoding::Identity && !c.1.is_empty())
            .map(|c| {
                let raw =
                    c.1.chunks(5)
                        .flat_map(|p| zstd::bulk::compress(p, 1).unwrap())
                        .collect();
                (raw, c)
            })
            .collect();
        let framed = framed
            .iter()
            .map(|(raw, c)| (body::Encoding::Zstd, &raw[..], c.2, c.3, c.4, c.5));
        for (i, (encoding, raw, max_decoded, max_events, status, prefix)) in
            cases.iter().copied().chain(framed).enumerate()
        {
            for as_sent in [false, true] {
                let resp = *decode_batch(encoding, raw, max_decoded, max_events, as_sent)
                    .expect_err(&format!("case {i} is refused"));
                let (got, code, message) = parts(resp);
                assert_eq!(got, status, "case {i}: {message}");
                assert_eq!(code, "REQUEST_REJECTED", "case {i}");
                assert!(message.starts_with(prefix), "case {i}: {message}");
            }
        }
    }

    #[test]
    fn error_bodies_carry_the_code_and_the_protocol_version() {
        let resp = unavailable();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            resp.headers()[uplink_protocol::VERSION_HEADER],
            uplink_protocol::VERSION.to_string().as_str()
        );
        let (status, code, message) = parts(resp);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "SERVICE_UNAVAILABLE");
        assert!(message.contains("nothing was stored"));
        let refused = route::<()>(None, None, None).unwrap_err().response();
        assert_eq!(parts(refused).0, StatusCode::BAD_REQUEST);
    }
}
