//! The systemd journal, read through `journalctl -o json` (one JSON object per entry), resuming
//! after the last cursor queued.
//!
//! The cursor of the last entry in each append is checkpointed (`journal.json`) inside the append,
//! before its entries, and a checkpoint a crash left is settled against the sink at start
//! ([`crate::checkpoint`]), so a restart starts at `--after-cursor` with nothing skipped and
//! nothing sent twice, after SIGKILL too. Without a cursor, the whole journal is read.
//! `--no-tail` is always given: following (`-f`) otherwise shows only 10 entries past the cursor
//! until the next new one. When the sink is full, the entries read are kept and nothing more is read:
//! `journalctl` blocks on its pipe and the rest waits in the journal.
//!
//! Following (`-f`) is for `sensor run`; `--once` reads to the current end and `journalctl` exits.
//! The child is killed when the [`Journal`] is dropped. Parsing an entry ([`parse_entry`]) and
//! building the command line ([`args`]) are pure.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::checkpoint::{self, JournalCheckpoint, Next};
use crate::config::JournalConfig;
use crate::tail::Poll;
use crate::{Event, Sink, SourceError};

/// The event kind of journal entries.
pub const KIND: &str = "journal";
/// Longest entry line accepted from journalctl; longer ones are skipped with a warning.
pub const MAX_ENTRY_BYTES: usize = 512 * 1024;
/// Most entries per append.
const BATCH: usize = 2_000;

/// `journalctl`'s arguments.
pub fn args(cfg: &JournalConfig, cursor: Option<&str>, follow: bool) -> Vec<String> {
    let mut a: Vec<String> = vec!["-o".into(), "json".into(), "--no-pager".into()];
    for f in &cfg.files {
        a.push("--file".into());
        a.push(f.to_string_lossy().into_owned());
    }
    for u in &cfg.units {
        a.push("--unit".into());
        a.push(u.clone());
    }
    if follow {
        a.push("-f".into());
    }
    // Always: `-f` implies `-n 10`, and with `--after-cursor` journalctl then prints only 10
    // entries past the cursor and holds back the rest until something new is logged — on a
    // quiet host, what piled up while the sensor was down would wait for hours.
    a.push("--no-tail".into());
    if let Some(c) = cursor {
        a.push(format!("--after-cursor={c}"));
    }
    a
}

/// What to say when journalctl exits with an error: its status, its last word on stderr, and the
/// fix when the cause is a known one.
pub fn failure_text(status: &str, stderr: Option<&str>) -> String {
    let said = stderr.map(|s| format!(" (\"{s}\")")).unwrap_or_default();
    let fix = match stderr {
        Some(s) if s.contains("insufficient permissions") || s.contains("Permission denied") => {
            "; the sensor's user cannot read the journal: run it as root, or add the user to the \
             systemd-journal group (the unit's SupplementaryGroups=systemd-journal, which install \
             writes when the group exists)"
        }
        Some(s) if s.contains("No such file") || s.contains("Failed to open") => {
            "; check the [sources.journal] files in sensor.toml"
        }
        _ => "",
    };
    format!("exited with {status}{said}{fix}")
}

