//! The admin JSON API on the console host: `https://<workspace>.<domain>/api/v1/admin/…`
//! (docs/admin-api.md, issue #23).
//!
//! Everything `uplink fleet` and the workspace's settings and tokens commands do, for scripts and
//! other systems, with the same JSON shapes (`uplink_store::fleet::{sensor_json, issue_json}`).
//! A request carries `Authorization: Bearer TOKEN`: a token of the host's workspace
//! (`uplink admin token create`); a viewer token may only `GET`. A missing, malformed, revoked or
//! other workspace's token is the same 401 (`ADMIN_TOKEN_INVALID`), so a caller learns nothing
//! about other workspaces. Errors are `{"code","message"}`.
//!
//! The decisions are pure and table-tested here: which endpoint a path and method are
//! ([`endpoint`]), whether a token may call it ([`authorize`]), the bearer header ([`bearer`]),
//! a page of sensors ([`page`]). The handlers only read the body, call the store and answer.
//! The console's pages (a later issue) are not here.

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use uplink_diag::Code;
use uplink_store::fleet::{issue_json, sensor_detail_json, sensor_json};
use uplink_store::{
    AdminToken, FleetSensor, IssueState, SettingsChange, Store, StoreError, TokenRole, TokenSecret,
};

use crate::registry::Workspace;
use crate::routes::{error, json as json_response, read_body, unavailable};
use crate::Shared;

/// Where the admin API lives on the console host.
pub const PREFIX: &str = "/api/v1/admin/";
/// Largest request body (suppressions, settings, token creation are a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// Sensors per page when `limit` is not given, and the most a page may hold.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// The OpenAPI document (served at `openapi.json`).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The admin API's endpoints. Ids are as they came in the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    OpenApi,
    Sensors,
    Sensor(String),
    Issues,
    Suppress(String),
    Unsuppress(String),
    Settings,
    SetSettings,
    Tokens,
    CreateToken,
    RevokeToken(String),
    /// Central policy (issue #26): `GET`, `PUT`, `DELETE policy`.
    Policy,
    SetPolicy,
    ClearPolicy,
    /// Sensor lifecycle (issue #24): `POST sensors/{id}/revoke` and `POST
    /// sensors/{id}/decommission` with `{"reason"}`, `POST access-key/rotate`, `GET audit`.
    Revoke(String),
    Decommission(String),
    RotateAccessKey,
    Audit,
    /// CA rotation (issue #24): `POST ca/rotate`, `POST ca/retire`.
    RotateCa,
    RetireCa,
    /// A known path with another method: the methods it takes.
    WrongMethod(&'static str),
    NotFound,
}

/// The endpoint `path` (after [`PREFIX`]) and `method` name. Pure.
pub fn endpoint(path: &str, method: &Method) -> Endpoint {
    let parts: Vec<&str> = path.split('/').collect();
    let get = method == Method::GET || method == Method::HEAD;
    let ok_id = |s: &str| !s.is_empty() && s.len() <= 200;
    match parts.as_slice() {
        ["openapi.json"] if get => Endpoint::OpenApi,
        ["openapi.json"] => Endpoint::WrongMethod("GET"),
        ["sensors"] if get => Endpoint::Sensors,
        ["sensors"] => Endpoint::WrongMethod("GET"),
        ["sensors", id] if ok_id(id) && get => Endpoint::Sensor((*id).to_owned()),
        ["sensors", id] if ok_id(id) => Endpoint::WrongMethod("GET"),
        ["issues"] if get => Endpoint::Issues,
        ["issues"] => Endpoint::WrongMethod("GET"),
        ["issues", id, "suppress"] if ok_id(id) && method == Method::POST => {
            Endpoint::Suppress((*id).to_owned())
        }
        ["issues", id, "unsuppress"] if ok_id(id) && method == Method::POST => {
            Endpoint::Unsuppress((*id).to_owned())
        }
        ["issues", id, "suppress" | "unsuppress"] if ok_id(id) => Endpoint::WrongMethod("POST"),
        ["settings"] if get => Endpoint::Settings,
        ["settings"] if method == Method::PATCH => Endpoint::SetSettings,
        ["settings"] => Endpoint::WrongMethod("GET, PATCH"),
        ["tokens"] if get => Endpoint::Tokens,
        ["tokens"] if method == Method::POST => Endpoint::CreateToken,
        ["tokens"] => Endpoint::WrongMethod("GET, POST"),
        ["tokens", id] if ok_id(id) && method == Method::DELETE => {
            Endpoint::RevokeToken((*id).to_owned())
        }
        ["tokens", id] if ok_id(id) => Endpoint::WrongMethod("DELETE"),
        ["policy"] if get => Endpoint::Policy,
        ["policy"] if method == Method::PUT => Endpoint::SetPolicy,
        ["policy"] if method == Method::DELETE => Endpoint::ClearPolicy,
        ["policy"] => Endpoint::WrongMethod("GET, PUT, DELETE"),
        ["sensors", id, "revoke"] if ok_id(id) && method == Method::POST => {
            Endpoint::Revoke((*id).to_owned())
        }
        ["sensors", id, "decommission"] if ok_id(id) && method == Method::POST => {
            Endpoint::Decommission((*id).to_owned())
        }
        ["sensors", id, "revoke" | "decommission"] if ok_id(id) => Endpoint::WrongMethod("POST"),
        ["access-key", "rotate"] if method == Method::POST => Endpoint::RotateAccessKey,
        ["access-key", "rotate"] => Endpoint::WrongMethod("POST"),
        ["ca", "rotate"] if method == Method::POST => Endpoint::RotateCa,
        ["ca", "retire"] if method == Method::POST => Endpoint::RetireCa,
        ["ca", "rotate" | "retire"] => Endpoint::WrongMethod("POST"),
        ["audit"] if get => Endpoint::Audit,
        ["audit"] => Endpoint::WrongMethod("GET"),
        _ => Endpoint::NotFound,
    }
}

