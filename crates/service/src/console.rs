//! The web console on the console host (issue #25, docs/console.md): the I/O around
//! `uplink-console`. It reads the request (cookies, forms), checks the session and CSRF token,
//! calls the store through the same functions as the admin API (`adminapi::fleet`,
//! `adminapi::sensor_detail`, `adminapi::suppression_until`, `uplink_store::fleet::sensor_json`),
//! records sign-ins and actions in the audit trail, and answers with the crate's pages. Every
//! answer carries the console's Content-Security-Policy. Sessions, users and failure counts
//! are in the store: any replica serves any browser.

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use uplink_console::pages::{self, Viewer};
use uplink_console::route::Page;
use uplink_console::sensors::{Query, Row};
use uplink_console::session::{self, Validity};
use uplink_console::{form, password, throttle};
use uplink_store::fleet::sensor_json;
use uplink_store::{AuditEntry, ConsoleSession, Store, StoreError, TokenRole};

use crate::registry::Workspace;
use crate::routes::read_body;
use crate::Shared;

/// Largest form body (a sign-in, a reason).
const MAX_FORM: usize = 16 * 1024;

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(uplink_console::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html(status: StatusCode, m: maud::Markup) -> Resp {
    respond(status, "text/html; charset=utf-8", pages::render(m))
}

fn redirect(to: &str) -> Resp {
    let mut resp = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn set_cookie(resp: &mut Resp, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn unavailable(e: &StoreError) -> Resp {
    tracing::warn!(error = %e, "console: the store failed");
    let mut r = html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message(
            "Unavailable",
            None,
            "The service cannot reach its store right now. Try again in a minute; if it persists, the operator should look at the service's log.",
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Who acted, from where: the fields every console audit entry shares.
struct Actor<'a> {
    ws: &'a str,
    name: &'a str,
    peer: IpAddr,
}

async fn audit<S: Store>(
    store: &S,
    who: &Actor<'_>,
    action: &str,
    sensor_id: Option<String>,
    ok: bool,
    detail: String,
) {
    let e = AuditEntry {
        workspace: who.ws.to_owned(),
        at: uplink_store::now_ms(),
        actor: who.name.to_owned(),
        source: who.peer.to_string(),
        action: action.to_owned(),
        sensor_id,
        result: if ok { "ok" } else { "refused" }.to_owned(),
        detail: uplink_store::lifecycle::audit_detail(&detail),
    };
    if let Err(err) = store.record_audit(e).await {
        tracing::warn!(error = %err, action, "console: recording the audit entry failed");
    }
}

/// The request's valid session of this workspace, if any (an expired one is deleted).
async fn session_of<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    cookie: Option<&str>,
) -> Result<Option<ConsoleSession>, StoreError> {
    let Some(secret) = session::cookie(cookie, session::COOKIE).filter(|s| session::well_formed(s))
    else {
        return Ok(None);
    };
    let id = session::id_hash(secret);
    let Some(mut s) = shared.store.console_session(&id).await? else {
        return Ok(None);
    };
    // Another workspace's session is no session here (its cookie could not even have come
    // from this host, but the store is shared).
    if s.workspace != ws.name {
        return Ok(None);
    }
    let now = uplink_store::now_ms();
    match session::validity(
        s.created_at,
        s.last_seen_at,
        now,
        shared.config.console.expiry,
    ) {
        Validity::Valid { touch } => {
            if touch {
                s.last_seen_at = now;
                shared.store.put_console_session(s.clone()).await?;
            }
            Ok(Some(s))
        }
        Validity::Idle | Validity::Expired => {
            shared.store.delete_console_session(&id).await?;
            Ok(None)
        }
    }
}

/// Answers a request to the console of `ws` (any path but the admin API's).
pub(crate) async fn handle<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Resp {
    let page = uplink_console::route::page(req.uri().path(), req.method().as_str());
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let cookie = cookie.as_deref();
    let port = host_port(
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    );
    match &page {
        Page::Asset(name) => {
            return match uplink_console::assets::get(name) {
                Some((bytes, ct)) => {
                    let mut r = respond(StatusCode::OK, ct, Bytes::from_static(bytes));
                    r.headers_mut().insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=300"),
                    );
                    r
                }
                None => not_found(None, "No such file."),
            }
        }
        Page::WrongMethod(allow) => {
            let mut r = html(
                StatusCode::METHOD_NOT_ALLOWED,
                pages::message("Not allowed", None, &format!("Use {allow} here.")),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return r;
        }
        Page::NotFound => return not_found(None, "There is no such page in the console."),
        Page::LoginForm => return login_form(ws, None, StatusCode::OK),
        Page::Login => return login(shared, ws, peer, cookie, req).await,
        _ => {}
    }
    let sess = match session_of(shared, ws, cookie).await {
        Ok(s) => s,
        Err(e) => return unavailable(&e),
    };
    let Some(sess) = sess else {
        return match page {
            // A form posted without a session: refused, not bounced to the sign-in page.
            Page::Logout => redirect("/login"),
            p if p.acts() => forbidden(None, "Sign in first: this session has ended."),
            _ => redirect("/login"),
        };
    };
    let viewer = Viewer {
        workspace: &ws.name,
        user: &sess.user,
        admin: sess.role == TokenRole::Admin,
        csrf: &sess.csrf,
    };
    if page == Page::Logout || page.acts() {
        let (_, body) = match read_body(req, MAX_FORM).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let fields = form::pairs(&String::from_utf8_lossy(&body));
        if !session::csrf_ok(&sess.csrf, form::get(&fields, session::CSRF_FIELD)) {
            tracing::info!(workspace = %ws.name, user = %sess.user, "console: a form without its CSRF token was refused");
            return forbidden(
                Some(&viewer),
                "This form is missing its security token (or it is stale). Go back, reload the page and try again.",
            );
        }
        if page == Page::Logout {
            if let Err(e) = shared.store.delete_console_session(&sess.id_sha256).await {
                return unavailable(&e);
            }
            let mut r = redirect("/login");
            set_cookie(&mut r, &session::clear_cookie(session::COOKIE));
            return r;
        }
        if !viewer.admin {
            return forbidden(
                Some(&viewer),
                "Your account is a viewer: it can look, not act. Ask an admin of this workspace.",
            );
        }
        return act(shared, ws, peer, &viewer, page, &fields).await;
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    match page {
        Page::Home => redirect("/sensors"),
        Page::Sensors | Page::SensorsCsv => {
            let (sensors, issues, revoked) =
                match crate::adminapi::fleet(&shared.store, &ws.name).await {
                    Ok(x) => x,
                    Err(e) => return unavailable(&e),
                };
            let rows: Vec<Row> = sensors
                .iter()
                .map(|s| {
                    let r = revoked.iter().find(|r| r.sensor_id == s.sensor_id);
                    Row::new(&sensor_json(s, &issues, r), s.report.as_deref())
                })
                .collect();
            let q = Query::parse(&query);
            let rows = q.select(rows);
            if page == Page::SensorsCsv {
                let mut r = respond(
                    StatusCode::OK,
                    "text/csv; charset=utf-8",
                    uplink_console::sensors::csv(&rows, &q.columns),
                );
                r.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"sensors.csv\""),
                );
                return r;
            }
            let (shown, n, of) = uplink_console::sensors::page(&rows, q.page, q.per_page);
            html(
                StatusCode::OK,
                pages::sensors(&viewer, &q, shown, n, of, rows.len()),
            )
        }
        Page::Issues => match shared.store.fleet_issues(&ws.name).await {
            Ok(all) => {
                let all: Vec<serde_json::Value> =
                    all.iter().map(uplink_store::fleet::issue_json).collect();
                let filter = pages::IssueFilter::parse(&query);
                html(StatusCode::OK, pages::issues(&viewer, &all, &filter))
            }
            Err(e) => unavailable(&e),
        },
        Page::Deploy => deploy(shared, ws, &viewer, &query).await,
        Page::Events | Page::EventsNdjson => {
            let q = uplink_console::events::EventQuery::parse(&query);
            let ndjson = page == Page::EventsNdjson;
            let mut latest = uplink_console::events::Latest::new(q.limit);
            let mut lines = String::new();
            let mut n = 0usize;
            let res = uplink_store::export_each(&shared.store, &ws.name, q.store_filter(), |e| {
                if !q.in_window(&e) {
                    return Ok(());
                }
                if ndjson {
                    if n == uplink_console::events::MAX_EXPORT {
                        // Enough for a browser download; `uplink events export` has no bound.
                        return Err(std::io::Error::other("export bound reached"));
                    }
                    lines.push_str(&uplink_console::events::ndjson_line(&e));
                    lines.push('\n');
                    n += 1;
                } else {
                    latest.push(e);
                }
                Ok(())
            })
            .await;
            let truncated = matches!(&res, Err(StoreError::Io { .. }))
                && n == uplink_console::events::MAX_EXPORT;
            if let Err(e) =
                res.as_ref()
                    .map(|_| ())
                    .or_else(|e| if truncated { Ok(()) } else { Err(e) })
            {
                if e.is_unavailable() {
                    return unavailable(e);
                }
                return bad_request(&viewer, &e.to_string());
            }
            if ndjson {
                let mut r = respond(StatusCode::OK, "application/x-ndjson", lines);
                r.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"events.ndjson\""),
                );
                if truncated {
                    r.headers_mut()
                        .insert("x-uplink-truncated", HeaderValue::from_static("100000"));
                }
                return r;
            }
            html(
                StatusCode::OK,
                pages::events(&viewer, &q, &latest.into_newest_first()),
            )
        }
        Page::Settings => settings(shared, ws, &viewer, query.contains("saved=1")).await,
        Page::Bundle => {
            if !viewer.admin {
                return forbidden(
                    Some(&viewer),
                    "Only admins can download the bundle: it holds the access key.",
                );
            }
            match crate::admin::bundle_json(&shared.store, &ws.name).await {
                Ok(json) => {
                    let mut r = respond(StatusCode::OK, "application/json", json);
                    let cd = format!("attachment; filename=\"{}.json\"", ws.name);
                    if let Ok(v) = HeaderValue::from_str(&cd) {
                        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
                    }
                    r
                }
                Err(e) => {
                    tracing::warn!(workspace = %ws.name, error = %e, "console: the bundle could not be made");
                    html(
                        StatusCode::SERVICE_UNAVAILABLE,
                        pages::message(
                            "Unavailable",
                            Some(&viewer),
                            &format!("The bundle could not be made: {e}"),
                        ),
                    )
                }
            }
        }
        Page::Sensor(id) => {
            match crate::adminapi::sensor_detail(&shared.store, &ws.name, &id).await {
                Ok(Some((_, v))) => {
                    // The sensor API is served on the console's port (one port for both names).
                    let cmd =
                        uplink_console::check::command(v["route"].as_str(), &sensor_url(ws, port));
                    let charts = sensor_charts(shared, &ws.name, &id).await;
                    html(StatusCode::OK, pages::sensor(&viewer, &v, &cmd, &charts))
                }
                Ok(None) => not_found(
                    Some(&viewer),
                    &format!("Workspace {} has no sensor {id:?}.", ws.name),
                ),
                Err(e) => unavailable(&e),
            }
        }
        _ => not_found(Some(&viewer), "There is no such page in the console."),
    }
}

