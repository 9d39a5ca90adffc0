//! The sensor as a systemd service: a hardened unit file.
//!
//! The unit runs `uplink sensor run` with the default paths (/etc/uplink, /var/lib/uplink),
//! restarts it on failure, stops it with SIGTERM (the uploader lets the batch in flight finish,
//! at most 10 s) and reloads it with SIGHUP (configuration and route). Hardening: the file system
//! is read-only but for the state directory, no new privileges, no capabilities, private /tmp and
//! devices, only IP and Unix sockets. It runs as a dedicated user when one is given (install uses
//! `uplink` when that user exists and hands it the sensor's files); otherwise as root, still
//! sandboxed.

use std::path::Path;

/// Where `sensor install` puts the unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/uplink-sensor.service";
/// The user a packaged sensor runs as, when it exists.
pub const SERVICE_USER: &str = "uplink";

/// The unit file for `binary`, running as `user` (root when `None`).
pub fn unit(binary: &Path, user: Option<&str>) -> String {
    let identity = match user {
        Some(u) => format!("User={u}\nGroup={u}\n"),
        None => String::new(),
    };
    format!(
        "# uplink sensor: uploads this machine's events to its workspace. Written by `uplink sensor install`.
# Enable with: systemctl daemon-reload && systemctl enable --now uplink-sensor
[Unit]
Description=uplink sensor
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={binary} sensor run --log-format json
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
TimeoutStopSec=20
Restart=on-failure
RestartSec=5
{identity}UMask=0077
StateDirectory=uplink
StateDirectoryMode=0700
ProtectSystem=strict
ReadWritePaths=/var/lib/uplink
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
NoNewPrivileges=true
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true
MemoryDenyWriteExecute=true
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
",
        binary = binary.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_sensor_hardened() {
        let root = unit(Path::new("/usr/bin/uplink"), None);
        for want in [
            "ExecStart=/usr/bin/uplink sensor run",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "ProtectSystem=strict",
            "PrivateTmp=true",
            "NoNewPrivileges=true",
        ] {
            assert!(root.contains(want), "missing {want}");
        }
        assert!(!root.contains("User="));
        let dedicated = unit(Path::new("/usr/bin/uplink"), Some("uplink"));
        assert!(dedicated.contains("User=uplink\nGroup=uplink\n"));
    }
}