/// What a state-changing endpoint records in the workspace's audit trail: its action and the
/// sensor it acts on (`None` for reads, which are not audited). Pure.
pub fn audit_action(ep: &Endpoint) -> Option<(&'static str, Option<String>)> {
    Some(match ep {
        Endpoint::Suppress(_) => ("suppress", None),
        Endpoint::Unsuppress(_) => ("unsuppress", None),
        Endpoint::SetSettings => ("settings", None),
        Endpoint::CreateToken => ("token_create", None),
        Endpoint::RevokeToken(_) => ("token_revoke", None),
        Endpoint::SetPolicy => ("policy_set", None),
        Endpoint::ClearPolicy => ("policy_clear", None),
        Endpoint::Revoke(id) => ("revoke", Some(id.clone())),
        Endpoint::Decommission(id) => ("decommission", Some(id.clone())),
        Endpoint::RotateAccessKey => ("rotate_access_key", None),
        Endpoint::RotateCa => ("rotate_ca", None),
        Endpoint::RetireCa => ("retire_ca", None),
        _ => return None,
    })
}

/// A refusal: status, code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
}

/// The secret of an `Authorization: Bearer …` header, when it has a token's shape. Pure.
pub fn bearer(header: Option<&str>) -> Option<TokenSecret> {
    let value = header?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    TokenSecret::parse(rest.trim())
}

/// Whether `token` (the one the presented secret names, if any) may call `method` on the
/// admin API of `workspace`. Another workspace's token is refused exactly like an unknown one.
/// Pure.
pub fn authorize(
    token: Option<&AdminToken>,
    workspace: &str,
    method: &Method,
) -> Result<(), Refusal> {
    let Some(token) = token.filter(|t| t.workspace == workspace) else {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: Code::ADMIN_TOKEN_INVALID,
            message: format!(
                "no valid token: send `Authorization: Bearer TOKEN` with a token of workspace {workspace:?} (uplink admin token create {workspace} --name N)"
            ),
        });
    };
    let reads = method == Method::GET || method == Method::HEAD;
    if token.role == TokenRole::Viewer && !reads {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: Code::ADMIN_FORBIDDEN,
            message: format!(
                "token {:?} is a viewer token: it may only read (GET); use an admin token for {method}",
                token.name
            ),
        });
    }
    Ok(())
}

/// The query's `limit` and `cursor`, or why they are refused. Pure.
pub fn page_params(query: Option<&str>) -> Result<(usize, Option<String>), String> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (k, v) in form_pairs(query.unwrap_or("")) {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit={v:?} is not a number from 1 to {MAX_LIMIT}"))?
            }
            "cursor" if !v.is_empty() => cursor = Some(v),
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// `key=value` pairs of a query string, percent-decoded (`+` is a space, as in HTML forms;
/// a `%` not followed by two hex digits stays as it is). Pure.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// One page of sensors ordered by id: at most `limit` after `cursor` (the last id of the
/// previous page), and the cursor of the next page when there is more. Pure.
pub fn page(
    mut sensors: Vec<FleetSensor>,
    limit: usize,
    cursor: Option<&str>,
) -> (Vec<FleetSensor>, Option<String>) {
    sensors.sort_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
    let rest: Vec<FleetSensor> = sensors
        .into_iter()
        .filter(|s| cursor.is_none_or(|c| s.sensor_id.as_str() > c))
        .collect();
    let more = rest.len() > limit;
    let items: Vec<FleetSensor> = rest.into_iter().take(limit).collect();
    let next = if more {
        items.last().map(|s| s.sensor_id.clone())
    } else {
        None
    };
    (items, next)
}

