//! The sensor as a systemd service: a hardened unit file.
//!
//! The unit runs `uplink sensor run` with the default paths (/etc/uplink, /var/lib/uplink),
//! restarts it on failure, stops it with SIGTERM (the uploader lets the batch in flight finish,
//! at most 10 s) and reloads it with SIGHUP (configuration and route). Hardening: the file system
//! is read-only but for the state directory, no new privileges, no capabilities, private /tmp and
//! devices, only IP and Unix sockets. It runs as a dedicated user when one is given (install uses
//! `uplink` when that user exists and hands it the sensor's files); otherwise as root, still
//! sandboxed.
//!
//! A dedicated user cannot read the system journal (`[sources.journal]`) unless it is in the
//! `systemd-journal` group, so the unit adds `SupplementaryGroups=systemd-journal` — but only when
//! that group exists on the machine the unit is written for: systemd refuses to start a unit whose
//! supplementary group does not resolve (`status=216/GROUP`), and a sensor that does not start is
//! worse than one that cannot read the journal. The group is added whether or not the journal
//! source is configured yet, because `[sources]` is edited after install and the unit is not
//! rewritten then; membership grants nothing but read access to the journal. As root the sensor
//! reads the journal anyway and no group is added. Whether the group exists is the caller's
//! question (`account::group_exists` asks NSS): this module does no I/O.

use std::path::Path;

/// Where `sensor install` puts the unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/uplink-sensor.service";
/// The first line of every unit written here. `sensor uninstall` removes the unit only when it
/// still starts with this line: a unit an administrator wrote (or rewrote) is never deleted.
pub const MARKER: &str = "# uplink sensor: uploads this machine's events to its workspace. Written by `uplink sensor install`.";
/// The link `systemctl enable` makes for the unit (its `WantedBy=`).
pub const WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/uplink-sensor.service";
/// The user a packaged sensor runs as, when it exists.
pub const SERVICE_USER: &str = "uplink";
/// The group whose members may read the system journal.
pub const JOURNAL_GROUP: &str = "systemd-journal";

/// The unit file for `binary`, running as `user` (root when `None`). `journal_group`: the
/// [`JOURNAL_GROUP`] exists on the target machine, so a dedicated user is given it (see the
/// module docs); it changes nothing for root.
pub fn unit(binary: &Path, user: Option<&str>, journal_group: bool) -> String {
    let identity = match user {
        Some(u) if journal_group => format!(
            "User={u}\n# Read access to the system journal ([sources.journal]); only written when the\n# group exists, as systemd does not start a unit whose group is missing.\nSupplementaryGroups={JOURNAL_GROUP}\n"
        ),
        // No Group=: systemd then uses the user's primary group, whatever its name (`nobody`'s
        // is `nogroup` on Debian; a Group= naming the user would stop the unit, 216/GROUP).
        Some(u) => format!("User={u}\n"),
        None => String::new(),
    };
    format!(
        "{MARKER}
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
# /etc/uplink too: certificate renewal replaces client.key and client.pem there.
ReadWritePaths=/var/lib/uplink /etc/uplink
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

/// Whether a unit file's text is one [`unit`] wrote (see [`MARKER`]).
pub fn is_ours(text: &str) -> bool {
    text.lines().next() == Some(MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_sensor_hardened() {
        let root = unit(Path::new("/usr/bin/uplink"), None, true);
        for want in [
            "ExecStart=/usr/bin/uplink sensor run",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/uplink /etc/uplink",
            "PrivateTmp=true",
            "NoNewPrivileges=true",
        ] {
            assert!(root.contains(want), "missing {want}");
        }
        assert!(!root.contains("User="));
        let dedicated = unit(Path::new("/usr/bin/uplink"), Some("uplink"), false);
        assert!(dedicated.contains("User=uplink\n"));
        assert!(
            !dedicated.contains("Group=uplink"),
            "the user's own primary group is used"
        );
    }

    #[test]
    fn the_journal_group_only_for_a_dedicated_user_and_only_when_it_exists() {
        let bin = Path::new("/usr/bin/uplink");
        // (user, the group exists, SupplementaryGroups expected)
        for (user, exists, want) in [
            (Some("uplink"), true, true),
            (Some("uplink"), false, false),
            (None, true, false),
            (None, false, false),
        ] {
            let text = unit(bin, user, exists);
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("SupplementaryGroups="))
                .collect();
            let expected: &[&str] = if want {
                &["SupplementaryGroups=systemd-journal"]
            } else {
                &[]
            };
            assert_eq!(lines, expected, "user {user:?}, group exists {exists}");
            // The group goes in [Service], after the user it applies to.
            if want {
                let service = text.find("[Service]").unwrap();
                let install = text.find("[Install]").unwrap();
                let at = text.find("SupplementaryGroups=").unwrap();
                assert!(service < at && at < install && text.find("User=").unwrap() < at);
            }
        }
    }

    #[test]
    fn only_our_units_are_ours() {
        let ours = unit(Path::new("/usr/bin/uplink"), Some("uplink"), true);
        assert!(is_ours(&ours));
        for theirs in [
            "",
            "[Unit]\nDescription=uplink sensor\n",
            // Our text, but an administrator put a line of their own first.
            &format!("# changed for our site\n{ours}"),
        ] {
            assert!(!is_ours(theirs), "{theirs}");
        }
    }
}