/// One `journalctl -o json` line: its cursor and the event. The event keeps the common fields
/// under short names (`message`, `priority`, `unit`, `identifier`, `pid`, `hostname`,
/// `realtime_usec`, `boot_id`) and every other non-address field under `fields`.
pub fn parse_entry(line: &str) -> Result<(String, Event), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut m) = v else {
        return Err("not a JSON object".into());
    };
    let Some(Value::String(cursor)) = m.remove("__CURSOR") else {
        return Err("no __CURSOR".into());
    };
    let mut f = Map::new();
    let text = |v: Value| -> Value {
        match v {
            // journalctl writes non-UTF-8 or binary values as arrays of bytes.
            Value::Array(bytes) => {
                let b: Vec<u8> = bytes
                    .iter()
                    .filter_map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
                    .collect();
                Value::String(String::from_utf8_lossy(&b).into_owned())
            }
            other => other,
        }
    };
    for (from, to) in [
        ("MESSAGE", "message"),
        ("_SYSTEMD_UNIT", "unit"),
        ("SYSLOG_IDENTIFIER", "identifier"),
        ("_HOSTNAME", "hostname"),
        ("_BOOT_ID", "boot_id"),
    ] {
        if let Some(v) = m.remove(from) {
            f.insert(to.into(), text(v));
        }
    }
    for (from, to) in [
        ("PRIORITY", "priority"),
        ("_PID", "pid"),
        ("__REALTIME_TIMESTAMP", "realtime_usec"),
    ] {
        if let Some(v) = m.remove(from) {
            let n = v.as_str().and_then(|s| s.parse::<u64>().ok());
            f.insert(to.into(), n.map_or(text(v), Value::from));
        }
    }
    let rest: Map<String, Value> = m
        .into_iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| (k, text(v)))
        .collect();
    if !rest.is_empty() {
        f.insert("fields".into(), Value::Object(rest));
    }
    Ok((
        cursor,
        Event {
            kind: KIND.into(),
            fields: f,
        },
    ))
}

/// A running `journalctl`, killed on drop (or from another thread through [`Journal::stopper`],
/// which also ends a read blocked in following mode).
#[derive(Debug)]
pub struct Journal {
    child: Arc<Mutex<Child>>,
    out: BufReader<ChildStdout>,
    checkpoint_path: PathBuf,
    cursor: Option<String>,
    pending: Option<(Vec<Event>, String)>,
    ended: bool,
    /// Why journalctl ended on its own with an error (not killed by us), if it did.
    failure: Option<String>,
    /// journalctl's last line on stderr (each line is also logged).
    last_stderr: Arc<Mutex<Option<String>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    stopped: Arc<AtomicBool>,
    /// The checkpoint on disk still names the last batch as pending (it is in).
    unsettled: bool,
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stopper().stop();
    }
}

/// Kills the `journalctl` of a [`Journal`] from any thread.
#[derive(Debug, Clone)]
pub struct JournalStopper {
    child: Arc<Mutex<Child>>,
    stopped: Arc<AtomicBool>,
}