fn refuse(r: Refusal) -> Response<Full<Bytes>> {
    error(r.status, r.code, r.message)
}

fn bad_request(message: String) -> Response<Full<Bytes>> {
    error(StatusCode::BAD_REQUEST, Code::REQUEST_REJECTED, message)
}

fn not_found(message: String) -> Response<Full<Bytes>> {
    error(StatusCode::NOT_FOUND, Code::HTTP_UNEXPECTED_STATUS, message)
}

/// A store error as the API answers it: the store unusable is 503; anything else a 400 with
/// its message (which names no other workspace: every call is scoped to the host's).
fn store_error(e: StoreError) -> Response<Full<Bytes>> {
    if e.is_unavailable() && !matches!(e, StoreError::Settings(_)) {
        tracing::warn!(error = %e, "admin API: the store failed");
        return unavailable();
    }
    match e {
        StoreError::TokenExists { .. } => {
            error(StatusCode::CONFLICT, Code::REQUEST_REJECTED, e.to_string())
        }
        e => bad_request(e.to_string()),
    }
}

/// Answers a request to the admin API of `ws` (its path starts with [`PREFIX`]).
pub(crate) async fn handle<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path()[PREFIX.len()..].to_owned();
    let ep = endpoint(&path, req.method());
    match &ep {
        Endpoint::OpenApi => {
            let mut resp = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            return resp;
        }
        Endpoint::WrongMethod(allow) => {
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::REQUEST_REJECTED,
                format!("use {allow} on this endpoint"),
            );
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            return resp;
        }
        Endpoint::NotFound => {
            return not_found(format!(
                "no admin API endpoint {PREFIX}{path}: see {PREFIX}openapi.json"
            ))
        }
        _ => {}
    }
    // Authentication before anything is read of the workspace.
    let presented = bearer(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    );
    let token = match presented {
        Some(secret) => match shared.store.token_by_hash(&secret.sha256()).await {
            Ok(t) => t,
            Err(e) => return store_error(e),
        },
        None => None,
    };
    let audited = audit_action(&ep);
    if let Err(r) = authorize(token.as_ref(), &ws.name, req.method()) {
        tracing::info!(workspace = %ws.name, status = r.status.as_u16(), code = r.code.as_str(), "admin API request refused");
        // A known token acting beyond its role (a viewer, another workspace's) is audited in the
        // workspace it tried to act on; requests without a valid token are only logged.
        if let (Some((action, sensor)), Some(t)) = (&audited, &token) {
            audit(
                shared,
                &ws.name,
                &t.name,
                peer,
                action,
                sensor.clone(),
                false,
                r.message.clone(),
            )
            .await;
        }
        return refuse(r);
    }
    let Some(token) = token else {
        return unavailable();
    };
    let ws = ws.name.as_str();
    // What the audit entry says besides the status (a revocation's reason).
    let mut detail = String::new();
    let resp = answer(shared, ws, &token, ep, req, &mut detail).await;
    if let Some((action, sensor)) = audited {
        let status = resp.status();
        let what = if detail.is_empty() {
            status.to_string()
        } else {
            detail
        };
        audit(
            shared,
            ws,
            &token.name,
            peer,
            action,
            sensor,
            status.is_success(),
            what,
        )
        .await;
    }
    resp
}

/// Records an admin API action in the workspace's audit trail (who: `token:NAME`, from where:
/// the client's address). A failure to record is logged: the answer stands.
#[allow(clippy::too_many_arguments)]
async fn audit<S: Store>(
    shared: &Shared<S>,
    ws: &str,
    token: &str,
    peer: IpAddr,
    action: &str,
    sensor_id: Option<String>,
    ok: bool,
    detail: String,
) {
    let e = uplink_store::AuditEntry {
        workspace: ws.to_owned(),
        at: uplink_store::now_ms(),
        actor: format!("token:{token}"),
        source: peer.to_string(),
        action: action.to_owned(),
        sensor_id,
        result: if ok { "ok" } else { "refused" }.to_owned(),
        detail: uplink_store::lifecycle::audit_detail(&detail),
    };
    if let Err(err) = shared.store.record_audit(e).await {
        tracing::warn!(error = %err, action, "admin API: recording the audit entry failed");
    }
}

