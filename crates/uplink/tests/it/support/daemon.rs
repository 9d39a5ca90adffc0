//! A long-running test peer (dnsmasq, mitmdump, NetworkManager, …): its stdout and stderr are
//! collected, [`Daemon::expect`] waits for a line (woken by each new line, no polling), and the
//! process is killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct LogState {
    text: String,
    open_streams: u32,
}

/// A long-running process whose stdout and stderr are collected, killed (SIGKILL) on drop.
/// [`Daemon::wait_for`] waits for a line, woken by each new line (no polling).
pub struct Daemon {
    what: String,
    child: Option<Child>,
    log: Arc<(Mutex<LogState>, Condvar)>,
}

impl Daemon {
    pub fn spawn(what: &str, mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let log = Arc::new((
            Mutex::new(LogState {
                text: String::new(),
                open_streams: 2,
            }),
            Condvar::new(),
        ));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.0.lock().unwrap();
                    l.text.push_str(&line);
                    l.text.push('\n');
                    log.1.notify_all();
                }
                log.0.lock().unwrap().open_streams -= 1;
                log.1.notify_all();
            });
        }
        Daemon {
            what: what.into(),
            child: Some(child),
            log,
        }
    }

    /// Waits until the output contains `needle`; false if the process closed its output first
    /// or `limit` passed.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut l = self.log.0.lock().unwrap();
        loop {
            if l.text.contains(needle) {
                return true;
            }
            let now = Instant::now();
            if l.open_streams == 0 || now >= deadline {
                return false;
            }
            l = self.log.1.wait_timeout(l, deadline - now).unwrap().0;
        }
    }

    /// [`Daemon::wait_for`], panicking with the output when the line never comes.
    #[track_caller]
    pub fn expect(&self, needle: &str, limit: Duration) {
        assert!(
            self.wait_for(needle, limit),
            "{} did not print {needle:?} within {}s; its output:\n{}",
            self.what,
            limit.as_secs(),
            self.log()
        );
    }

    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().text.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("still running").id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
