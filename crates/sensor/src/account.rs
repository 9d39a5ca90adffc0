//! The account the sensor's service runs as, and handing the sensor's files to it.
//!
//! Users and groups are looked up through NSS (`getpwnam`, `getgrnam`, via `nix`), as systemd
//! itself resolves `User=` and `SupplementaryGroups=`: an `uplink` user or a `systemd-journal`
//! group that comes from a directory (SSSD, LDAP) counts as well as one in `/etc/passwd`.
//!
//! Handing files over changes owners without following symbolic links (`lchown`, and no descent
//! into a linked directory): a link planted in the state directory must not make root give away
//! whatever it points at.

use std::io;
use std::path::{Path, PathBuf};

/// A user account: its name and ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user named `name`, through NSS (`None` when there is no such user).
pub fn user(name: &str) -> io::Result<Option<Account>> {
    if name.is_empty() || name.contains('\0') {
        return Ok(None);
    }
    let found = nix::unistd::User::from_name(name).map_err(io::Error::from)?;
    Ok(found.map(|u| Account {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }))
}

/// Whether a group named `name` exists, through NSS (a failed lookup counts as no).
pub fn group_exists(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && matches!(nix::unistd::Group::from_name(name), Ok(Some(_)))
}

/// Makes `account` the owner of each of `roots` and everything below them, never following a
/// symbolic link (the link itself changes owner; what it points at does not). Modes are kept.
pub fn hand_over(roots: &[PathBuf], account: &Account) -> io::Result<()> {
    let mut todo: Vec<PathBuf> = roots.to_vec();
    while let Some(p) = todo.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(annotate(&p, e)),
        };
        std::os::unix::fs::lchown(&p, Some(account.uid), Some(account.gid))
            .map_err(|e| annotate(&p, e))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p).map_err(|e| annotate(&p, e))? {
                todo.push(entry.map_err(|e| annotate(&p, e))?.path());
            }
        }
    }
    Ok(())
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn root_and_its_group_resolve_and_made_up_names_do_not() {
        let root = user("root").unwrap().expect("every system has root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user("no-such-user-for-uplink").unwrap(), None);
        assert_eq!(user("").unwrap(), None);
        assert!(group_exists("root"));
        assert!(!group_exists("no-such-group-for-uplink"));
        assert!(!group_exists(""));
    }

    #[test]
    fn hand_over_changes_links_not_their_targets() {
        // Changing owners needs root; as anyone else, hand over to oneself (still walks it all).
        let me = nix::unistd::geteuid().as_raw();
        let target_owner = if me == 0 { 65534 } else { me };
        let account = Account {
            name: "test".into(),
            uid: target_owner,
            gid: target_owner,
        };
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "x").unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("queue")).unwrap();
        std::fs::write(state.join("queue/segment"), "y").unwrap();
        std::os::unix::fs::symlink(&secret, state.join("planted")).unwrap();
        std::os::unix::fs::symlink(outside.path(), state.join("planted-dir")).unwrap();
        hand_over(std::slice::from_ref(&state), &account).unwrap();
        for p in ["", "queue", "queue/segment", "planted", "planted-dir"] {
            let m = std::fs::symlink_metadata(state.join(p)).unwrap();
            assert_eq!(m.uid(), target_owner, "{p}");
        }
        // What the links point at keeps its owner.
        assert_eq!(std::fs::metadata(&secret).unwrap().uid(), me);
        assert_eq!(std::fs::metadata(outside.path()).unwrap().uid(), me);
    }
}