/// The sensor's report history over 7 days, drawn; a store error says so in place of the
/// charts (the rest of the page still helps).
async fn sensor_charts<S: Store>(shared: &Shared<S>, workspace: &str, id: &str) -> maud::Markup {
    let now = uplink_store::now_ms();
    let bucket_ms = i64::try_from(shared.config.fleet.history_bucket.as_millis())
        .unwrap_or(uplink_store::history::BUCKET_MS)
        .max(1);
    match shared
        .store
        .report_points(workspace, id, now - uplink_store::history::KEEP_MS)
        .await
    {
        Ok(points) => uplink_console::chart::charts(&points, bucket_ms, now),
        Err(e) => {
            tracing::warn!(workspace, sensor_id = id, error = %e, "console: the report history could not be read");
            maud::html! { p { "The charts are unavailable: the store could not be read (" (e) "). Reload the page to try again." } }
        }
    }
}

/// The port of a `Host` header (`name:port`, `[v6]:port`), if it names one.
fn host_port(host: Option<&str>) -> Option<u16> {
    let (_, port) = host?.rsplit_once(':')?;
    port.parse().ok()
}

fn sensor_url(ws: &Workspace, port: Option<u16>) -> String {
    let host = uplink_protocol::names::sensor_host(&ws.name, &ws.domain);
    match port {
        Some(p) if p != 443 => format!("https://{host}:{p}"),
        _ => format!("https://{host}"),
    }
}