/// The answer of an authorized request to endpoint `ep` of workspace `ws`.
async fn answer<S: Store>(
    shared: &Shared<S>,
    ws: &str,
    token: &AdminToken,
    ep: Endpoint,
    req: Request<Incoming>,
    detail: &mut String,
) -> Response<Full<Bytes>> {
    let store = &shared.store;
    let decommission = matches!(ep, Endpoint::Decommission(_));
    match ep {
        Endpoint::Sensors => {
            let (limit, cursor) = match page_params(req.uri().query()) {
                Ok(p) => p,
                Err(m) => return bad_request(m),
            };
            let (sensors, issues, revoked) = match fleet(store, ws).await {
                Ok(x) => x,
                Err(e) => return store_error(e),
            };
            let (items, next) = page(sensors, limit, cursor.as_deref());
            let rows: Vec<Value> = items
                .iter()
                .map(|s| {
                    let r = revoked.iter().find(|r| r.sensor_id == s.sensor_id);
                    sensor_json(s, &issues, r)
                })
                .collect();
            ok(&json!({ "sensors": rows, "next_cursor": next }))
        }
        Endpoint::Sensor(id) => match sensor_detail(store, ws, &id).await {
            Ok(Some((_, v))) => ok(&v),
            Ok(None) => not_found(format!("no sensor {id:?} in workspace {ws:?}")),
            Err(e) => store_error(e),
        },
        Endpoint::Issues => {
            let all = form_pairs(req.uri().query().unwrap_or(""))
                .iter()
                .any(|(k, v)| k == "all" && (v == "true" || v == "1"));
            match store.fleet_issues(ws).await {
                Ok(issues) => {
                    let v: Vec<Value> = issues
                        .iter()
                        .filter(|i| all || i.state != IssueState::Closed)
                        .map(issue_json)
                        .collect();
                    ok(&json!({ "issues": v }))
                }
                Err(e) => store_error(e),
            }
        }
        Endpoint::Suppress(id) => {
            let body = match json_body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let days = body.get("days").and_then(Value::as_u64);
            let reason = body.get("reason").and_then(Value::as_str).unwrap_or("");
            let by = format!("token:{}", token.name);
            let until = match suppression_until(days, reason, uplink_store::now_ms()) {
                Ok(u) => u,
                Err(m) => return bad_request(m),
            };
            suppression(
                store
                    .suppress_issue(ws, &id, Some((until, reason.to_owned(), by)))
                    .await,
                ws,
                &id,
            )
        }
        Endpoint::Unsuppress(id) => suppression(store.suppress_issue(ws, &id, None).await, ws, &id),
        Endpoint::Settings => match store.workspace_settings(ws).await {
            Ok(s) => ok(&settings_json(&s)),
            Err(e) => store_error(e),
        },
        Endpoint::SetSettings => {
            let body = match json_body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let change = match settings_change(&body) {
                Ok(c) => c,
                Err(m) => return bad_request(m),
            };
            match store.set_workspace_settings(ws, change).await {
                Ok(s) => ok(&settings_json(&s)),
                Err(e) => store_error(e),
            }
        }
        Endpoint::Tokens => match store.tokens(ws).await {
            Ok(all) => {
                let v: Vec<Value> = all.iter().map(AdminToken::to_json).collect();
                ok(&json!({ "tokens": v }))
            }
            Err(e) => store_error(e),
        },
        Endpoint::CreateToken => {
            let body = match json_body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let name = body.get("name").and_then(Value::as_str).unwrap_or("");
            if !uplink_store::tokens::valid_name(name) {
                return bad_request(format!("\"name\" {name:?} is not a token name: use 1 to 64 letters, digits, '-', '_' or '.', not starting with \"tok-\""));
            }
            let role = match body.get("role").and_then(Value::as_str) {
                None => TokenRole::Admin,
                Some(r) => match TokenRole::parse(r) {
                    Some(r) => r,
                    None => {
                        return bad_request(format!(
                            "\"role\" {r:?} is not a role: use admin or viewer"
                        ))
                    }
                },
            };
            let (secret, id) = TokenSecret::generate();
            let created = AdminToken {
                id,
                workspace: ws.to_owned(),
                name: name.to_owned(),
                role,
                created_at: uplink_store::now_ms(),
            };
            match store.create_token(created.clone(), secret.sha256()).await {
                Ok(()) => {
                    let mut v = created.to_json();
                    v["token"] = json!(secret.expose());
                    json_response(StatusCode::CREATED, &v)
                }
                Err(e) => store_error(e),
            }
        }
        Endpoint::RevokeToken(id) => match store.revoke_token(ws, &id).await {
            Ok(Some(t)) => ok(&t.to_json()),
            Ok(None) => not_found(format!("no token {id:?} in workspace {ws:?}")),
            Err(e) => store_error(e),
        },
        // Central policy (issue #26, docs/policy.md): the shapes of `fleet policy show --json`.
        Endpoint::Policy => {
            match tokio::try_join!(store.policy_versions(ws), store.fleet_sensors(ws)) {
                Ok((versions, sensors)) => {
                    ok(&uplink_store::policy::show_json(ws, &versions, &sensors))
                }
                Err(e) => store_error(e),
            }
        }
        Endpoint::SetPolicy => {
            let body = match json_body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let policy: uplink_policy::Policy = match serde_json::from_value(body) {
                Ok(p) => p,
                // serde's words name the field; the body (which may hold a password) is not echoed.
                Err(e) => return bad_request(format!("the body is not a policy ({e}): send {{\"route\":{{\"kind\":\"proxy\",\"url\":\"http://HOST:PORT\"}},\"target\":\"all\"}}; see {PREFIX}openapi.json")),
            };
            match store.set_policy(ws, policy).await {
                Ok(p) => {
                    tracing::info!(workspace = ws, version = p.version, token = %token.name, "policy set through the admin API");
                    ok(&uplink_store::policy::policy_json(&p))
                }
                Err(e) => store_error(e),
            }
        }
        Endpoint::ClearPolicy => match store.clear_policy(ws).await {
            Ok(v) => ok(&json!({ "version": v, "cleared": true })),
            Err(e) => store_error(e),
        },
        Endpoint::Revoke(id) | Endpoint::Decommission(id) => {
            let body = match json_body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let reason = body
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_owned();
            if reason.is_empty() {
                return bad_request(
                    "\"reason\" must say why the sensor is revoked (it is kept in the audit trail): send {\"reason\": \"…\"}".into(),
                );
            }
            *detail = reason.clone();
            match store.revoke_sensor(ws, &id, &reason, decommission).await {
                Ok(_) => match sensor_detail(store, ws, &id).await {
                    Ok(Some((_, v))) => ok(&v),
                    Ok(None) => not_found(format!("no sensor {id:?} in workspace {ws:?}")),
                    Err(e) => store_error(e),
                },
                Err(StoreError::NoSuchSensor(_)) => {
                    not_found(format!("no sensor {id:?} in workspace {ws:?}"))
                }
                Err(e) => store_error(e),
            }
        }
        Endpoint::RotateAccessKey => match crate::admin::rotate_access_key(store, ws).await {
            Ok(()) => ok(&json!({
                "workspace": ws,
                "rotated": true,
                "note": "the old access key enrolls no new sensor from now on (enrolled sensors are unaffected); get the new bundle with `uplink workspace bundle` or the console's Deploy page",
            })),
            Err(e) => store_error(e),
        },
        Endpoint::RotateCa => match crate::admin::rotate_ca(store, ws).await {
            Ok(r) => {
                *detail = format!("new CA {} (previous {})", r.ca_sha256, r.previous_ca_sha256);
                ok(&json!({
                    "workspace": ws,
                    "ca_sha256": r.ca_sha256,
                    "previous_ca_sha256": r.previous_ca_sha256,
                }))
            }
            // A previous CA still trusted: retire it first.
            Err(crate::admin::AdminError::Store(StoreError::Settings(m))) => {
                *detail = m.clone();
                error(StatusCode::CONFLICT, Code::REQUEST_REJECTED, m)
            }
            Err(crate::admin::AdminError::Store(e)) => store_error(e),
            Err(e) => {
                *detail = e.to_string();
                error(StatusCode::CONFLICT, Code::REQUEST_REJECTED, e.to_string())
            }
        },
        Endpoint::RetireCa => match crate::admin::retire_previous_ca(store, ws).await {
            Ok((current, gone)) => {
                *detail = format!("retired {}", gone.join(", "));
                ok(&json!({ "workspace": ws, "ca_sha256": current, "retired": gone }))
            }
            Err(crate::admin::AdminError::Store(e)) => store_error(e),
            Err(e) => {
                *detail = e.to_string();
                error(StatusCode::CONFLICT, Code::REQUEST_REJECTED, e.to_string())
            }
        },
        Endpoint::Audit => {
            let limit = form_pairs(req.uri().query().unwrap_or(""))
                .iter()
                .find(|(k, _)| k == "limit")
                .map(|(_, v)| v.parse::<usize>());
            let limit = match limit {
                None => DEFAULT_LIMIT,
                Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
                Some(_) => {
                    return bad_request(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}"
                    ))
                }
            };
            match store.audit(ws, limit).await {
                Ok(entries) => {
                    let v: Vec<Value> = entries.iter().map(|e| e.to_json()).collect();
                    ok(&json!({ "entries": v }))
                }
                Err(e) => store_error(e),
            }
        }
        Endpoint::OpenApi | Endpoint::WrongMethod(_) | Endpoint::NotFound => unavailable(),
    }
}

