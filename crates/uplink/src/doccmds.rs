//! The commands the documentation shows, as a shell would run them: shared by the unit test
//! that parses each one with this build's flags (`main.rs`) and the integration test that runs
//! the ones needing no service (`tests/it/docs.rs`, which includes this file by path).

/// The `uplink …` commands of a Markdown text: the lines of its fenced code blocks that run
/// uplink (after `$ `, `sudo ` or environment assignments; continuation lines joined;
/// a trailing `# comment` dropped). Inline code spans are references to commands (`uplink
/// proxy explain`) and synopses (`[--json]`), not commands to paste: left out.
pub fn doc_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let l = line
                .trim()
                .trim_start_matches("$ ")
                .trim_start_matches("sudo ");
            let l = match pending.take() {
                Some(mut p) => {
                    p.push(' ');
                    p.push_str(l);
                    p
                }
                None if l.contains("uplink ") => l.to_owned(),
                None => continue,
            };
            match l.strip_suffix('\\') {
                Some(head) => pending = Some(head.trim_end().to_owned()),
                None => out.push(l),
            }
        }
    }
    out
}

/// A pasted example's words as the shell gives them to uplink: environment assignments
/// before the command dropped, up to the first pipe, redirection or `&&`; `None` for a line
/// that does not run uplink (e.g. `systemctl reload …`).
pub fn uplink_words(line: &str) -> Option<Vec<String>> {
    let words = shlex::split(line)?;
    let words: Vec<String> = words
        .into_iter()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .take_while(|w| !["|", "||", ";", ">", ">>", "&&", "<"].contains(&w.as_str()))
        .collect();
    (words.first().map(String::as_str) == Some("uplink")).then_some(words)
}
