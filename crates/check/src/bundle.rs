//! `--bundle FILE.zip`: the report, the JSON and the environment, for a support ticket. Every
//! entry goes through [`crate::redact::redact`] here, on its way into the archive, so no caller
//! can forget to.

use std::io::Write;
use std::path::Path;

use crate::redact::redact;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "cannot write the bundle {path}: {reason}; check the directory exists and is writable"
    )]
    Write { path: String, reason: String },
}

/// Writes `entries` (name, text) to a zip at `path`, each redacted of `secrets` and of
/// secret-shaped text. The file is created 0600: even redacted, it describes the network.
pub fn write(
    path: &Path,
    entries: &[(String, String)],
    secrets: &[&str],
) -> Result<(), BundleError> {
    let err = |reason: String| BundleError::Write {
        path: path.display().to_string(),
        reason,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(path).map_err(|e| err(e.to_string()))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o600);
    for (name, text) in entries {
        zip.start_file(name.as_str(), options)
            .map_err(|e| err(e.to_string()))?;
        zip.write_all(redact(text, secrets).as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    zip.finish().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn entries_are_redacted_in_the_archive() {
        let dir = std::env::temp_dir().join(format!("uplink-check-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.zip");
        let entries = vec![
            (
                "report.txt".to_owned(),
                "proxy http://bob:Sw0rdf1sh@p:3128\n".to_owned(),
            ),
            ("env.txt".to_owned(), "note Sw0rdf1sh again\n".to_owned()),
        ];
        write(&path, &entries, &["Sw0rdf1sh"]).unwrap();
        let mut z = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(z.len(), 2);
        for i in 0..z.len() {
            let mut s = String::new();
            z.by_index(i).unwrap().read_to_string(&mut s).unwrap();
            assert!(!s.contains("Sw0rdf1sh") && s.contains("<redacted>"), "{s}");
        }
        let e = write(&dir.join("no/such/dir/b.zip"), &entries, &[]).unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