// Shared with the web console (`console.rs`): one source of truth for what both show and do.

/// A workspace's sensors, issues and revocations, read together.
pub(crate) async fn fleet<S: Store>(
    store: &S,
    ws: &str,
) -> Result<
    (
        Vec<FleetSensor>,
        Vec<uplink_store::Issue>,
        Vec<uplink_store::Revocation>,
    ),
    StoreError,
> {
    tokio::try_join!(
        store.fleet_sensors(ws),
        store.fleet_issues(ws),
        store.revocations(ws)
    )
}

/// One sensor as `GET sensors/{id}` answers it (`sensor_detail_json`), `None` when the
/// workspace has no such sensor.
pub(crate) async fn sensor_detail<S: Store>(
    store: &S,
    ws: &str,
    id: &str,
) -> Result<Option<(FleetSensor, Value)>, StoreError> {
    let (sensors, issues, revoked) = fleet(store, ws).await?;
    let Some(s) = sensors.into_iter().find(|s| s.sensor_id == id) else {
        return Ok(None);
    };
    let own: Vec<_> = issues
        .into_iter()
        .filter(|i| i.sensor_id.as_deref() == Some(&s.sensor_id))
        .collect();
    let r = revoked.iter().find(|r| r.sensor_id == s.sensor_id);
    let v = sensor_detail_json(&s, &own, r);
    Ok(Some((s, v)))
}