fn not_found(viewer: Option<&Viewer<'_>>, text: &str) -> Resp {
    html(
        StatusCode::NOT_FOUND,
        pages::message("Not found", viewer, text),
    )
}

fn forbidden(viewer: Option<&Viewer<'_>>, text: &str) -> Resp {
    html(
        StatusCode::FORBIDDEN,
        pages::message("Refused", viewer, text),
    )
}

fn login_form(ws: &Workspace, error: Option<&str>, status: StatusCode) -> Resp {
    let csrf = session::new_secret();
    // The hidden field must match this cookie (double submit): a page on another site cannot
    // read the cookie, so it cannot post a sign-in in this browser's name.
    let mut r = html(status, pages::login(&ws.name, &csrf, error));
    set_cookie(
        &mut r,
        &session::set_cookie(session::LOGIN_CSRF_COOKIE, &csrf, 3600),
    );
    r
}

async fn login<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    peer: IpAddr,
    cookie: Option<&str>,
    req: Request<Incoming>,
) -> Resp {
    let (_, body) = match read_body(req, MAX_FORM).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let fields = form::pairs(&String::from_utf8_lossy(&body));
    let expected = session::cookie(cookie, session::LOGIN_CSRF_COOKIE).unwrap_or("");
    if !session::csrf_ok(expected, form::get(&fields, session::CSRF_FIELD)) {
        return forbidden(
            None,
            "This sign-in form is missing its security token (or it is stale): reload the sign-in page and try again.",
        );
    }
    let name = form::get(&fields, "username")
        .unwrap_or("")
        .trim()
        .to_owned();
    let pass = form::get(&fields, "password").unwrap_or("").to_owned();
    let store = &shared.store;
    let wsn = ws.name.as_str();
    let wrong = "Wrong user name or password.";
    if !uplink_store::console::valid_user_name(&name) {
        return login_form(ws, Some(wrong), StatusCode::UNAUTHORIZED);
    }
    let now = uplink_store::now_ms();
    let failures = match store.login_failures(wsn, &name).await {
        Ok(f) => f,
        Err(e) => return unavailable(&e),
    };
    if let Some(wait) = throttle::must_wait(failures, now, shared.config.console.throttle_base_ms) {
        let secs = (wait + 999) / 1000;
        audit(
            store,
            &Actor {
                ws: wsn,
                name: &name,
                peer,
            },
            "console_login",
            None,
            false,
            format!(
                "throttled: {} failed sign-ins in a row, next attempt allowed in {secs} s",
                failures.count
            ),
        )
        .await;
        let mut r = login_form(
            ws,
            Some(&format!(
                "Too many failed sign-ins for {name}: wait {secs} seconds, then try again."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let user = match store.console_user(wsn, &name).await {
        Ok(u) => u,
        Err(e) => return unavailable(&e),
    };
    let hash = user
        .as_ref()
        .map_or_else(|| password::decoy().to_owned(), |u| u.password_hash.clone());
    // Argon2id takes tens of milliseconds of CPU: off the async workers.
    let ok = tokio::task::spawn_blocking(move || password::verify(&pass, &hash))
        .await
        .unwrap_or(false);
    let known = user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        // Failures are counted for existing accounts only: made-up names must not grow the
        // store (they cannot sign in whatever the count).
        let f = if known {
            match store.record_login(wsn, &name, true, now).await {
                Ok(f) => f,
                Err(e) => return unavailable(&e),
            }
        } else {
            uplink_store::LoginFailures::default()
        };
        let throttled = f.count >= throttle::FREE_FAILURES;
        audit(
            store,
            &Actor {
                ws: wsn,
                name: &name,
                peer,
            },
            "console_login",
            None,
            false,
            format!(
                "wrong user name or password ({} failed in a row{})",
                f.count,
                if throttled {
                    "; further attempts wait"
                } else {
                    ""
                }
            ),
        )
        .await;
        return login_form(ws, Some(wrong), StatusCode::UNAUTHORIZED);
    };
    if let Err(e) = store.record_login(wsn, &name, false, now).await {
        return unavailable(&e);
    }
    let secret = session::new_secret();
    let s = ConsoleSession {
        id_sha256: session::id_hash(&secret),
        workspace: wsn.to_owned(),
        user: user.name.clone(),
        role: user.role,
        csrf: session::new_secret(),
        created_at: now,
        last_seen_at: now,
    };
    if let Err(e) = store.put_console_session(s).await {
        return unavailable(&e);
    }
    audit(
        store,
        &Actor {
            ws: wsn,
            name: &name,
            peer,
        },
        "console_login",
        None,
        true,
        format!("signed in as {}", user.role),
    )
    .await;
    let mut r = redirect("/sensors");
    let max_age = shared.config.console.expiry.absolute_ms / 1000;
    set_cookie(
        &mut r,
        &session::set_cookie(session::COOKIE, &secret, max_age),
    );
    set_cookie(&mut r, &session::clear_cookie(session::LOGIN_CSRF_COOKIE));
    r
}

async fn act<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    peer: IpAddr,
    viewer: &Viewer<'_>,
    page: Page,
    fields: &[(String, String)],
) -> Resp {
    let store = &shared.store;
    let wsn = ws.name.as_str();
    let actor = format!("console:{}", viewer.user);
    let reason = form::get(fields, "reason").unwrap_or("").trim().to_owned();
    let suppress = matches!(page, Page::Suppress(_));
    match page {
        Page::Revoke(id) => {
            let decommission = form::get(fields, "action") == Some("decommission");
            let action = if decommission {
                "decommission"
            } else {
                "revoke"
            };
            if reason.is_empty() {
                return bad_request(viewer, "Say why (the reason is kept in the audit trail).");
            }
            let res = store.revoke_sensor(wsn, &id, &reason, decommission).await;
            let detail = match &res {
                Ok(_) => reason.clone(),
                Err(e) => e.to_string(),
            };
            if !matches!(res, Err(StoreError::NoSuchSensor(_))) {
                audit(
                    store,
                    &Actor {
                        ws: wsn,
                        name: &actor,
                        peer,
                    },
                    action,
                    Some(id.clone()),
                    res.is_ok(),
                    detail,
                )
                .await;
            }
            match res {
                Ok(_) => redirect(&format!("/sensors/{}", form::encode(&id))),
                Err(StoreError::NoSuchSensor(_)) => not_found(
                    Some(viewer),
                    &format!("Workspace {wsn} has no sensor {id:?}."),
                ),
                Err(e) if e.is_unavailable() => unavailable(&e),
                Err(e) => bad_request(viewer, &e.to_string()),
            }
        }
        Page::Suppress(id) | Page::Unsuppress(id) => {
            let change = if suppress {
                let days = form::get(fields, "days").and_then(|d| d.trim().parse::<u64>().ok());
                match crate::adminapi::suppression_until(days, &reason, uplink_store::now_ms()) {
                    Ok(until) => Some((until, reason.clone(), actor.clone())),
                    Err(m) => return bad_request(viewer, &m),
                }
            } else {
                None
            };
            match store.suppress_issue(wsn, &id, change).await {
                Ok(Some(issue)) => {
                    let to = issue.sensor_id.as_deref().map_or_else(
                        || "/sensors".to_owned(),
                        |s| format!("/sensors/{}", form::encode(s)),
                    );
                    redirect(&to)
                }
                Ok(None) => not_found(
                    Some(viewer),
                    &format!("Workspace {wsn} has no issue {id:?}."),
                ),
                Err(e) if e.is_unavailable() => unavailable(&e),
                Err(e) => bad_request(viewer, &e.to_string()),
            }
        }
        Page::SaveSettings => {
            let mut body = serde_json::Map::new();
            for key in ["retention_days", "disconnected_after_secs"] {
                if let Some(v) = form::get(fields, key)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                {
                    match v.parse::<u64>() {
                        Ok(n) => {
                            body.insert(key.to_owned(), n.into());
                        }
                        Err(_) => {
                            return bad_request(
                                viewer,
                                &format!("{key} {v:?} is not a whole number"),
                            )
                        }
                    }
                }
            }
            // The admin API's rule for a settings change (one source of truth).
            let changed = body
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let change = match crate::adminapi::settings_change(&serde_json::Value::Object(body)) {
                Ok(c) => c,
                Err(m) => return bad_request(viewer, &m),
            };
            let res = store.set_workspace_settings(wsn, change).await;
            let detail = match &res {
                Ok(_) => changed,
                Err(e) => e.to_string(),
            };
            audit(
                store,
                &Actor {
                    ws: wsn,
                    name: &actor,
                    peer,
                },
                "settings",
                None,
                res.is_ok(),
                detail,
            )
            .await;
            match res {
                Ok(_) => redirect("/settings?saved=1"),
                Err(e) if e.is_unavailable() && !matches!(e, StoreError::Settings(_)) => {
                    unavailable(&e)
                }
                Err(e) => bad_request(viewer, &e.to_string()),
            }
        }
        Page::TestTargets => {
            let hooks = match store.webhooks(wsn).await {
                Ok(h) => h,
                Err(e) => return unavailable(&e),
            };
            if hooks.is_empty() {
                return bad_request(
                    viewer,
                    "There is no webhook or syslog target to test: add one with `uplink workspace set NAME --webhook URL`.",
                );
            }
            let results = crate::webhooks::send_tests(
                &shared.config.webhook_trust,
                wsn,
                &hooks,
                &actor,
                uplink_store::now_ms(),
            )
            .await;
            let detail = results
                .iter()
                .map(|(url, r)| match r {
                    Ok(()) => format!("{url}: delivered"),
                    Err(e) => format!("{url}: {e}"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            audit(
                store,
                &Actor {
                    ws: wsn,
                    name: &actor,
                    peer,
                },
                "webhook_test",
                None,
                results.iter().all(|(_, r)| r.is_ok()),
                detail,
            )
            .await;
            html(StatusCode::OK, pages::test_results(viewer, &results))
        }
        Page::RegenerateKey => {
            if form::get(fields, "confirm") != Some("yes") {
                return bad_request(
                    viewer,
                    "Not regenerated: tick the confirmation (the old key stops enrolling sensors).",
                );
            }
            let res = crate::admin::rotate_access_key(store, wsn).await;
            let detail = res
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            audit(
                store,
                &Actor {
                    ws: wsn,
                    name: &actor,
                    peer,
                },
                "rotate_access_key",
                None,
                res.is_ok(),
                detail,
            )
            .await;
            match res {
                Ok(()) => redirect("/deploy?regenerated=1"),
                Err(e) => unavailable(&e),
            }
        }
        _ => not_found(Some(viewer), "There is no such action."),
    }
}

/// The Deploy page: the store's workspace record gives the access key, the port and the hosts.
async fn deploy<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    viewer: &Viewer<'_>,
    query: &str,
) -> Resp {
    let rec = match shared.store.workspace(&ws.name).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(Some(viewer), "This workspace is gone."),
        Err(e) => return unavailable(&e),
    };
    let fields = form::pairs(query);
    let install_form = uplink_console::deploy::InstallForm {
        proxy_url: form::get(&fields, "proxy_url").unwrap_or("").to_owned(),
        proxy_user: form::get(&fields, "proxy_user").unwrap_or("").to_owned(),
    };
    let bundle_file = format!("{}.json", ws.name);
    let install = uplink_console::deploy::install_command(&bundle_file, &install_form);
    let sensor_host = uplink_protocol::names::sensor_host(&ws.name, &ws.domain);
    let ping_url = format!(
        "{}{}",
        crate::admin::url_for(&sensor_host, rec.public_port),
        uplink_protocol::PING_PATH
    );
    let allowlist = uplink_console::deploy::allowlist(&ws.name, &ws.domain, rec.public_port)
        .unwrap_or_else(|e| vec![("error", e)]);
    let view = pages::DeployView {
        access_key: rec.access_key.as_deref().filter(|_| viewer.admin),
        bundle_file: &bundle_file,
        form: &install_form,
        install: &install,
        ping_url: &ping_url,
        allowlist: &allowlist,
        regenerated: form::get(&fields, "regenerated") == Some("1"),
    };
    html(StatusCode::OK, pages::deploy(viewer, &view))
}

fn bad_request(viewer: &Viewer<'_>, text: &str) -> Resp {
    html(
        StatusCode::BAD_REQUEST,
        pages::message("Not done", Some(viewer), text),
    )
}

async fn settings<S: Store>(
    shared: &Shared<S>,
    ws: &Workspace,
    viewer: &Viewer<'_>,
    saved: bool,
) -> Resp {
    let store = &shared.store;
    let wsn = ws.name.as_str();
    let read = tokio::try_join!(
        store.workspace_settings(wsn),
        store.webhooks(wsn),
        store.console_users(wsn),
        store.tokens(wsn)
    );
    match read {
        Ok((settings, hooks, users, tokens)) => {
            let urls: Vec<String> = hooks.into_iter().map(|h| h.url).collect();
            let view = pages::SettingsView {
                settings: &settings,
                webhooks: &urls,
                users: &users,
                tokens: &tokens,
                saved,
            };
            html(StatusCode::OK, pages::settings(viewer, &view))
        }
        Err(e) => unavailable(&e),
    }
}
