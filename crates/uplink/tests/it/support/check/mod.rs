//! Peers for `uplink check`'s tests: test web servers with a test CA (`tls`), mitmproxy (`mitm`),
//! dnsmasq in a network namespace (`dns`).
pub mod dns;
pub mod mitm;
pub mod tls;
