//! Path globs for `[[sources.files]] paths`: `*`, `?` and `[...]` (with `!` or `^` to negate and
//! `a-z` ranges) match within one path component, as in the shell; `**` is not supported (name
//! each directory level). Matching ([`matches`]) is pure; [`expand`] lists directories only for
//! the components that have a wildcard. Hidden files are matched only by a pattern that starts
//! with a dot, like the shell.

use std::path::{Path, PathBuf};

/// Whether `name` (one path component) matches `pattern` (one component).
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    match_from(pattern.as_bytes(), name.as_bytes())
}

fn match_from(p: &[u8], n: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear-ish, no recursion blow-up.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni]) {
                        if ok {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == b'[' {
                        // An unclosed `[` is a literal.
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `p`: whether `c` is in it, and the class's length. `None` if
/// the class is not closed.
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            if p[i] <= c && c <= p[i + 2] {
                found = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                found = true;
            }
            i += 1;
        }
    }
    None
}

/// Whether the absolute `path` is one `pattern` would match (component by component, as
/// [`expand`] matches them), whether or not it exists.
pub fn matches_path(pattern: &str, path: &Path) -> bool {
    let want: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let Some(path) = path.to_str() else {
        return false;
    };
    let got: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    path.starts_with('/')
        && want.len() == got.len()
        && want.iter().zip(&got).all(|(p, n)| matches(p, n))
}

fn has_wildcard(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// The existing regular files matching an absolute `pattern`, sorted. Unreadable directories
/// match nothing (a log directory that appears later is found at the next scan).
pub fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from("/")];
    let components: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    for (i, comp) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let mut next = Vec::new();
        for base in &current {
            if has_wildcard(comp) {
                let Ok(rd) = std::fs::read_dir(base) else {
                    continue;
                };
                for entry in rd.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if matches(comp, name) {
                        next.push(base.join(name));
                    }
                }
            } else {
                next.push(base.join(comp));
            }
        }
        if !last {
            next.retain(|p| p.is_dir());
        }
        current = next;
    }
    current.retain(|p| is_file(p));
    current.sort();
    current.dedup();
    current
}

fn is_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_matching() {
        for (pattern, name, want) in [
            ("*.log", "app.log", true),
            ("*.log", "app.log.1", false),
            ("app.log*", "app.log.1", true),
            ("app.log*", "app.log", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]x", "bx", true),
            ("[!ab]x", "bx", false),
            ("[a-c]*", "cat", true),
            ("[a-c]*", "dog", false),
            ("*", ".hidden", false),
            (".*", ".hidden", true),
            ("*a*b*c", "xaxbxxc", true),
            ("*a*b*c", "xaxbxxcd", false),
            ("[", "[", true),
            ("app.log", "app.log", true),
            ("", "", true),
        ] {
            assert_eq!(matches(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn path_matching() {
        for (pattern, path, want) in [
            ("/var/log/app.log", "/var/log/app.log", true),
            ("/var/log/app.log", "/var/log/app.log.1", false),
            ("/var/log/*.log", "/var/log/a.log", true),
            ("/var/log/*.log", "/var/log/sub/a.log", false),
            ("/var/*/a.log", "/var/x/a.log", true),
            ("/var/log/*.log", "var/log/a.log", false),
            ("/var//log/a.log", "/var/log/a.log", true),
        ] {
            assert_eq!(
                matches_path(pattern, Path::new(path)),
                want,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn expansion() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a.log", "b.log", "c.txt", "sub/d.log"] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let base = d.path().to_str().unwrap();
        assert_eq!(
            expand(&format!("{base}/*.log")),
            vec![d.path().join("a.log"), d.path().join("b.log")]
        );
        assert_eq!(
            expand(&format!("{base}/*/*.log")),
            vec![d.path().join("sub/d.log")]
        );
        assert_eq!(
            expand(&format!("{base}/c.txt")),
            vec![d.path().join("c.txt")]
        );
        assert!(expand(&format!("{base}/missing/*.log")).is_empty());
    }
}
