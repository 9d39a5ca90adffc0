//! A real NetworkManager, confined: in the client namespace of a [`DhcpLink`] (so the veth is
//! the only device it sees), in a mount namespace of its own with tmpfs over /etc/NetworkManager,
//! /var/lib/NetworkManager and /run (so none of the host's state is read or written), in a UTS
//! namespace of its own (so it cannot rename the host), talking over a private D-Bus system bus
//! (a dbus-daemon listening on a socket in a temporary directory). Its one connection is a keyfile
//! for the veth with DHCP (ipv4.method=auto); it manages no other device, and never touches DNS
//! or the hostname.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Daemon, DhcpLink, CLIENT_IF};
use crate::support::require;

/// A dbus-daemon of type `system` on a unix socket of its own, with the system's service
/// policies (/usr/share/dbus-1/system.d) and everything allowed to root.
pub struct PrivateBus {
    pub address: String,
    _daemon: Daemon,
}

impl PrivateBus {
    pub fn start(dir: &Path) -> PrivateBus {
        require("dbus-daemon");
        let socket = dir.join("system_bus_socket");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"]);
        let daemon = Daemon::spawn("dbus-daemon", cmd);
        // It prints its address once it listens.
        daemon.expect("unix:path=", Duration::from_secs(20));
        PrivateBus {
            address: format!("unix:path={}", socket.display()),
            _daemon: daemon,
        }
    }
}

pub struct NetworkManager {
    pub daemon: Daemon,
    pub config: PathBuf,
}

impl NetworkManager {
    /// Starts NetworkManager on the client side of `link`, on `bus`, and returns once it
    /// reports the DHCP connection activated.
    pub fn start(link: &DhcpLink, bus: &PrivateBus, dir: &Path) -> NetworkManager {
        require("NetworkManager");
        require("unshare");
        let conns = dir.join("system-connections");
        std::fs::create_dir_all(&conns).unwrap();
        let keyfile = conns.join("uplink-dhcp.nmconnection");
        std::fs::write(
            &keyfile,
            format!(
                "[connection]\nid=uplink-dhcp\ntype=ethernet\ninterface-name={CLIENT_IF}\n\
                 autoconnect=true\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=disabled\n"
            ),
        )
        .unwrap();
        // NetworkManager ignores keyfiles others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.join("NetworkManager.conf");
        std::fs::write(
            &config,
            format!(
                "[main]\nplugins=keyfile\ndhcp=internal\ndns=none\nrc-manager=unmanaged\n\
                 systemd-resolved=false\nhostname-mode=none\nauth-polkit=false\n\
                 no-auto-default=*\n\n\
                 [keyfile]\npath={}\nunmanaged-devices=except:interface-name:{CLIENT_IF}\n\n\
                 [connectivity]\nenabled=false\n\n[logging]\nlevel=INFO\n",
                conns.display()
            ),
        )
        .unwrap();
        let config_dir = dir.join("conf.d");
        std::fs::create_dir_all(&config_dir).unwrap();
        // Inside the mount namespace: tmpfs over NetworkManager's state, and /sys read-only.
        // NetworkManager waits for udev to initialize a device when /sys is writable; with no udev
        // running the device would stay unmanaged ("platform-init") forever. A read-only /sys is
        // how it knows it runs in a container, and it then takes devices as the kernel shows them.
        let script = format!(
            "set -e\n\
             mount -t tmpfs tmpfs /etc/NetworkManager\n\
             mount -t tmpfs tmpfs /var/lib/NetworkManager\n\
             mount -t tmpfs tmpfs /run\n\
             mkdir /run/NetworkManager\n\
             mount -o remount,bind,ro /sys\n\
             exec NetworkManager --debug --config '{}' --config-dir '{}' --pid-file '{}'\n",
            config.display(),
            config_dir.display(),
            dir.join("NetworkManager.pid").display()
        );
        let mut cmd = link.client_cmd("unshare");
        cmd.args(["--mount", "--uts", "--propagation", "private", "sh", "-c"])
            .arg(script)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
        let daemon = Daemon::spawn("NetworkManager", cmd);
        daemon.expect(
            &format!("device ({CLIENT_IF}): Activation: successful"),
            Duration::from_secs(60),
        );
        NetworkManager { daemon, config }
    }
}
