//! `uplink fleet`: each sensor's state and health, and the health issues (docs/fleet.md).
//!
//! What is shown is what the service derived at its last evaluation (every 30 s by default, and
//! at once when a sensor reports); this command reads the store and changes nothing but
//! suppressions.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use serde_json::{json, Value};
use uplink_fleet::{rfc3339, IssueState, State};
use uplink_store::{Issue, Lifecycle, Revocation, Store};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every sensor of a workspace: state (online, late, disconnected, inactive), health
    /// (healthy, or the severity of its worst open issue), last contact, route, queue.
    ///
    /// --json prints {"sensors":[{"sensor_id","name","hostname","version","state","lifecycle",
    /// "software","health","last_seen","route","queue":{"events","oldest_secs"},"open_issues","policy",
    /// "policy_rejected"}]}
    /// (times RFC 3339 UTC; null when unknown).
    #[command(
        after_help = "Examples:\n  uplink fleet list contoso --data-dir /var/lib/uplink-service\n  uplink fleet list contoso --data-dir /var/lib/uplink-service --state disconnected --json"
    )]
    List(ListArgs),
    /// One sensor: the fields of `list`, its last report, its outage log and its issues.
    #[command(
        after_help = "Examples:\n  uplink fleet show contoso 9c7aed4574c33277172f4111f5259f6e --data-dir ./svc --json"
    )]
    Show(ShowArgs),
    /// A workspace's health issues: open and suppressed ones (--all: closed ones too).
    ///
    /// --json prints {"issues":[{"issue_id","kind","severity","sensor_id","state","opened_at",
    /// "closed_at","occurrences","description","fix","suppressed_until","suppress_reason",
    /// "suppressed_by"}]}.
    #[command(
        after_help = "Examples:\n  uplink fleet issues contoso --data-dir /var/lib/uplink-service\n  uplink fleet issues contoso --data-dir /var/lib/uplink-service --all --json"
    )]
    Issues(IssuesArgs),
    /// Suppress an issue for a while: it stays `suppressed` (and out of the sensor's health)
    /// whatever happens until then; afterwards it is open or closed as its condition says.
    #[command(
        after_help = "Examples:\n  uplink fleet suppress contoso iss-3f2a9c1d0b7e --data-dir /var/lib/uplink-service --days 7 \\\n      --reason 'proxy maintenance window'"
    )]
    Suppress(SuppressArgs),
    /// End an issue's suppression now: it is open again until the next evaluation closes it (if
    /// its condition is gone).
    #[command(
        after_help = "Examples:\n  uplink fleet unsuppress contoso iss-3f2a9c1d0b7e --data-dir /var/lib/uplink-service"
    )]
    Unsuppress(UnsuppressArgs),
    /// Revoke a sensor's certificate: every replica refuses it within a few seconds (403
    /// CERT_REVOKED), on new and kept-alive connections; it cannot renew. Its stored events stay;
    /// the events it still holds stay queued on the machine. To bring the machine back, enroll
    /// it again with the workspace's access key: it becomes a new sensor (docs/lifecycle.md).
    #[command(
        after_help = "Examples:\n  uplink fleet revoke contoso 9c7aed4574c33277172f4111f5259f6e --data-dir ./svc \\\n      --reason 'laptop stolen'"
    )]
    Revoke(RevokeArgs),
    /// Revoke a sensor and mark it decommissioned (the machine is gone): hidden from `fleet
    /// list` (unless --all), its data kept until retention removes it. A machine enrolled again
    /// is a new sensor; this one stays decommissioned.
    #[command(
        after_help = "Examples:\n  uplink fleet decommission contoso 9c7aed4574c33277172f4111f5259f6e --data-dir ./svc"
    )]
    Decommission(DecommissionArgs),
    /// The workspace's audit trail: enrollments (refused ones too), renewals, revocations,
    /// decommissions — who, from where, the result.
    ///
    /// --json prints {"entries":[{"at","actor","source","action","sensor_id","result","detail"}]}
    /// (oldest first; `at` RFC 3339 UTC).
    #[command(
        after_help = "Examples:\n  uplink fleet audit contoso --data-dir /var/lib/uplink-service\n  uplink fleet audit contoso --data-dir /var/lib/uplink-service --limit 100 --json"
    )]
    Audit(AuditArgs),
    /// The workspace's central proxy policy: how its sensors reach the service, set here for
    /// all of them (or some) instead of on each host (docs/policy.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The workspace name.
    pub workspace: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// At most this many entries (the newest).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
    /// Print JSON: {"entries":[{"at","actor","source","action","sensor_id","result","detail"}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The workspace name.
    pub workspace: String,
    /// The sensor's id (`uplink fleet list` shows them).
    pub sensor_id: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Why (stored with the revocation).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

