//! Windows proxy settings, read and written anywhere: the WinINet and WinHTTP registry blobs,
//! the Internet Settings strings, the telemetry proxy policy, and the .reg files that carry them.
//!
//! # Why
//!
//! Sensors on Windows find their proxy in registry values that are opaque binary blobs. The
//! seeds' procedure has administrators copy the user's `DefaultConnectionSettings` into the
//! LocalSystem and LocalService profiles with regedit, run `netsh winhttp set proxy`, and set
//! group policy values by hand. This crate makes each of those a pure function over bytes, so
//! `uplink winproxy` can produce a reviewable .reg file from any OS (a Linux management host, a
//! CI pipeline building GPOs), and so a sensor can read the result as its proxy source.
//!
//! # The pieces
//!
//! - [`wininet`]: `DefaultConnectionSettings` / `SavedLegacySettings` / per-connection values
//!   ([`ConnectionSettings`]). [`winhttp`]: `WinHttpSettings` ([`WinHttpSettings`]). Both keep
//!   every byte: `encode(decode(b)) == b` for any `b` that decodes, and a new value is what
//!   Windows writes. Errors ([`DecodeError`]) name the field and its offset.
//! - [`inet_settings`]: the string form (`ProxyEnable`, `ProxyServer`, `ProxyOverride`,
//!   `AutoConfigURL`, `AutoDetect`), convertible to and from the blob.
//! - [`telemetry`]: `TelemetryProxyServer` and `DisableEnterpriseAuthProxy`.
//! - [`proxy_list`]: the proxy server string (`host:port`, `http=a:80;https=b:443`) and the
//!   bypass list (`;`-separated, `<local>`).
//! - [`regfile`]: .reg files, version 5 (UTF-16LE) and REGEDIT4 (ANSI), read leniently and
//!   written exactly as regedit writes them ([`text`] holds the encodings).
//! - [`scan`]: the proxy values in a parsed .reg file, and [`effective_proxy`]: the settings a
//!   sensor service would follow, as a [`ProxySettings`] a caller turns into a route.
//! - [`procedure`]: the seeds' procedures (copy to the service accounts with a restore file,
//!   `netsh winhttp set/reset proxy`, the telemetry policy) as functions returning a [`RegFile`].
//!
//! # Deliberately not done
//!
//! Nothing here reads or writes a live registry, runs `netsh`, or touches the network: the
//! output is a file an administrator reviews and imports with `reg import`. Host names are not
//! matched against bypass lists (the proxy engine does that). The blob strings are ASCII only
//! (Windows stores them in the ANSI code page; international names belong in punycode). The
//! meaning of the trailing bytes of a WinINet value is unknown; they are kept, not interpreted.

pub mod blob;
pub mod inet_settings;
pub mod keys;
pub mod procedure;
pub mod proxy_list;
pub mod regfile;
pub mod report;
pub mod scan;
pub mod settings;
pub mod telemetry;
pub mod text;
pub mod winhttp;
pub mod wininet;

pub use blob::{DecodeError, EncodeError, Field, Flags, Layout};
pub use inet_settings::InternetSettings;
pub use proxy_list::{ProxyEntry, ProxyListError};
pub use regfile::{Hive, KeyPath, RegData, RegError, RegFile, RegFormat, RegKey, RegValue};
pub use scan::{effective_proxy, find_proxy_values, Effective, FoundError, FoundValue, Source};
pub use settings::{Decoded, Kind, ProxySettings, Summary};
pub use telemetry::TelemetryPolicy;
pub use winhttp::WinHttpSettings;
pub use wininet::ConnectionSettings;
