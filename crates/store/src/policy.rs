//! Central policy at rest (issue #26, docs/policy.md): what both backends store and how.
//!
//! Every `fleet policy set` or `clear` is a new version of the workspace's policy (1, 2, …),
//! kept: a row `(workspace, version, set_at, doc, password)` where `doc` is the policy as JSON
//! *without* its password (`None`: the policy was cleared) and `password` the proxy password
//! sealed under the master key, bound to the workspace and version. Each version appends
//! [`crate::ChangeKind::Policy`] to the change log in its transaction. The workspace's current
//! policy is its newest version. This module is the encoding, the same for both backends.

use uplink_policy::{Password, Policy, Route};

use crate::{MasterKey, StoreError};

/// One stored version of a workspace's policy, as `fleet policy show` lists it (no password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVersion {
    pub workspace: String,
    pub version: u64,
    /// Unix milliseconds.
    pub set_at: i64,
    /// The policy without its password; `None`: this version cleared the policy.
    pub policy: Option<Policy>,
}

/// The associated data binding a sealed policy password to its workspace and version.
pub fn password_context(workspace: &str, version: u64) -> String {
    format!("uplink:workspace:{workspace}:policy:{version}:password")
}

/// The row's `doc` and sealed `password` for `policy` (its version already set).
pub fn encode(
    key: &MasterKey,
    workspace: &str,
    policy: &Policy,
) -> Result<(String, Option<String>), StoreError> {
    let doc = serde_json::to_string(&policy.redacted())
        .map_err(|e| StoreError::Settings(format!("cannot encode the policy: {e}")))?;
    let sealed = policy
        .route
        .password()
        .map(|p| key.seal(p.expose(), &password_context(workspace, policy.version)));
    Ok((doc, sealed))
}

/// The policy a row holds, its password opened (`doc` `None`: cleared).
pub fn decode(
    key: &MasterKey,
    workspace: &str,
    version: u64,
    doc: Option<&str>,
    sealed: Option<&str>,
) -> Result<Option<Policy>, StoreError> {
    let Some(doc) = doc else {
        return Ok(None);
    };
    let mut policy = decode_redacted(workspace, version, doc)?;
    if let (Route::Proxy { password, .. }, Some(s)) = (&mut policy.route, sealed) {
        let open = key.open(s, &password_context(workspace, version))?;
        *password = Some(Password::new(open));
    }
    Ok(Some(policy))
}

/// The policy a row holds, without its password.
pub fn decode_redacted(workspace: &str, version: u64, doc: &str) -> Result<Policy, StoreError> {
    let mut policy: Policy = serde_json::from_str(doc).map_err(|e| StoreError::Damaged {
        path: format!("policy v{version} of workspace {workspace:?}"),
        detail: format!("the stored policy does not parse: {e}"),
    })?;
    policy.version = version;
    Ok(policy)
}

/// Validates a policy before it is stored (the store refuses what a sensor could not use).
pub fn check(policy: &Policy) -> Result<(), StoreError> {
    policy
        .validate()
        .map_err(|e| StoreError::Settings(e.to_string()))
}

// The JSON shapes of `fleet policy show --json` and the admin API (docs/policy.md), one
// definition for both. Never a password: policies here are redacted, and `password` says only
// whether one is set.

/// A policy as shown: its fields, the password replaced by whether one is set.
pub fn policy_json(p: &Policy) -> serde_json::Value {
    let mut v = serde_json::to_value(p.redacted()).unwrap_or(serde_json::Value::Null);
    if let Route::Proxy { user, .. } = &p.route {
        // A user always comes with a password (validation); a stored, redacted policy has none.
        v["route"]["password"] =
            serde_json::Value::String(if user.is_some() { "set" } else { "none" }.to_owned());
    }
    v["describe"] = serde_json::Value::String(p.route.describe());
    v
}

/// A version as listed.
pub fn version_json(v: &PolicyVersion) -> serde_json::Value {
    serde_json::json!({
        "version": v.version,
        "set_at": uplink_fleet::rfc3339(v.set_at),
        "cleared": v.policy.is_none(),
        "policy": v.policy.as_ref().map(policy_json),
    })
}

/// What a sensor reported of the policy (its last report's `policy`), beside whether the
/// current policy selects it: `{"sensor_id","name","selected","applied","fetched","rejected"}`.
pub fn sensor_policy_json(s: &crate::FleetSensor, current: Option<&Policy>) -> serde_json::Value {
    use serde_json::Value;
    let report: Value = s
        .report
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let state = report.get("policy").cloned().unwrap_or(Value::Null);
    serde_json::json!({
        "sensor_id": s.sensor_id,
        "name": s.name,
        "selected": current.is_some_and(|p| p.applies_to(&s.sensor_id)),
        "applied": state.get("applied").cloned().unwrap_or(Value::Null),
        "fetched": state.get("fetched").cloned().unwrap_or(Value::Null),
        "rejected": state.get("rejected").cloned().unwrap_or(Value::Null),
    })
}

/// `fleet policy show --json`: the current version, every version, each sensor's.
pub fn show_json(
    workspace: &str,
    versions: &[PolicyVersion],
    sensors: &[crate::FleetSensor],
) -> serde_json::Value {
    let current = versions.first().and_then(|v| v.policy.as_ref());
    serde_json::json!({
        "workspace": workspace,
        "version": versions.first().map_or(0, |v| v.version),
        "policy": current.map(policy_json),
        "versions": versions.iter().map(version_json).collect::<Vec<_>>(),
        "sensors": sensors.iter().map(|s| sensor_policy_json(s, current)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uplink_policy::Target;

    #[test]
    fn the_password_is_sealed_and_bound_to_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::MasterKeyFile(dir.path().join("k"))
            .resolve(false)
            .unwrap();
        let mut p = Policy::new(
            Route::Proxy {
                url: "http://b:3128".into(),
                user: Some("CORP\\svc".into()),
                password: Some(Password::new("hunter2")),
                ca_pem: None,
            },
            Target::All,
        );
        p.version = 3;
        let (doc, sealed) = encode(&key, "w", &p).unwrap();
        assert!(!doc.contains("hunter2"), "{doc}");
        let sealed = sealed.unwrap();
        assert!(!sealed.contains("hunter2") && MasterKey::is_sealed(&sealed));
        assert_eq!(
            decode(&key, "w", 3, Some(&doc), Some(&sealed)).unwrap(),
            Some(p.clone())
        );
        // Moved to another version or workspace, it does not open.
        assert!(decode(&key, "w", 4, Some(&doc), Some(&sealed)).is_err());
        assert!(decode(&key, "x", 3, Some(&doc), Some(&sealed)).is_err());
        assert_eq!(decode(&key, "w", 5, None, None).unwrap(), None);
        assert!(decode_redacted("w", 3, "{").is_err());
        assert_eq!(decode_redacted("w", 3, &doc).unwrap(), p.redacted());
    }
}
