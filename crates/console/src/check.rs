//! The `uplink check` command line that tests a sensor's route to its workspace, from the
//! route its last report names. Pure.

/// The command to run on the sensor's host: `route` is the report's (`DIRECT`, `PROXY
/// host:port`, `SOCKS5 host:port`, …), `sensor_url` the workspace's sensor API URL.
pub fn command(route: Option<&str>, sensor_url: &str) -> String {
    let base = format!("sudo uplink check --workspace-url {sensor_url} --ca /etc/uplink/ca.pem");
    let route = route.map(str::trim).unwrap_or("");
    let mut words = route.split_whitespace();
    match (words.next(), words.next()) {
        (Some(w), _) if w.eq_ignore_ascii_case("DIRECT") => format!("{base} --method direct"),
        (Some(kind), Some(addr))
            if kind.eq_ignore_ascii_case("PROXY")
                || kind.eq_ignore_ascii_case("HTTPS")
                || kind.to_ascii_uppercase().starts_with("SOCKS") =>
        {
            let scheme = match kind.to_ascii_uppercase().as_str() {
                "PROXY" => "http",
                "HTTPS" => "https",
                "SOCKS4" | "SOCKS" | "SOCKS5" => "socks5",
                _ => "http",
            };
            let addr = addr.trim_end_matches([';', ',']);
            let url = if addr.contains("://") {
                addr.to_owned()
            } else {
                format!("{scheme}://{addr}")
            };
            format!("{base} --method cli --proxy-url {url}")
        }
        // Unknown or no route yet: the sensor's own computation.
        _ => format!("{base} --method default"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_become_commands() {
        let u = "https://wsensorapi.example.com";
        let base = format!("sudo uplink check --workspace-url {u} --ca /etc/uplink/ca.pem");
        for (route, tail) in [
            (Some("DIRECT"), "--method direct"),
            (
                Some("PROXY proxy.corp:3128"),
                "--method cli --proxy-url http://proxy.corp:3128",
            ),
            (
                Some("HTTPS proxy.corp:443"),
                "--method cli --proxy-url https://proxy.corp:443",
            ),
            (
                Some("SOCKS5 10.0.0.1:1080"),
                "--method cli --proxy-url socks5://10.0.0.1:1080",
            ),
            (
                Some("PROXY http://p:8080"),
                "--method cli --proxy-url http://p:8080",
            ),
            (Some("PROXY"), "--method default"),
            (Some(""), "--method default"),
            (None, "--method default"),
        ] {
            assert_eq!(command(route, u), format!("{base} {tail}"), "{route:?}");
        }
    }
}
