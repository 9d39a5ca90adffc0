//! The sensor's systemd unit on disk: written by `sensor install` when none is there, removed by
//! `sensor uninstall` only while it is still the one written.
//!
//! What the unit says is [`crate::systemd`] (pure); this module decides what to do with the file
//! and does it. An administrator's unit is never overwritten or deleted: install writes only a
//! missing unit, uninstall removes only a unit whose first line is ours
//! ([`crate::systemd::is_ours`]), and the `systemctl enable` link only when it points at that
//! unit. The places are a [`UnitPlace`], the system's by default, so tests use a directory.
//! Nothing here runs `systemctl`: the caller tells the administrator what to run.
//!
//! On a system where the uplink package installed its unit ([`PACKAGED_UNIT`]), install writes
//! no unit of its own (one in /etc/systemd/system would shadow the package's, and its upgrades):
//! it enables the packaged unit, making the `WantedBy=` link `systemctl enable` would make, and
//! uninstall removes that link only. An administrator's unit in /etc/systemd/system still wins
//! over both and is kept.

use std::path::{Path, PathBuf};

use crate::systemd;

/// Where the uplink package installs the sensor's unit.
pub const PACKAGED_UNIT: &str = "/lib/systemd/system/uplink-sensor.service";

/// Where the unit and its `WantedBy=` link live, and where a package would have put its unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPlace {
    pub unit: PathBuf,
    pub wants_link: PathBuf,
    pub packaged: PathBuf,
}

impl UnitPlace {
    /// /etc/systemd/system/uplink-sensor.service, its multi-user.target.wants link, and the
    /// package's /lib/systemd/system/uplink-sensor.service.
    pub fn system() -> UnitPlace {
        UnitPlace {
            unit: PathBuf::from(systemd::UNIT_PATH),
            wants_link: PathBuf::from(systemd::WANTS_LINK),
            packaged: PathBuf::from(PACKAGED_UNIT),
        }
    }

    /// Whether the package's unit is installed (a file, or a link to one).
    fn is_packaged(&self) -> bool {
        self.packaged.is_file()
    }
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The unit's directory does not exist: no systemd here (a container, another init).
    NoSystemd,
    /// A unit was there already, ours or an administrator's: left as it is.
    Kept,
    /// The unit was written.
    Wrote,
    /// The package's unit is there: enabled (its `WantedBy=` link made, or already there), no
    /// unit written.
    EnabledPackaged,
}

/// A unit file that could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct UnitError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `text()` as the unit, unless systemd's directory is missing or a unit is already there;
/// where the package's unit is installed, enables it instead.
pub fn install(place: &UnitPlace, text: impl FnOnce() -> String) -> Result<Installed, UnitError> {
    if !place.unit.parent().is_some_and(Path::is_dir) {
        return Ok(Installed::NoSystemd);
    }
    // symlink_metadata: a dangling link an administrator left is theirs too.
    if place.unit.symlink_metadata().is_ok() {
        return Ok(Installed::Kept);
    }
    if place.is_packaged() {
        enable_packaged(place)?;
        return Ok(Installed::EnabledPackaged);
    }
    std::fs::write(&place.unit, text()).map_err(|source| UnitError {
        action: "write",
        path: place.unit.clone(),
        source,
    })?;
    Ok(Installed::Wrote)
}

/// The link `systemctl enable` makes for the package's unit. A link already there (to any
/// target) is left as it is: `systemctl enable` was run, or an administrator chose otherwise.
fn enable_packaged(place: &UnitPlace) -> Result<(), UnitError> {
    if place.wants_link.symlink_metadata().is_ok() {
        return Ok(());
    }
    let error = |source| UnitError {
        action: "enable",
        path: place.wants_link.clone(),
        source,
    };
    if let Some(dir) = place.wants_link.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    std::os::unix::fs::symlink(&place.packaged, &place.wants_link).map_err(error)
}