/// Until when a suppression of `days` days for `reason` lasts, or why it is refused. Pure.
pub(crate) fn suppression_until(
    days: Option<u64>,
    reason: &str,
    now_ms: i64,
) -> Result<i64, String> {
    let Some(days) = days.filter(|d| (1..=3650).contains(d)) else {
        return Err("\"days\" must be a number from 1 to 3650".into());
    };
    if reason.trim().is_empty() {
        return Err("\"reason\" must say why the issue is suppressed".into());
    }
    Ok(now_ms + (days as i64) * 86_400_000)
}

fn ok(v: &Value) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, v)
}

fn suppression(
    res: Result<Option<uplink_store::Issue>, StoreError>,
    ws: &str,
    id: &str,
) -> Response<Full<Bytes>> {
    match res {
        Ok(Some(issue)) => ok(&issue_json(&issue)),
        Ok(None) => not_found(format!("no issue {id:?} in workspace {ws:?}")),
        Err(e) => store_error(e),
    }
}

/// The settings as `GET settings` answers them (the names of `workspace show --json`).
fn settings_json(s: &uplink_store::WorkspaceSettings) -> Value {
    json!({
        "retention_days": s.retention_days,
        "disconnected_after_secs": s.disconnected_after_secs,
    })
}

/// A `PATCH settings` body as a change; unknown fields are refused (a typo must not pass). Pure.
pub fn settings_change(body: &Value) -> Result<SettingsChange, String> {
    let Some(obj) = body.as_object() else {
        return Err("the body must be a JSON object".into());
    };
    let mut change = SettingsChange::default();
    for (k, v) in obj {
        match k.as_str() {
            "retention_days" => {
                change.retention_days = Some(
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or("\"retention_days\" must be a whole number of days")?,
                )
            }
            "disconnected_after_secs" => {
                change.disconnected_after_secs = Some(
                    v.as_u64()
                        .ok_or("\"disconnected_after_secs\" must be a whole number of seconds")?,
                )
            }
            other => {
                return Err(format!(
                    "unknown setting {other:?}: use retention_days or disconnected_after_secs"
                ))
            }
        }
    }
    if change == SettingsChange::default() {
        return Err("nothing to change: give retention_days and/or disconnected_after_secs".into());
    }
    change.validate().map_err(|e| e.to_string())?;
    Ok(change)
}