impl JournalStopper {
    pub fn stop(&self) {
        // Before the kill: the reader then knows the end it sees is ours, not a failure.
        self.stopped.store(true, Ordering::SeqCst);
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Settles the journal checkpoint at `checkpoint_path` against `sink` (nothing to do without one,
/// or without a pending batch). The sensor calls it before its uploader starts, whether or not the
/// journal is configured (see [`crate::checkpoint`] on why that order matters).
pub fn reconcile(checkpoint_path: &Path, sink: &mut dyn Sink) -> Result<(), SourceError> {
    checkpoint::reconcile::<JournalCheckpoint>(checkpoint_path, sink).map(|_| ())
}

impl Journal {
    /// Starts `journalctl` (the program `journalctl` on PATH) after the checkpointed cursor,
    /// settled against `sink` first.
    pub fn start(
        cfg: &JournalConfig,
        checkpoint_path: PathBuf,
        follow: bool,
        sink: &mut dyn Sink,
    ) -> Result<Journal, SourceError> {
        let ck: JournalCheckpoint = checkpoint::reconcile(&checkpoint_path, sink)?;
        let mut child = Command::new("journalctl")
            .args(args(cfg, ck.cursor.as_deref(), follow))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                SourceError::Journal(format!(
                    "cannot start journalctl ({e}): install systemd (it provides journalctl) or remove [sources.journal]"
                ))
            })?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| SourceError::Journal("no stdout".into()))?;
        // journalctl's complaints go to the sensor's log (structured, like the rest), and the
        // last one names the failure if it exits with an error.
        let last_stderr = Arc::new(Mutex::new(None));
        let mut stderr_reader = None;
        if let Some(err) = child.stderr.take() {
            let last = last_stderr.clone();
            stderr_reader = std::thread::Builder::new()
                .name("journalctl-stderr".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        let line = line.trim().to_owned();
                        if line.is_empty() {
                            continue;
                        }
                        tracing::warn!(target: "journalctl", "{line}");
                        if let Ok(mut l) = last.lock() {
                            *l = Some(line);
                        }
                    }
                })
                .ok();
        }
        Ok(Journal {
            child: Arc::new(Mutex::new(child)),
            out: BufReader::with_capacity(64 * 1024, out),
            checkpoint_path,
            cursor: ck.cursor,
            pending: None,
            ended: false,
            failure: None,
            last_stderr,
            stderr_reader,
            stopped: Arc::new(AtomicBool::new(false)),
            unsettled: false,
        })
    }

    pub fn stopper(&self) -> JournalStopper {
        JournalStopper {
            child: self.child.clone(),
            stopped: self.stopped.clone(),
        }
    }

    /// Why journalctl ended with an error on its own (after [`Journal::ended`]), with the fix.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The last cursor queued.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Whether journalctl has ended (without `-f`: the journal was read to its end).
    pub fn ended(&self) -> bool {
        self.ended && self.pending.is_none()
    }

    /// Reads what journalctl has written (blocking for the first entry when following) and
    /// appends it to `sink`.
    pub fn pump(&mut self, sink: &mut dyn Sink) -> Result<Poll, SourceError> {
        if let Some((events, cursor)) = self.pending.take() {
            if let Err(e) = self.append(sink, &events, &cursor) {
                let full = e.is_full();
                self.pending = Some((events, cursor));
                return if full { Ok(Poll::Paused) } else { Err(e) };
            }
        }
        if self.ended {
            return self.idle();
        }
        let mut events = Vec::new();
        let mut last_cursor = None;
        let mut line = Vec::new();
        while events.len() < BATCH {
            line.clear();
            let n = (&mut self.out)
                .take(MAX_ENTRY_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| SourceError::Journal(format!("reading journalctl output: {e}")))?;
            if n == 0 {
                self.ended = true;
                let status = self.child.lock().ok().and_then(|mut c| c.wait().ok());
                if let Some(st) = status.filter(|s| !s.success()) {
                    if !self.stopped.load(Ordering::SeqCst) {
                        // journalctl has exited: its stderr is at its end too; take the last line.
                        if let Some(reader) = self.stderr_reader.take() {
                            let _ = reader.join();
                        }
                        let said = self.last_stderr.lock().ok().and_then(|l| l.clone());
                        let why = failure_text(&st.to_string(), said.as_deref());
                        tracing::warn!("journalctl ended with an error: {why}");
                        self.failure = Some(why);
                    }
                }
                break;
            }
            if line.last() != Some(&b'\n') && n > MAX_ENTRY_BYTES {
                // Skip the rest of the over-long entry.
                let mut sink_buf = Vec::new();
                let _ = self.out.read_until(b'\n', &mut sink_buf);
                tracing::warn!("skipped a journal entry over {MAX_ENTRY_BYTES} bytes");
                continue;
            }
            match parse_entry(String::from_utf8_lossy(&line).trim_end()) {
                Ok((cursor, ev)) => {
                    events.push(ev);
                    last_cursor = Some(cursor);
                }
                Err(why) => tracing::warn!("skipped a journalctl line: {why}"),
            }
            if self.out.buffer().is_empty() {
                break; // nothing more right now: send what we have rather than wait
            }
        }
        let Some(cursor) = last_cursor else {
            return self.idle();
        };
        match self.append(sink, &events, &cursor) {
            Ok(()) => Ok(Poll::More),
            Err(e) => {
                let full = e.is_full();
                if full {
                    tracing::info!("{e}; journal reading paused, the entries wait in the journal");
                }
                self.pending = Some((events, cursor));
                if full {
                    Ok(Poll::Paused)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Appends entries whose last has `cursor`, the checkpoint (committed cursor, and this batch
    /// pending) written inside the append.
    fn append(
        &mut self,
        sink: &mut dyn Sink,
        events: &[Event],
        cursor: &str,
    ) -> Result<(), SourceError> {
        let mut ck = JournalCheckpoint {
            format: checkpoint::FORMAT,
            cursor: self.cursor.clone(),
            next: None,
        };
        let path = &self.checkpoint_path;
        sink.append(events, &mut |intent| {
            ck.next = Some(Next {
                position: cursor.to_owned(),
                last_seq: intent.last_seq,
                digest: intent.last_digest,
            });
            checkpoint::store(path, &ck)
        })?;
        self.cursor = Some(cursor.to_owned());
        self.unsettled = true;
        Ok(())
    }

    /// Nothing new: rewrite the checkpoint without its pending batch (which is in).
    fn idle(&mut self) -> Result<Poll, SourceError> {
        if self.unsettled {
            checkpoint::store(
                &self.checkpoint_path,
                &JournalCheckpoint {
                    format: checkpoint::FORMAT,
                    cursor: self.cursor.clone(),
                    next: None,
                },
            )?;
            self.unsettled = false;
        }
        Ok(Poll::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_status_journalctls_words_and_the_fix() {
        for (stderr, want, fix) in [
            (
                Some("No journal files were opened due to insufficient permissions."),
                "exited with exit status: 1 (\"No journal files were opened due to insufficient permissions.\")",
                Some("systemd-journal group"),
            ),
            (
                Some("Failed to open files: No such file or directory"),
                "exited with exit status: 1 (\"Failed to open files",
                Some("[sources.journal] files"),
            ),
            (Some("something else"), "(\"something else\")", None),
            (None, "exited with exit status: 1", None),
        ] {
            let t = failure_text("exit status: 1", stderr);
            assert!(t.starts_with(want) || t.contains(want), "{t}");
            match fix {
                Some(f) => assert!(t.contains(f), "{t}"),
                None => assert!(!t.contains(';'), "no fix for an unknown cause: {t}"),
            }
        }
    }

    #[test]
    fn command_lines() {
        let cfg = JournalConfig {
            files: vec!["/t/a.journal".into()],
            units: vec!["ssh.service".into()],
        };
        assert_eq!(
            args(&cfg, Some("s=1;i=2"), true).join(" "),
            "-o json --no-pager --file /t/a.journal --unit ssh.service -f --no-tail --after-cursor=s=1;i=2"
        );
        assert_eq!(
            args(&JournalConfig::default(), None, false).join(" "),
            "-o json --no-pager --no-tail"
        );
    }

    #[test]
    fn entries() {
        let (c, e) = parse_entry(r#"{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"1700000000000000","MESSAGE":"hello","PRIORITY":"6","_PID":"42","_SYSTEMD_UNIT":"x.service","CODE_FILE":"a.c","__MONOTONIC_TIMESTAMP":"5"}"#).unwrap();
        assert_eq!(c, "s=a;i=1");
        assert_eq!(e.kind, "journal");
        assert_eq!(e.fields["message"], "hello");
        assert_eq!(e.fields["priority"], 6);
        assert_eq!(e.fields["pid"], 42);
        assert_eq!(e.fields["realtime_usec"], 1_700_000_000_000_000u64);
        assert_eq!(e.fields["unit"], "x.service");
        assert_eq!(e.fields["fields"]["CODE_FILE"], "a.c");
        assert!(!e.fields["fields"]
            .as_object()
            .unwrap()
            .contains_key("__MONOTONIC_TIMESTAMP"));
        let (_, e) = parse_entry(r#"{"__CURSOR":"c","MESSAGE":[104,105,255]}"#).unwrap();
        assert_eq!(e.fields["message"], "hi\u{fffd}");
        for (bad, why) in [
            ("", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"MESSAGE":"x"}"#, "no __CURSOR"),
            (r#"{"__CURSOR":5}"#, "no __CURSOR"),
        ] {
            let err = parse_entry(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