/// Whether [`install`] will be able to write the unit, asked before anything else is installed
/// so that a read-only /etc/systemd/system fails the install before it enrolls: creates and
/// removes a probe file beside the unit. Nothing to probe when systemd's directory is missing
/// or a unit is already there (install writes nothing then).
pub fn probe(place: &UnitPlace) -> Result<(), UnitError> {
    let Some(dir) = place.unit.parent().filter(|d| d.is_dir()) else {
        return Ok(());
    };
    if place.unit.symlink_metadata().is_ok() {
        return Ok(());
    }
    let probe = dir.join(format!(".uplink-sensor.probe.{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|source| UnitError {
            action: "write",
            path: place.unit.clone(),
            source,
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Removes the unit [`install`] wrote, and the link `systemctl enable` made to it; where no unit
/// is in /etc/systemd/system, the link to the package's unit (which stays: the package owns it).
/// Returns what was removed (nothing when the unit is missing or not ours).
pub fn remove(place: &UnitPlace) -> Result<Vec<PathBuf>, UnitError> {
    let mut removed = Vec::new();
    let remove = |path: &Path| {
        std::fs::remove_file(path).map_err(|source| UnitError {
            action: "remove",
            path: path.to_path_buf(),
            source,
        })
    };
    if place.unit.symlink_metadata().is_err() {
        if std::fs::read_link(&place.wants_link).is_ok_and(|to| to == place.packaged) {
            remove(&place.wants_link)?;
            removed.push(place.wants_link.clone());
        }
        return Ok(removed);
    }
    if !std::fs::read_to_string(&place.unit).is_ok_and(|t| systemd::is_ours(&t)) {
        return Ok(removed);
    }
    if std::fs::read_link(&place.wants_link).is_ok_and(|to| to == place.unit) {
        remove(&place.wants_link)?;
        removed.push(place.wants_link.clone());
    }
    remove(&place.unit)?;
    removed.push(place.unit.clone());
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(root: &Path) -> UnitPlace {
        let system = root.join("systemd/system");
        UnitPlace {
            unit: system.join("uplink-sensor.service"),
            wants_link: system.join("multi-user.target.wants/uplink-sensor.service"),
            packaged: root.join("lib/systemd/system/uplink-sensor.service"),
        }
    }

    fn ours() -> String {
        systemd::unit(Path::new("/usr/bin/uplink"), None, false)
    }

    #[test]
    fn probe_fails_where_the_unit_cannot_be_written_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = place(dir.path());
        // No systemd directory: nothing to write, nothing to probe.
        probe(&p).unwrap();
        let system = p.unit.parent().unwrap();
        std::fs::create_dir_all(system).unwrap();
        probe(&p).unwrap();
        assert_eq!(
            std::fs::read_dir(system).unwrap().count(),
            0,
            "the probe file stayed"
        );
        // A directory that is not one (a file in the way) cannot take the unit.
        let blocked = UnitPlace {
            unit: dir.path().join("file/uplink-sensor.service"),
            wants_link: dir.path().join("file/x"),
            packaged: dir.path().join("file/y"),
        };
        std::fs::write(dir.path().join("file"), "").unwrap();
        probe(&blocked).unwrap(); // not a directory: treated as no systemd, as install does
                                  // Read-only (as root, permissions do not stop writes: a read-only mount does; the
                                  // integration test install::a_read_only_unit_directory_installs_nothing covers it).
    }

    #[test]
    fn install_writes_only_a_missing_unit_where_systemd_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = place(dir.path());
        assert_eq!(install(&p, ours).unwrap(), Installed::NoSystemd);
        assert!(!p.unit.exists());

        std::fs::create_dir_all(p.unit.parent().unwrap()).unwrap();
        assert_eq!(install(&p, ours).unwrap(), Installed::Wrote);
        assert_eq!(std::fs::read_to_string(&p.unit).unwrap(), ours());

        // An administrator's unit stays, byte for byte, and the text is not even built.
        std::fs::write(&p.unit, "[Service]\nExecStart=/opt/mine\n").unwrap();
        assert_eq!(
            install(&p, || unreachable!("no text needed")).unwrap(),
            Installed::Kept
        );
        assert_eq!(
            std::fs::read_to_string(&p.unit).unwrap(),
            "[Service]\nExecStart=/opt/mine\n"
        );
        // So does a link, even a dangling one.
        std::fs::remove_file(&p.unit).unwrap();
        std::os::unix::fs::symlink("/nonexistent/unit", &p.unit).unwrap();
        assert_eq!(install(&p, ours).unwrap(), Installed::Kept);
    }

    #[test]
    fn remove_takes_only_our_unit_and_the_link_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = place(dir.path());
        // Nothing there: nothing removed.
        assert_eq!(remove(&p).unwrap(), Vec::<PathBuf>::new());

        std::fs::create_dir_all(p.wants_link.parent().unwrap()).unwrap();
        // (unit text, link target, what is removed)
        let other = dir.path().join("other.service");
        std::fs::write(&other, "x").unwrap();
        for (text, link, want_unit, want_link) in [
            (ours(), Some(&p.unit), true, true),
            (ours(), Some(&other), true, false),
            (ours(), None, true, false),
            (
                format!("# ours, changed\n{}", ours()),
                Some(&p.unit),
                false,
                false,
            ),
            ("[Unit]\n".to_owned(), None, false, false),
        ] {
            std::fs::write(&p.unit, &text).unwrap();
            let _ = std::fs::remove_file(&p.wants_link);
            if let Some(to) = link {
                std::os::unix::fs::symlink(to, &p.wants_link).unwrap();
            }
            let removed = remove(&p).unwrap();
            let mut want = Vec::new();
            if want_link {
                want.push(p.wants_link.clone());
            }
            if want_unit {
                want.push(p.unit.clone());
            }
            assert_eq!(
                removed,
                want,
                "unit {:?}, link {link:?}",
                text.lines().next()
            );
            assert_eq!(p.unit.exists(), !want_unit);
            assert_eq!(
                p.wants_link.symlink_metadata().is_ok(),
                link.is_some() && !want_link
            );
            assert!(other.exists(), "a link's target is never removed");
        }
    }

    #[test]
    fn a_link_path_that_is_no_link_is_left_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = place(dir.path());
        std::fs::create_dir_all(&p.wants_link).unwrap(); // a directory where the link goes
        std::fs::write(&p.unit, ours()).unwrap();
        assert_eq!(remove(&p).unwrap(), vec![p.unit.clone()]);
        assert!(p.wants_link.is_dir());
        // The unit's path is a directory: install keeps it, and remove cannot read it as ours.
        std::fs::create_dir(&p.unit).unwrap();
        assert_eq!(install(&p, ours).unwrap(), Installed::Kept);
        assert_eq!(remove(&p).unwrap(), Vec::<PathBuf>::new());
        let e = UnitError {
            action: "write",
            path: p.unit.clone(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(e
            .to_string()
            .starts_with(&format!("cannot write {}: ", p.unit.display())));
    }

    #[test]
    fn with_the_package_unit_install_enables_it_and_uninstall_disables_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = place(dir.path());
        std::fs::create_dir_all(p.unit.parent().unwrap()).unwrap();
        std::fs::create_dir_all(p.packaged.parent().unwrap()).unwrap();
        std::fs::write(&p.packaged, "[Service]\n").unwrap();

        // (a unit in /etc, a link already there, what install does, the link afterwards)
        let other = dir.path().join("other.service");
        for (etc_unit, link, want, want_link) in [
            (
                None,
                None,
                Installed::EnabledPackaged,
                Some(p.packaged.clone()),
            ),
            (
                None,
                Some(p.packaged.clone()),
                Installed::EnabledPackaged,
                Some(p.packaged.clone()),
            ),
            // An administrator's link elsewhere is theirs.
            (
                None,
                Some(other.clone()),
                Installed::EnabledPackaged,
                Some(other.clone()),
            ),
            // An administrator's unit in /etc wins over the package's: kept, nothing enabled.
            (
                Some("[Service]\nExecStart=/opt/mine\n"),
                None,
                Installed::Kept,
                None,
            ),
        ] {
            let _ = std::fs::remove_file(&p.unit);
            let _ = std::fs::remove_file(&p.wants_link);
            if let Some(text) = etc_unit {
                std::fs::write(&p.unit, text).unwrap();
            }
            if let Some(to) = &link {
                std::fs::create_dir_all(p.wants_link.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(to, &p.wants_link).unwrap();
            }
            let got = install(&p, || unreachable!("no unit written beside the package's")).unwrap();
            assert_eq!(got, want, "unit {etc_unit:?}, link {link:?}");
            assert_eq!(std::fs::read_link(&p.wants_link).ok(), want_link);
            assert_eq!(
                std::fs::read_to_string(&p.unit).ok().as_deref(),
                etc_unit,
                "the unit in /etc"
            );

            // Uninstall: the link to the package's unit goes, nothing else.
            let removed = remove(&p).unwrap();
            let link_was_ours = etc_unit.is_none() && want_link.as_ref() == Some(&p.packaged);
            let expected = if link_was_ours {
                vec![p.wants_link.clone()]
            } else {
                vec![]
            };
            assert_eq!(removed, expected, "unit {etc_unit:?}, link {link:?}");
            assert!(p.packaged.exists(), "the package's unit is the package's");
        }
    }

    #[test]
    fn enabling_the_package_unit_names_the_link_it_could_not_make() {
        let dir = tempfile::tempdir().unwrap();
        let p = place(dir.path());
        std::fs::create_dir_all(p.unit.parent().unwrap()).unwrap();
        std::fs::create_dir_all(p.packaged.parent().unwrap()).unwrap();
        std::fs::write(&p.packaged, "[Service]\n").unwrap();
        // A file where the .wants directory goes.
        std::fs::write(p.wants_link.parent().unwrap(), "").unwrap();
        let e = install(&p, String::new).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot enable {}: ", p.wants_link.display())),
            "{e}"
        );
    }
}
