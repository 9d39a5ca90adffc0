//! The Deploy page's pure parts: the `sensor install` command line built from the form (the
//! proxy password only ever through `UPLINK_PROXY_PASSWORD`, read at a prompt, never in the
//! command shown), and this workspace's allow-list from the endpoint catalog
//! (`uplink-allowlist`, the same as `uplink allowlist urls --profile uplink`).

use uplink_allowlist::catalog::{self, UrlQuery};
use uplink_allowlist::{squid, text};

/// The proxy part of the install form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallForm {
    pub proxy_url: String,
    /// `DOMAIN\user` or `user`.
    pub proxy_user: String,
}

/// `s` quoted for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The lines to run on a new sensor's host, with the bundle saved as `bundle_file`.
pub fn install_command(bundle_file: &str, f: &InstallForm) -> String {
    let url = f.proxy_url.trim();
    let user = f.proxy_user.trim();
    let mut install = format!(
        "sudo uplink sensor install --bundle {}",
        shell_quote(bundle_file)
    );
    if !url.is_empty() {
        install.push_str(&format!(" --proxy-url {}", shell_quote(url)));
    }
    if url.is_empty() || user.is_empty() {
        return install;
    }
    install = install.replacen("sudo ", "sudo --preserve-env=UPLINK_PROXY_PASSWORD ", 1);
    format!(
        "read -rsp 'Proxy password: ' UPLINK_PROXY_PASSWORD && export UPLINK_PROXY_PASSWORD\n{install} --proxy-user {}",
        shell_quote(user)
    )
}

/// The workspace's allow-list in each format `uplink allowlist urls` has (`plain`, `csv`,
/// `squid`), or why the catalog could not give it.
pub fn allowlist(
    workspace: &str,
    domain: &str,
    port: u16,
) -> Result<Vec<(&'static str, String)>, String> {
    let cat = catalog::load("uplink").map_err(|e| e.to_string())?;
    let q = UrlQuery {
        workspace: Some(workspace.to_owned()),
        domain: Some(domain.to_owned()),
        port: Some(port),
        ..UrlQuery::default()
    };
    let r = cat.resolve(&q).map_err(|e| e.to_string())?;
    Ok(vec![
        ("plain", text::urls_plain(&r.endpoints)),
        ("csv", text::urls_csv(&r.endpoints)),
        ("squid", squid::render(&r, "uplink")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_commands_never_hold_the_password() {
        let f = |u: &str, n: &str| InstallForm {
            proxy_url: u.into(),
            proxy_user: n.into(),
        };
        // (form, command)
        let cases = [
            (f("", ""), "sudo uplink sensor install --bundle w.json".to_owned()),
            (f("", "bob"), "sudo uplink sensor install --bundle w.json".to_owned()),
            (
                f("http://proxy.corp:3128", ""),
                "sudo uplink sensor install --bundle w.json --proxy-url http://proxy.corp:3128".to_owned(),
            ),
            (
                f(" http://proxy.corp:3128 ", r"CORP\bob"),
                "read -rsp 'Proxy password: ' UPLINK_PROXY_PASSWORD && export UPLINK_PROXY_PASSWORD\nsudo --preserve-env=UPLINK_PROXY_PASSWORD uplink sensor install --bundle w.json --proxy-url http://proxy.corp:3128 --proxy-user 'CORP\\bob'".to_owned(),
            ),
        ];
        for (form, want) in cases {
            assert_eq!(install_command("w.json", &form), want, "{form:?}");
        }
        assert_eq!(shell_quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_allowlist_names_both_hosts() {
        let lists = allowlist("contoso", "example.com", 8443).unwrap();
        let plain = &lists[0].1;
        assert!(plain.contains("contososensorapi.example.com"), "{plain}");
        assert!(plain.contains("contoso.example.com"), "{plain}");
        assert_eq!(
            lists.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            ["plain", "csv", "squid"]
        );
    }
}