async fn json_body(req: Request<Incoming>) -> Result<Value, Response<Full<Bytes>>> {
    let (_, body) = read_body(req, MAX_BODY).await?;
    serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "the body is not valid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(ws: &str, role: TokenRole) -> AdminToken {
        AdminToken {
            id: "tok-1".into(),
            workspace: ws.into(),
            name: "t".into(),
            role,
            created_at: 0,
        }
    }

    #[test]
    fn paths_and_methods_name_endpoints() {
        use Endpoint::*;
        let cases: &[(&str, Method, Endpoint)] = &[
            ("openapi.json", Method::GET, OpenApi),
            ("openapi.json", Method::POST, WrongMethod("GET")),
            ("sensors", Method::GET, Sensors),
            ("sensors", Method::HEAD, Sensors),
            ("sensors", Method::DELETE, WrongMethod("GET")),
            ("sensors/abc", Method::GET, Sensor("abc".into())),
            ("sensors/", Method::GET, NotFound),
            ("sensors/a/b", Method::GET, NotFound),
            ("issues", Method::GET, Issues),
            (
                "issues/iss-1/suppress",
                Method::POST,
                Suppress("iss-1".into()),
            ),
            (
                "issues/iss-1/unsuppress",
                Method::POST,
                Unsuppress("iss-1".into()),
            ),
            ("issues/iss-1/suppress", Method::GET, WrongMethod("POST")),
            ("issues/iss-1", Method::GET, NotFound),
            ("settings", Method::GET, Settings),
            ("settings", Method::PATCH, SetSettings),
            ("settings", Method::PUT, WrongMethod("GET, PATCH")),
            ("tokens", Method::GET, Tokens),
            ("tokens", Method::POST, CreateToken),
            ("tokens/ci", Method::DELETE, RevokeToken("ci".into())),
            ("tokens/ci", Method::GET, WrongMethod("DELETE")),
            ("policy", Method::GET, Policy),
            ("policy", Method::PUT, SetPolicy),
            ("policy", Method::DELETE, ClearPolicy),
            ("policy", Method::POST, WrongMethod("GET, PUT, DELETE")),
            ("sensors/s1/revoke", Method::POST, Revoke("s1".into())),
            (
                "sensors/s1/decommission",
                Method::POST,
                Decommission("s1".into()),
            ),
            ("sensors/s1/revoke", Method::GET, WrongMethod("POST")),
            ("sensors/s1/forget", Method::POST, NotFound),
            ("access-key/rotate", Method::POST, RotateAccessKey),
            ("access-key/rotate", Method::GET, WrongMethod("POST")),
            ("audit", Method::GET, Audit),
            ("ca/rotate", Method::POST, RotateCa),
            ("ca/retire", Method::POST, RetireCa),
            ("ca/retire", Method::GET, WrongMethod("POST")),
            ("ca", Method::POST, NotFound),
            ("audit", Method::POST, WrongMethod("GET")),
            ("", Method::GET, NotFound),
            ("nope", Method::GET, NotFound),
        ];
        for (path, method, want) in cases {
            assert_eq!(&endpoint(path, method), want, "{method} {path}");
        }
    }

    #[test]
    fn every_state_changing_endpoint_is_audited_and_no_read_is() {
        use Endpoint::*;
        type Audited<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: &[(Endpoint, Audited)] = &[
            (Suppress("i".into()), Some(("suppress", None))),
            (Unsuppress("i".into()), Some(("unsuppress", None))),
            (SetSettings, Some(("settings", None))),
            (CreateToken, Some(("token_create", None))),
            (RevokeToken("t".into()), Some(("token_revoke", None))),
            (SetPolicy, Some(("policy_set", None))),
            (ClearPolicy, Some(("policy_clear", None))),
            (Revoke("s1".into()), Some(("revoke", Some("s1")))),
            (
                Decommission("s1".into()),
                Some(("decommission", Some("s1"))),
            ),
            (RotateAccessKey, Some(("rotate_access_key", None))),
            (RotateCa, Some(("rotate_ca", None))),
            (RetireCa, Some(("retire_ca", None))),
            (Sensors, None),
            (Sensor("s1".into()), None),
            (Issues, None),
            (Settings, None),
            (Tokens, None),
            (Policy, None),
            (Audit, None),
            (OpenApi, None),
        ];
        for (ep, want) in cases {
            let got = audit_action(ep);
            assert_eq!(
                got.as_ref().map(|(a, s)| (*a, s.as_deref())),
                *want,
                "{ep:?}"
            );
            if let Some((action, _)) = got {
                assert!(
                    uplink_store::lifecycle::AUDIT_ACTIONS.contains(&action),
                    "{action} is not a listed audit action"
                );
            }
        }
    }

    #[test]
    fn tokens_are_checked_for_workspace_and_role() {
        let admin = token("w", TokenRole::Admin);
        let viewer = token("w", TokenRole::Viewer);
        let other = token("x", TokenRole::Admin);
        /// A token, a method, and the refusal's status and code (`None`: allowed).
        type Case<'a> = (Option<&'a AdminToken>, Method, Option<(u16, Code)>);
        let cases: &[Case] = &[
            (Some(&admin), Method::GET, None),
            (Some(&admin), Method::POST, None),
            (Some(&admin), Method::DELETE, None),
            (Some(&viewer), Method::GET, None),
            (Some(&viewer), Method::HEAD, None),
            (
                Some(&viewer),
                Method::POST,
                Some((403, Code::ADMIN_FORBIDDEN)),
            ),
            (
                Some(&viewer),
                Method::PATCH,
                Some((403, Code::ADMIN_FORBIDDEN)),
            ),
            (
                Some(&viewer),
                Method::DELETE,
                Some((403, Code::ADMIN_FORBIDDEN)),
            ),
            (None, Method::GET, Some((401, Code::ADMIN_TOKEN_INVALID))),
            // Another workspace's token: the same answer as none at all.
            (
                Some(&other),
                Method::GET,
                Some((401, Code::ADMIN_TOKEN_INVALID)),
            ),
        ];
        for (t, method, want) in cases {
            let got = authorize(*t, "w", method)
                .err()
                .map(|r| (r.status.as_u16(), r.code));
            assert_eq!(&got, want, "{t:?} {method}");
        }
        let none = authorize(None, "w", &Method::GET).unwrap_err();
        let foreign = authorize(Some(&other), "w", &Method::GET).unwrap_err();
        assert_eq!(
            none, foreign,
            "nothing tells another workspace's token apart"
        );
    }

    #[test]
    fn bearer_headers() {
        let secret = format!("upk_{}", "0f".repeat(32));
        for (h, ok) in [
            (Some(format!("Bearer {secret}")), true),
            (Some(format!("bearer  {secret} ")), true),
            (Some(format!("Basic {secret}")), false),
            (Some(secret.clone()), false),
            (Some("Bearer upk_short".into()), false),
            (None, false),
        ] {
            assert_eq!(bearer(h.as_deref()).is_some(), ok, "{h:?}");
        }
    }

    fn sensor(id: &str) -> FleetSensor {
        FleetSensor {
            sensor_id: id.into(),
            workspace: "w".into(),
            name: id.into(),
            enrolled_at: 0,
            last_seen: None,
            report: None,
            report_received_at: None,
            state: None,
            health: None,
            outages: vec![],
        }
    }

    #[test]
    fn pages_walk_every_sensor_once() {
        let all: Vec<FleetSensor> = ["d", "a", "c", "b", "e"].into_iter().map(sensor).collect();
        let ids = |v: &[FleetSensor]| v.iter().map(|s| s.sensor_id.clone()).collect::<Vec<_>>();
        let (p1, c1) = page(all.clone(), 2, None);
        assert_eq!(
            (ids(&p1), c1.as_deref()),
            (vec!["a".into(), "b".into()], Some("b"))
        );
        let (p2, c2) = page(all.clone(), 2, c1.as_deref());
        assert_eq!(
            (ids(&p2), c2.as_deref()),
            (vec!["c".into(), "d".into()], Some("d"))
        );
        let (p3, c3) = page(all.clone(), 2, c2.as_deref());
        assert_eq!((ids(&p3), c3), (vec!["e".into()], None));
        let (exact, none) = page(all.clone(), 5, None);
        assert_eq!((exact.len(), none), (5, None));
        assert!(page(vec![], 3, None).0.is_empty());
    }

    #[test]
    fn query_parameters() {
        assert_eq!(page_params(None), Ok((DEFAULT_LIMIT, None)));
        assert_eq!(
            page_params(Some("limit=2&cursor=s%2D1")),
            Ok((2, Some("s-1".into())))
        );
        assert!(page_params(Some("limit=0")).is_err());
        assert!(page_params(Some("limit=abc")).is_err());
        assert!(page_params(Some(&format!("limit={}", MAX_LIMIT + 1))).is_err());
        assert_eq!(
            form_pairs("a=%zz&b"),
            vec![("a".into(), "%zz".into()), ("b".into(), "".into())]
        );
        assert_eq!(form_pairs("x=%4"), vec![("x".into(), "%4".into())]);
        assert_eq!(form_pairs("x=%41é%"), vec![("x".into(), "Aé%".into())]);
        assert_eq!(
            form_pairs("c=a+b%2Bc&%6B=%E2%9C%93"),
            vec![("c".into(), "a b+c".into()), ("k".into(), "✓".into())]
        );
    }

    #[test]
    fn settings_bodies() {
        assert_eq!(
            settings_change(&json!({"retention_days": 7})),
            Ok(SettingsChange {
                retention_days: Some(7),
                disconnected_after_secs: None
            })
        );
        for bad in [
            json!({}),
            json!([]),
            json!({"retention": 7}),
            json!({"retention_days": "7"}),
            json!({"retention_days": 0}),
            json!({"disconnected_after_secs": 1}),
        ] {
            assert!(settings_change(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_openapi_document_is_json_and_names_every_path() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for p in [
            "/sensors",
            "/sensors/{id}",
            "/issues",
            "/issues/{id}/suppress",
            "/issues/{id}/unsuppress",
            "/settings",
            "/tokens",
            "/tokens/{id}",
            "/policy",
            "/sensors/{id}/revoke",
            "/sensors/{id}/decommission",
            "/access-key/rotate",
            "/audit",
            "/ca/rotate",
            "/ca/retire",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p}");
        }
    }
}
