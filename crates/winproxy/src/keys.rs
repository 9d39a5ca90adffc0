//! Where Windows keeps proxy settings: key paths, value names and the service accounts.

use crate::regfile::{Hive, KeyPath};

/// WinINet's per-user blobs, below a user's hive (HKCU, or HKU\SID).
pub const CONNECTIONS: &str =
    r"Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";
/// The per-user string form, below a user's hive.
pub const INTERNET_SETTINGS: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings";
/// WinHTTP's machine-wide blob, below HKLM (the casing regedit shows).
pub const WINHTTP_CONNECTIONS: &str =
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";
/// The same for 32-bit processes on 64-bit Windows.
pub const WINHTTP_CONNECTIONS_WOW64: &str =
    r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";
/// The telemetry group policy, below HKLM.
pub const DATA_COLLECTION_POLICY: &str = r"SOFTWARE\Policies\Microsoft\Windows\DataCollection";

pub const DEFAULT_CONNECTION_SETTINGS: &str = "DefaultConnectionSettings";
pub const SAVED_LEGACY_SETTINGS: &str = "SavedLegacySettings";
pub const WINHTTP_SETTINGS: &str = "WinHttpSettings";

/// A built-in account whose profile holds WinINet settings for services running as it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceAccount {
    /// NT AUTHORITY\SYSTEM, S-1-5-18 (its profile is also `HKEY_USERS\.DEFAULT`).
    LocalSystem,
    /// NT AUTHORITY\LOCAL SERVICE, S-1-5-19.
    LocalService,
}

impl ServiceAccount {
    pub const ALL: [ServiceAccount; 2] =
        [ServiceAccount::LocalSystem, ServiceAccount::LocalService];

    pub fn sid(self) -> &'static str {
        match self {
            ServiceAccount::LocalSystem => "S-1-5-18",
            ServiceAccount::LocalService => "S-1-5-19",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ServiceAccount::LocalSystem => "LocalSystem",
            ServiceAccount::LocalService => "LocalService",
        }
    }

    /// Its `...\Internet Settings\Connections` key.
    pub fn connections(self) -> KeyPath {
        KeyPath::new(Hive::Users, &format!("{}\\{CONNECTIONS}", self.sid()))
    }

    /// Other names of its Connections key (`HKEY_USERS\.DEFAULT` is LocalSystem's profile).
    pub fn aliases(self) -> Vec<KeyPath> {
        let mut out = vec![self.connections()];
        if self == ServiceAccount::LocalSystem {
            out.push(KeyPath::new(
                Hive::Users,
                &format!(".DEFAULT\\{CONNECTIONS}"),
            ));
        }
        out
    }
}

/// The current user's Connections key.
pub fn user_connections() -> KeyPath {
    KeyPath::new(Hive::CurrentUser, CONNECTIONS)
}

/// The current user's Internet Settings key.
pub fn user_internet_settings() -> KeyPath {
    KeyPath::new(Hive::CurrentUser, INTERNET_SETTINGS)
}

/// WinHTTP's key (`wow64`: the 32-bit view).
pub fn winhttp_connections(wow64: bool) -> KeyPath {
    KeyPath::new(
        Hive::LocalMachine,
        if wow64 {
            WINHTTP_CONNECTIONS_WOW64
        } else {
            WINHTTP_CONNECTIONS
        },
    )
}

/// The telemetry policy key.
pub fn data_collection_policy() -> KeyPath {
    KeyPath::new(Hive::LocalMachine, DATA_COLLECTION_POLICY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_regedit_shows_them() {
        let cases = [
            (
                ServiceAccount::LocalSystem.connections(),
                r"HKEY_USERS\S-1-5-18\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
            ),
            (
                ServiceAccount::LocalService.connections(),
                r"HKEY_USERS\S-1-5-19\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
            ),
            (
                winhttp_connections(false),
                r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
            ),
            (
                winhttp_connections(true),
                r"HKEY_LOCAL_MACHINE\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
            ),
            (
                data_collection_policy(),
                r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows\DataCollection",
            ),
            (
                user_connections(),
                r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(path.to_string(), want);
        }
        assert_eq!(
            ServiceAccount::LocalSystem.aliases()[1].to_string(),
            r"HKEY_USERS\.DEFAULT\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections"
        );
    }
}