#[derive(Debug, clap::Args)]
pub struct DecommissionArgs {
    /// The workspace name.
    pub workspace: String,
    /// The sensor's id (`uplink fleet list` shows them).
    pub sensor_id: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Why [default: "decommissioned"].
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The workspace name.
    pub workspace: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Only sensors in this state: online, late, disconnected or inactive.
    #[arg(long, value_name = "S", value_parser = parse_state)]
    pub state: Option<State>,
    /// Decommissioned sensors too (hidden by default).
    #[arg(long)]
    pub all: bool,
    /// Print JSON (see above) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The workspace name.
    pub workspace: String,
    /// The sensor's id (`uplink fleet list` shows them).
    pub sensor_id: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct IssuesArgs {
    /// The workspace name.
    pub workspace: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Closed issues too.
    #[arg(long)]
    pub all: bool,
    /// Print JSON (see above) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SuppressArgs {
    /// The workspace name.
    pub workspace: String,
    /// The issue's id (`iss-…`, from `uplink fleet issues`).
    pub issue_id: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// For how many days.
    #[arg(long, value_name = "N", default_value_t = uplink_fleet::DEFAULT_SUPPRESS_DAYS)]
    pub days: u64,
    /// Why (shown with the issue).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who suppresses it [default: $USER].
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct UnsuppressArgs {
    /// The workspace name.
    pub workspace: String,
    /// The issue's id (`iss-…`, from `uplink fleet issues --all`).
    pub issue_id: String,
    #[command(flatten)]
    pub data: super::DataDir,
}

fn parse_state(s: &str) -> Result<State, String> {
    State::parse(s)
        .ok_or_else(|| format!("{s:?} is not a state: use online, late, disconnected or inactive"))
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    super::backend::runtime()?.block_on(async move {
        match command {
            Command::List(a) => list(a).await,
            Command::Show(a) => show(a).await,
            Command::Issues(a) => issues(a).await,
            Command::Suppress(a) => suppress(a).await,
            Command::Unsuppress(a) => unsuppress(a).await,
            Command::Audit(a) => audit(a).await,
            Command::Policy(c) => policy(c).await,
            Command::Revoke(a) => revoke(a.data, a.workspace, a.sensor_id, a.reason, false).await,
            Command::Decommission(a) => {
                let reason = a.reason.unwrap_or_else(|| "decommissioned".into());
                revoke(a.data, a.workspace, a.sensor_id, reason, true).await
            }
        }
    })
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

// The JSON shapes are `uplink_store::fleet`'s, shared with the admin API (docs/admin-api.md).
use uplink_store::fleet::{issue_json, sensor_detail_json, sensor_json};

fn print_json(v: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let sensors = store.fleet_sensors(&ws).await?;
    let issues = store.fleet_issues(&ws).await?;
    let revocations = store.revocations(&ws).await?;
    let rows: Vec<Value> = sensors
        .iter()
        .filter(|s| {
            a.state
                .is_none_or(|want| s.state.as_deref() == Some(want.as_str()))
        })
        .map(|s| (s, lifecycle_of(&revocations, &s.sensor_id)))
        .filter(|(_, l)| a.all || *l != Lifecycle::Decommissioned)
        .map(|(s, _)| {
            let r = revocations.iter().find(|r| r.sensor_id == s.sensor_id);
            sensor_json(s, &issues, r)
        })
        .collect();
    if a.json {
        return print_json(&json!({ "sensors": rows }));
    }
    println!(
        "{:<32} {:<16} {:<13} {:<8} {:<21} {:<22} {:>8} {:>6} POLICY",
        "SENSOR", "NAME", "STATE", "HEALTH", "LAST SEEN", "ROUTE", "QUEUED", "ISSUES"
    );
    for r in &rows {
        // The central policy applied (issue #26): vN, or local; a rejected version after it.
        let mut policy = match &r["policy"] {
            Value::Null => "local".to_owned(),
            v => format!("v{v}"),
        };
        if !r["policy_rejected"].is_null() {
            policy.push_str(&format!(" (v{} rejected)", r["policy_rejected"]));
        }
        println!(
            "{:<32} {:<16} {:<13} {:<8} {:<21} {:<22} {:>8} {:>6} {policy}",
            text(&r["sensor_id"]),
            text(&r["name"]),
            text(&r["state"]),
            text(&r["health"]),
            text(&r["last_seen"]),
            text(&r["route"]),
            text(&r["queue"]["events"]),
            text(&r["open_issues"]),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let sensors = store.fleet_sensors(&ws).await?;
    let Some(s) = sensors.iter().find(|s| s.sensor_id == a.sensor_id) else {
        bail!(
            "no sensor {:?} in workspace {ws:?}: list them with `uplink fleet list {ws}`",
            a.sensor_id
        );
    };
    let issues: Vec<Issue> = store
        .fleet_issues(&ws)
        .await?
        .into_iter()
        .filter(|i| i.sensor_id.as_deref() == Some(&s.sensor_id))
        .collect();
    let revocations = store.revocations(&ws).await?;
    let revocation = revocations.iter().find(|r| r.sensor_id == s.sensor_id);
    let v = sensor_detail_json(s, &issues, revocation);
    if a.json {
        return print_json(&v);
    }
    for k in [
        "sensor_id",
        "name",
        "hostname",
        "version",
        "state",
        "lifecycle",
        "software",
        "health",
        "last_seen",
        "route",
    ] {
        println!("{k:<12} {}", text(&v[k]));
    }
    println!(
        "{:<12} {} events, oldest {} s",
        "queue",
        text(&v["queue"]["events"]),
        text(&v["queue"]["oldest_secs"])
    );
    println!("outages      {}", s.outages.len());
    for o in &s.outages {
        println!("  {}", o.describe());
    }
    println!("issues       {}", issues.len());
    for i in &issues {
        print_issue(i);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_issue(i: &Issue) {
    println!(
        "  {} {} {} {} (opened {}, {} times{})",
        i.issue_id,
        i.kind,
        i.severity,
        i.state,
        rfc3339(i.opened_at),
        i.occurrences,
        i.closed_at
            .map(|c| format!(", closed {}", rfc3339(c)))
            .unwrap_or_default()
    );
    if let Some(sensor) = &i.sensor_id {
        println!("      sensor: {sensor}");
    }
    println!("      {}", i.description);
    println!("      fix: {}", i.fix);
    if i.state == IssueState::Suppressed {
        println!(
            "      suppressed until {} by {}: {}",
            time(i.suppressed_until).as_str().unwrap_or("-"),
            i.suppressed_by.as_deref().unwrap_or("-"),
            i.suppress_reason.as_deref().unwrap_or("-")
        );
    }
}

async fn issues(a: IssuesArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let issues: Vec<Issue> = store
        .fleet_issues(&ws)
        .await?
        .into_iter()
        .filter(|i| a.all || i.state != IssueState::Closed)
        .collect();
    if a.json {
        let v: Vec<Value> = issues.iter().map(issue_json).collect();
        return print_json(&json!({ "issues": v }));
    }
    if issues.is_empty() {
        println!(
            "no {}issues",
            if a.all { "" } else { "open or suppressed " }
        );
    }
    for i in &issues {
        print_issue(i);
    }
    Ok(ExitCode::SUCCESS)
}

fn no_issue(ws: &str, id: &str) -> anyhow::Error {
    anyhow!("no issue {id:?} in workspace {ws:?}: list them with `uplink fleet issues {ws} --all`")
}

async fn suppress(a: SuppressArgs) -> anyhow::Result<ExitCode> {
    if a.days == 0 || a.days > 3650 {
        bail!("--days {} is outside 1..3650", a.days);
    }
    if a.reason.trim().is_empty() {
        bail!("--reason must say why the issue is suppressed");
    }
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let by =
        a.by.or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into());
    let until = uplink_store::now_ms() + (a.days as i64) * 86_400_000;
    let detail = format!("{} for {} days: {}", a.issue_id, a.days, a.reason);
    let result = store
        .suppress_issue(&ws, &a.issue_id, Some((until, a.reason, by)))
        .await;
    cli_audit(&store, &ws, "suppress", None, outcome(&result, detail)).await?;
    let issue = result?.ok_or_else(|| no_issue(&ws, &a.issue_id))?;
    println!(
        "{} suppressed until {}",
        issue.issue_id,
        time(issue.suppressed_until).as_str().unwrap_or("-")
    );
    Ok(ExitCode::SUCCESS)
}

async fn unsuppress(a: UnsuppressArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let result = store.suppress_issue(&ws, &a.issue_id, None).await;
    cli_audit(
        &store,
        &ws,
        "unsuppress",
        None,
        outcome(&result, a.issue_id.clone()),
    )
    .await?;
    let issue = result?.ok_or_else(|| no_issue(&ws, &a.issue_id))?;
    println!("{} is {}", issue.issue_id, issue.state);
    Ok(ExitCode::SUCCESS)
}

fn lifecycle_of(revocations: &[Revocation], sensor_id: &str) -> Lifecycle {
    Lifecycle::of(revocations.iter().find(|r| r.sensor_id == sensor_id))
}

async fn revoke(
    data: super::DataDir,
    workspace: String,
    sensor_id: String,
    reason: String,
    decommission: bool,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        bail!("--reason must say why the sensor is revoked");
    }
    let store = data.open(false).await?;
    let ws = workspace.to_ascii_lowercase();
    let action = if decommission {
        "decommission"
    } else {
        "revoke"
    };
    let result = store
        .revoke_sensor(&ws, &sensor_id, &reason, decommission)
        .await;
    cli_audit(
        &store,
        &ws,
        action,
        Some(sensor_id.clone()),
        match &result {
            Ok(_) => Ok(reason.clone()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await?;
    let r = match result {
        Ok(r) => r,
        Err(uplink_store::StoreError::NoSuchSensor(id)) => bail!(
            "no sensor {id:?} in workspace {ws:?}: list them with `uplink fleet list {ws} --all`"
        ),
        Err(e) => return Err(e.into()),
    };
    println!(
        "sensor {} of workspace {ws} {} (revoked at {}: {}); every replica refuses it within seconds",
        r.sensor_id,
        Lifecycle::of(Some(&r)).as_str(),
        rfc3339(r.revoked_at),
        r.reason
    );
    Ok(ExitCode::SUCCESS)
}

/// Records an administrator's command in the workspace's audit trail: the user running it, from
/// `cli@<host>`, `ok` with `outcome`'s detail or `failed` with its error. Only for a workspace that
/// exists (a typo must not leave entries under a made-up name); a failure to record is a warning.
pub(crate) async fn cli_audit(
    store: &impl uplink_store::Store,
    ws: &str,
    action: &str,
    sensor_id: Option<String>,
    outcome: Result<String, String>,
) -> anyhow::Result<()> {
    if store.workspace(ws).await?.is_none() {
        return Ok(());
    }
    let entry = uplink_store::AuditEntry {
        workspace: ws.to_owned(),
        at: uplink_store::now_ms(),
        actor: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        source: format!("cli@{}", hostname()),
        action: action.into(),
        sensor_id,
        result: if outcome.is_ok() { "ok" } else { "failed" }.into(),
        detail: uplink_store::lifecycle::audit_detail(match &outcome {
            Ok(d) | Err(d) => d,
        }),
    };
    if let Err(e) = store.record_audit(entry).await {
        eprintln!("warning: the audit entry could not be recorded: {e}");
    }
    Ok(())
}

/// An action's outcome for [`cli_audit`]: `detail` when it worked, its error when not.
pub(crate) fn outcome<T, E: std::fmt::Display>(
    result: &Result<T, E>,
    detail: String,
) -> Result<String, String> {
    match result {
        Ok(_) => Ok(detail),
        Err(e) => Err(e.to_string()),
    }
}

/// This machine's name, for the audit trail's `source` of a command.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

async fn audit(a: AuditArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    if store.workspace(&ws).await?.is_none() {
        return Err(uplink_store::StoreError::NoSuchWorkspace(ws).into());
    }
    let entries = store.audit(&ws, a.limit).await?;
    if a.json {
        let v: Vec<Value> = entries.iter().map(|e| e.to_json()).collect();
        return print_json(&json!({ "entries": v }));
    }
    if entries.is_empty() {
        println!("no audit entries");
    }
    for e in &entries {
        println!(
            "{} {:<13} {:<8} {:<32} by {} from {}{}",
            rfc3339(e.at),
            e.action,
            e.result,
            e.sensor_id.as_deref().unwrap_or("-"),
            e.actor,
            e.source,
            if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", e.detail)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Central policy (issue #26, docs/policy.md): `fleet policy set | show | clear`.

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Set the workspace's policy (a new version). Sensors learn of it within one heartbeat
    /// interval, test its route (they must reach the service through it) and switch, or keep
    /// their working route and report `policy_rejected` (a fleet issue) and retry later. A
    /// policy wins over a sensor's own [proxy] settings unless --allow-local.
    #[command(
        after_help = "Examples:\n  uplink fleet policy set contoso --data-dir /var/lib/uplink-service --all \\\n      --proxy-url http://proxy.contoso.com:8080 --proxy-user 'CONTOSO\\svc-uplink' \\\n      --proxy-password-file /root/proxy-password --fallback never\n  uplink fleet policy set contoso --data-dir ./svc --all \\\n      --pac http://wpad.contoso.com/proxy.pac --rollout 10\n  uplink fleet policy set contoso --data-dir ./svc --direct \\\n      --sensor 9c7aed4574c33277172f4111f5259f6e\n\nExit status: 0 when stored, 1 when refused (the message says why)."
    )]
    Set(PolicySetArgs),
    /// The workspace's policy: the current version (never a password), every version, and for
    /// each sensor whether the policy selects it and which version it has applied.
    ///
    /// --json prints {"workspace","version","policy","versions":[{"version","set_at","cleared",
    /// "policy"}],"sensors":[{"sensor_id","name","selected","applied","fetched","rejected"}]}.
    #[command(
        after_help = "Examples:\n  uplink fleet policy show contoso --data-dir /var/lib/uplink-service\n  uplink fleet policy show contoso --data-dir ./svc --json"
    )]
    Show(PolicyShowArgs),
    /// Clear the workspace's policy (a new version without one): sensors go back to their own
    /// settings within one heartbeat interval.
    #[command(after_help = "Examples:\n  uplink fleet policy clear contoso --data-dir ./svc")]
    Clear(PolicyClearArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["all", "sensor"])))]
#[command(group(clap::ArgGroup::new("route").required(true).args(["proxy_url", "pac", "wpad", "direct"])))]
pub struct PolicySetArgs {
    /// The workspace name.
    pub workspace: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// For every sensor of the workspace.
    #[arg(long)]
    pub all: bool,
    /// For this sensor (repeat for several; ids from `uplink fleet list`).
    #[arg(long, value_name = "ID")]
    pub sensor: Vec<String>,
    /// Route: through this proxy, http://HOST:PORT (https://, socks5:// too), without credentials.
    #[arg(long, value_name = "URL")]
    pub proxy_url: Option<String>,
    /// The proxy user, e.g. 'CONTOSO\svc-uplink' (with --proxy-password-file).
    #[arg(
        long,
        value_name = "USER",
        requires = "proxy_url",
        requires = "proxy_password_file"
    )]
    pub proxy_user: Option<String>,
    /// A file holding the proxy password (one line): sealed under the master key at the
    /// service, and with each sensor's own key on the sensor; never printed.
    #[arg(long, value_name = "FILE", requires = "proxy_user")]
    pub proxy_password_file: Option<std::path::PathBuf>,
    /// A PEM file of the CA an https:// proxy's certificate is checked against.
    #[arg(long, value_name = "FILE", requires = "proxy_url")]
    pub proxy_ca: Option<std::path::PathBuf>,
    /// Route: the PAC script at this URL.
    #[arg(long, value_name = "URL")]
    pub pac: Option<String>,
    /// Route: WPAD discovery.
    #[arg(long)]
    pub wpad: bool,
    /// Route: no proxy.
    #[arg(long)]
    pub direct: bool,
    /// When every proxy fails: go direct, or never.
    #[arg(long, value_name = "direct|never", value_parser = parse_fallback)]
    pub fallback: Option<uplink_policy::Fallback>,
    /// Hosts that skip the proxy, comma-separated (NO_PROXY syntax), e.g. .corp.example,10.0.0.0/8.
    #[arg(long, value_name = "LIST")]
    pub bypass: Option<String>,
    /// The sensors' heartbeat period while the policy applies, in seconds.
    #[arg(long, value_name = "N")]
    pub heartbeat_secs: Option<u64>,
    /// A sensor's own [proxy] settings win over this policy when it has some.
    #[arg(long)]
    pub allow_local: bool,
    /// Only this share of the selected sensors takes the policy (picked by a stable hash of
    /// each sensor id: raising it later keeps those that have it).
    #[arg(long, value_name = "PERCENT", default_value_t = 100)]
    pub rollout: u8,
}

#[derive(Debug, clap::Args)]
pub struct PolicyShowArgs {
    /// The workspace name.
    pub workspace: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON (see above) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PolicyClearArgs {
    /// The workspace name.
    pub workspace: String,
    #[command(flatten)]
    pub data: super::DataDir,
}

fn parse_fallback(s: &str) -> Result<uplink_policy::Fallback, String> {
    match s {
        "direct" => Ok(uplink_policy::Fallback::Direct),
        "never" => Ok(uplink_policy::Fallback::Never),
        other => Err(format!("{other:?} is not a fallback: use direct or never")),
    }
}

/// Reads a file for the policy: the password file (its one line, without the line break) or
/// the CA. Errors name the file.
fn read_for_policy(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read the {what} file {}: {e}", path.display()))
}

/// The policy `set`'s flags describe (validated by the store).
pub fn policy_from_args(a: &PolicySetArgs) -> anyhow::Result<uplink_policy::Policy> {
    use uplink_policy::{Password, Policy, Route, Target};
    let route = if let Some(url) = &a.proxy_url {
        let password = match &a.proxy_password_file {
            Some(f) => {
                let text = zeroize::Zeroizing::new(read_for_policy(f, "proxy password")?);
                let line = text.strip_suffix('\n').unwrap_or(&text);
                let line = line.strip_suffix('\r').unwrap_or(line);
                Some(Password::new(line))
            }
            None => None,
        };
        let ca_pem = a
            .proxy_ca
            .as_deref()
            .map(|f| read_for_policy(f, "proxy CA"))
            .transpose()?;
        Route::Proxy {
            url: url.clone(),
            user: a.proxy_user.clone(),
            password,
            ca_pem,
        }
    } else if let Some(url) = &a.pac {
        Route::Pac { url: url.clone() }
    } else if a.wpad {
        Route::Wpad
    } else {
        Route::Direct
    };
    let target = if a.all {
        Target::All
    } else {
        Target::Sensors(a.sensor.clone())
    };
    Ok(Policy {
        fallback: a.fallback,
        bypass: a
            .bypass
            .as_deref()
            .map(|b| {
                b.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        heartbeat_secs: a.heartbeat_secs,
        allow_local: a.allow_local,
        rollout_percent: a.rollout,
        ..Policy::new(route, target)
    })
}

/// What a policy's target and rollout select, in words.
fn selection(p: &uplink_policy::Policy) -> String {
    let who = match &p.target {
        uplink_policy::Target::All => "every sensor".to_owned(),
        uplink_policy::Target::Sensors(ids) if ids.len() == 1 => format!("sensor {}", ids[0]),
        uplink_policy::Target::Sensors(ids) => format!("{} sensors", ids.len()),
    };
    if p.rollout_percent < 100 {
        format!("{}% of {who}", p.rollout_percent)
    } else {
        who
    }
}

async fn policy(c: PolicyCommand) -> anyhow::Result<ExitCode> {
    match c {
        PolicyCommand::Set(a) => {
            let policy = policy_from_args(&a)?;
            let store = a.data.open(false).await?;
            let ws = a.workspace.to_ascii_lowercase();
            let result = store.set_policy(&ws, policy).await;
            cli_audit(
                &store,
                &ws,
                "policy_set",
                None,
                match &result {
                    Ok(p) => Ok(format!(
                        "v{}: {} for {}",
                        p.version,
                        p.route.describe(),
                        selection(p)
                    )),
                    Err(e) => Err(e.to_string()),
                },
            )
            .await?;
            let stored = result?;
            println!(
                "policy v{} of workspace {ws}: {} for {}{}. Sensors test the route and switch within one heartbeat interval; follow them with `uplink fleet policy show {ws}`",
                stored.version,
                stored.route.describe(),
                selection(&stored),
                if stored.allow_local { " (their own settings win where they have some)" } else { "" },
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Clear(a) => {
            let store = a.data.open(false).await?;
            let ws = a.workspace.to_ascii_lowercase();
            let result = store.clear_policy(&ws).await;
            cli_audit(
                &store,
                &ws,
                "policy_clear",
                None,
                match &result {
                    Ok(v) => Ok(format!("v{v}")),
                    Err(e) => Err(e.to_string()),
                },
            )
            .await?;
            let v = result?;
            println!("policy of workspace {ws} cleared (v{v}): sensors go back to their own settings within one heartbeat interval");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Show(a) => {
            let store = a.data.open(false).await?;
            let ws = a.workspace.to_ascii_lowercase();
            if store.workspace(&ws).await?.is_none() {
                bail!("no workspace named {ws:?}: list workspaces with `uplink workspace list`");
            }
            let versions = store.policy_versions(&ws).await?;
            let sensors = store.fleet_sensors(&ws).await?;
            let v = uplink_store::policy::show_json(&ws, &versions, &sensors);
            if a.json {
                return print_json(&v);
            }
            match versions.first() {
                None => println!("workspace {ws} has no policy: its sensors follow their own settings"),
                Some(c) => match &c.policy {
                    None => println!("policy v{} of workspace {ws}: cleared at {} (sensors follow their own settings)", c.version, rfc3339(c.set_at)),
                    Some(p) => {
                        println!("policy v{} of workspace {ws}, set at {}", p.version, rfc3339(c.set_at));
                        println!("  route       {}", p.route.describe());
                        println!("  for         {}", selection(p));
                        if let Some(f) = p.fallback {
                            println!("  fallback    {}", f.as_str());
                        }
                        if let Some(b) = p.bypass_text() {
                            println!("  bypass      {b}");
                        }
                        if let Some(h) = p.heartbeat_secs {
                            println!("  heartbeat   {h} s");
                        }
                        println!("  local       {}", if p.allow_local { "a sensor's own settings win" } else { "overridden" });
                    }
                },
            }
            if versions.len() > 1 {
                println!("versions:");
                for v in &versions {
                    println!(
                        "  v{:<5} {} {}",
                        v.version,
                        rfc3339(v.set_at),
                        v.policy
                            .as_ref()
                            .map_or("cleared".to_owned(), |p| p.route.describe())
                    );
                }
            }
            println!(
                "{:<32} {:<16} {:<9} {:<8} REJECTED",
                "SENSOR", "NAME", "SELECTED", "APPLIED"
            );
            for s in v["sensors"].as_array().into_iter().flatten() {
                let applied = match &s["applied"] {
                    Value::Null => "local".to_owned(),
                    v => format!("v{v}"),
                };
                let rejected = match &s["rejected"] {
                    Value::Null => "-".to_owned(),
                    r => format!("v{} {}", text(&r["version"]), text(&r["code"])),
                };
                println!(
                    "{:<32} {:<16} {:<9} {:<8} {rejected}",
                    text(&s["sensor_id"]),
                    text(&s["name"]),
                    if s["selected"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    applied,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
