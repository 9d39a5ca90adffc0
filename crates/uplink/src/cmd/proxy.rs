//! `uplink proxy`: how this machine would reach a URL, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use uplink_sensor::Paths;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Explain the route to URL: every proxy source considered, what it said or why it was
    /// skipped, which won and why, and the final ordered route in PAC notation (PROXY host:port;
    /// DIRECT).
    ///
    /// With an installed sensor (default /etc/uplink, or --config-dir), its settings decide.
    /// Without one, the proxy variables of this shell alone (https_proxy, HTTPS_PROXY,
    /// all_proxy, ALL_PROXY, no_proxy; http_proxy is for http:// URLs only).
    ///
    /// Precedence, by configured mode: explicit (a proxy URL, minus its bypass list); pac;
    /// wpad; env (captured proxy variables, minus no_proxy); direct; auto, the default: WPAD
    /// if discovery finds a script, else the environment captured at install, else DIRECT.
    /// DIRECT is appended after the proxies only when the fallback policy allows it.
    ///
    /// Proxies that came from discovery (WPAD, a PAC fetched over plain http://) get the
    /// configured credentials only if their host is in the sensor's credential allow-list
    /// (`uplink sensor proxy set --credential-hosts`), and then never by Basic; a `credentials`
    /// line under the route says which proxies' credentials are withheld or limited, and why.
    #[command(
        after_help = "Examples:\n  uplink proxy explain https://contososensorapi.atp.azure.com/\n  \
uplink proxy explain https://contoso.uplink.localhost:8443/ --config-dir /srv/uplink --json\n  \
https_proxy=http://proxy:3128 no_proxy=.corp uplink proxy explain https://intranet.corp/"
    )]
    Explain(ExplainArgs),
    /// Evaluate a PAC script for URLs and print exactly what FindProxyForURL returned.
    Pac(super::proxy_pac::PacArgs),
    /// Show what WPAD discovery tried and found, step by step.
    Wpad(super::proxy_pac::WpadArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The URL to route, e.g. https://contososensorapi.example.com/ (default port from the scheme).
    pub url: String,
    /// The sensor's configuration directory (default /etc/uplink, if a sensor is installed there).
    #[arg(long, value_name = "DIR", env = "UPLINK_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Print JSON: {"url", "mode", "fallback", "sources": [{"source", "used", "detail"}], "route":
    /// [...], "credentials": [{"proxy", "note"}]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let a = match command {
        Command::Explain(a) => a,
        Command::Pac(a) => return super::proxy_pac::run_pac(a),
        Command::Wpad(a) => return super::proxy_pac::run_wpad(a),
    };
    let (host, port) = host_port(&a.url)?;
    let paths = Paths::new(a.config_dir.as_deref()).with_wpad(super::sensor::wpad_sources());
    let (origin, ex) = match uplink_sensor::policy::load_effective(&paths) {
        // The central policy the sensor applied, when it wins (issue #26), named with what it
        // overrode.
        Ok((config, precedence)) => (
            policy_origin(&precedence, &paths.config_dir.display().to_string()),
            config.explain(&paths, &host, port),
        ),
        Err(uplink_sensor::config::ConfigError::NotInstalled(_)) if a.config_dir.is_none() => (
            "this shell's environment (no sensor installed)".to_owned(),
            super::sensor::env_proxy().explain(&host, port),
        ),
        Err(e) => return Err(e.into()),
    };
    let explained = uplink_proxy::view::Explained::new(&a.url, origin, &ex);
    if a.json {
        println!("{}", explained.json());
    } else {
        print!("{}", explained.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `proxy explain`'s settings come from, with the central policy's precedence.
fn policy_origin(p: &uplink_policy::Precedence, dir: &str) -> String {
    let mut text = if p.use_policy {
        format!("{} (for the sensor in {dir})", p.source)
    } else {
        format!("sensor configuration in {dir}")
    };
    if let Some(o) = &p.overrode {
        text.push_str(&format!("; overrode {o}"));
    }
    text
}

/// Host and port of a URL (default port from the scheme; an IPv6 literal in brackets).
fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let u = uplink_url::HttpUrl::parse(url)
        .map_err(|e| super::usage("uplink proxy explain", e.to_string()))?;
    Ok((u.host, u.port))
}

/// The proxy flags, one set for `sensor install`, `sensor proxy set` and `check`. Older
/// spellings stay as hidden aliases, added per command where they do not clash (`sensor proxy
/// set --url/--user/--password`, `check --proxy`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProxyFlags {
    /// The proxy: http://HOST:PORT (CONNECT), https://HOST:PORT (TLS to the proxy, trusting the
    /// system roots or --proxy-ca), socks5://HOST:PORT (SOCKS5; this machine resolves the
    /// service's name) or socks5h://HOST:PORT (the proxy resolves it). Scheme and port required;
    /// an IPv6 address in brackets: http://[2001:db8::1]:3128.
    #[arg(long = "proxy-url", value_name = "URL")]
    pub proxy_url: Option<String>,
    /// The proxy user: DOMAIN\user (quote it in a shell: 'CONTOSO\proxyuser'), user@domain or
    /// user.
    #[arg(long = "proxy-user", value_name = "USER")]
    pub proxy_user: Option<String>,
    /// The proxy password: stored encrypted, never shown. Prefer UPLINK_PROXY_PASSWORD, which
    /// keeps it out of the process list.
    #[arg(
        long = "proxy-password",
        value_name = "PASSWORD",
        env = "UPLINK_PROXY_PASSWORD",
        hide_env_values = true
    )]
    pub proxy_password: Option<String>,
    /// For an https:// proxy (or PAC `HTTPS host:port` entries): trust the CA certificates in
    /// this PEM file for the proxy's own certificate instead of the system roots. (The service
    /// is always checked against its own CA.)
    #[arg(long = "proxy-ca", value_name = "FILE")]
    pub proxy_ca: Option<PathBuf>,
}
