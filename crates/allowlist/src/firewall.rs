//! Prefixes as packet-filter configuration: an nftables table with one named set per family,
//! or iptables-restore input with one chain.
//!
//! Both outputs are meant to be re-loaded whenever the service tag changes (see `drift`), so
//! each replaces its previous contents in one transaction: the nftables file declares the sets,
//! flushes them and adds the elements (`nft -f` applies a file atomically); iptables-restore
//! empties a user chain when it declares it, also with `--noflush`. Neither output adds a rule
//! that uses the set or chain: where traffic is allowed is the administrator's policy; the
//! header comments show the usual rule.

use crate::cidr::Family;
use crate::servicetags::Selection;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    #[error("{tag} has both IPv4 and IPv6 prefixes, and iptables-restore takes one family per file: add --family ipv4 (for iptables-restore) or --family ipv6 (for ip6tables-restore)")]
    MixedFamilies { tag: String },
}

/// The nftables table name.
pub const NFT_TABLE: &str = "uplink";
/// The iptables chain name.
pub const IPTABLES_CHAIN: &str = "UPLINK-ALLOW";

/// The name of the set holding `family`'s prefixes of a tag: the tag with every character that
/// is not a letter, digit or `_` replaced by `_`, then `_v4` or `_v6`.
pub fn nft_set_name(tag: &str, family: Family) -> String {
    let mut name: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert(0, 's');
    }
    name.push_str(match family {
        Family::V4 => "_v4",
        Family::V6 => "_v6",
    });
    name
}

/// A file for `nft -f`: table `inet uplink`, a named interval set per family present.
pub fn nftables(s: &Selection) -> String {
    let families = s.families();
    let mut out = String::from("#!/usr/sbin/nft -f\n");
    out.push_str(&format!(
        "# uplink allowlist ips --format nftables: {}\n",
        s.summary()
    ));
    out.push_str(
        "# Load with `nft -f FILE`; loading again replaces the sets' contents atomically.\n",
    );
    out.push_str("# Use the sets from a chain of your own, e.g.:\n");
    for f in &families {
        let (kw, name) = match f {
            Family::V4 => ("ip", nft_set_name(&s.tag, *f)),
            Family::V6 => ("ip6", nft_set_name(&s.tag, *f)),
        };
        out.push_str(&format!("#   {kw} daddr @{name} tcp dport 443 accept\n"));
    }
    out.push_str(&format!("table inet {NFT_TABLE} {{\n"));
    for f in &families {
        let kind = match f {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        };
        out.push_str(&format!(
            "\tset {} {{\n\t\ttype {kind}\n\t\tflags interval\n\t\tauto-merge\n\t}}\n",
            nft_set_name(&s.tag, *f)
        ));
    }
    out.push_str("}\n");
    for f in &families {
        let name = nft_set_name(&s.tag, *f);
        out.push_str(&format!("flush set inet {NFT_TABLE} {name}\n"));
        out.push_str(&format!("add element inet {NFT_TABLE} {name} {{\n"));
        let items: Vec<String> = s
            .prefixes
            .iter()
            .filter(|p| p.family() == *f)
            .map(|p| format!("\t{p}"))
            .collect();
        out.push_str(&items.join(",\n"));
        out.push_str("\n}\n");
    }
    out
}

/// Input for `iptables-restore --noflush` (or `ip6tables-restore`): chain `UPLINK-ALLOW` in the
/// filter table, one ACCEPT rule per prefix. One family only.
pub fn iptables(s: &Selection) -> Result<String, FirewallError> {
    let families = s.families();
    let family = match families.as_slice() {
        [f] => *f,
        _ => return Err(FirewallError::MixedFamilies { tag: s.tag.clone() }),
    };
    let (restore, tool) = match family {
        Family::V4 => ("iptables-restore", "iptables"),
        Family::V6 => ("ip6tables-restore", "ip6tables"),
    };
    let mut out = format!(
        "# uplink allowlist ips --format iptables: {}\n",
        s.summary()
    );
    out.push_str(&format!(
        "# Load with `{restore} --noflush FILE`; declaring the chain empties it first, so loading again replaces it.\n"
    ));
    out.push_str(&format!(
        "# Send traffic to it from your own rules, e.g.: {tool} -A OUTPUT -p tcp --dport 443 -j {IPTABLES_CHAIN}\n"
    ));
    out.push_str("*filter\n");
    out.push_str(&format!(":{IPTABLES_CHAIN} - [0:0]\n"));
    for p in &s.prefixes {
        out.push_str(&format!("-A {IPTABLES_CHAIN} -d {p} -j ACCEPT\n"));
    }
    out.push_str("COMMIT\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::Prefix;

    fn sel(tag: &str, prefixes: &[&str]) -> Selection {
        Selection {
            tag: tag.into(),
            cloud: "Public".into(),
            change_number: 9,
            tag_change_number: Some(2),
            region: String::new(),
            family: None,
            aggregated: false,
            prefixes: prefixes.iter().map(|p| Prefix::parse(p).unwrap()).collect(),
        }
    }

    #[test]
    fn set_names() {
        let cases = [
            (
                "AzureAdvancedThreatProtection",
                Family::V4,
                "AzureAdvancedThreatProtection_v4",
            ),
            (
                "AzureCloud.westeurope",
                Family::V6,
                "AzureCloud_westeurope_v6",
            ),
            ("1Tag-x", Family::V4, "s1Tag_x_v4"),
        ];
        for (tag, f, want) in cases {
            assert_eq!(nft_set_name(tag, f), want);
        }
    }

    #[test]
    fn nftables_has_one_set_per_present_family() {
        let out = nftables(&sel("T", &["10.0.0.0/8", "2001:db8::/32", "192.0.2.0/24"]));
        assert!(out.contains(
            "\tset T_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n\t}\n"
        ));
        assert!(out.contains("add element inet uplink T_v4 {\n\t10.0.0.0/8,\n\t192.0.2.0/24\n}\n"));
        assert!(out.contains("add element inet uplink T_v6 {\n\t2001:db8::/32\n}\n"));
        let v4 = nftables(&sel("T", &["10.0.0.0/8"]));
        assert!(!v4.contains("T_v6"));
    }

    #[test]
    fn iptables_needs_one_family() {
        let err = iptables(&sel("T", &["10.0.0.0/8", "2001:db8::/32"])).unwrap_err();
        assert!(err.to_string().contains("add --family ipv4"));
        let out = iptables(&sel("T", &["2001:db8::/32"])).unwrap();
        assert!(out.contains("ip6tables-restore --noflush"));
        assert!(out.ends_with(
            "*filter\n:UPLINK-ALLOW - [0:0]\n-A UPLINK-ALLOW -d 2001:db8::/32 -j ACCEPT\nCOMMIT\n"
        ));
    }
}
