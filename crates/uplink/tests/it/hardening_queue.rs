//! The sensor's queue against a damaged disk, a full disk, bad input and SIGTERM (issue 15,
//! items 2, 8, 10 and 11), with the real binary and the real service: every event is counted at
//! the service.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::sensor::{assert_each_once, Sensor};
use support::*;
use uplink_queue::record::{self, Decoded, HEADER_LEN};

/// `{"kind":"t","n":N}` for each N, padded to about `pad` more bytes.
fn events(range: std::ops::Range<u64>, pad: usize) -> String {
    let fill = "x".repeat(pad);
    range
        .map(|n| format!("{{\"kind\":\"t\",\"n\":{n},\"pad\":\"{fill}\"}}\n"))
        .collect()
}

/// The `n` of every stored event of kind `t`, after checking no (sensor, seq) is stored twice.
fn stored_ns(data: &Path, ws: &str) -> Vec<u64> {
    support::sensor::rows_of_kind(&exported(data, ws), "t")
        .iter()
        .map(|(_, _, v)| v["event"]["n"].as_u64().expect("n"))
        .collect()
}

fn segment(sensor: &Sensor, first_seq: u64) -> PathBuf {
    sensor
        .dir
        .join("queue")
        .join(format!("{first_seq:020}.seg"))
}

/// The seqs of the records of a segment file that overlap bytes `at..at + len`.
fn records_over(bytes: &[u8], at: usize, len: usize) -> Vec<u64> {
    let format = record::decode_header(bytes).unwrap().format;
    let mut pos = HEADER_LEN;
    let mut out = Vec::new();
    while let Decoded::Complete { seq, len: n, .. } = record::decode_record(&bytes[pos..], format) {
        if pos < at + len && at < pos + n {
            out.push(seq);
        }
        pos += n;
    }
    out
}

/// Flips `len` bytes at `at` of `path`; returns the seqs of the records they hit.
fn flip(path: &Path, at: usize, len: usize) -> Vec<u64> {
    let hit = records_over(&std::fs::read(path).unwrap(), at, len);
    flip_unchecked(path, at, len);
    hit
}

fn flip_unchecked(path: &Path, at: usize, len: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes[at..at + len] {
        *b ^= 0xa5;
    }
    std::fs::write(path, bytes).unwrap();
}

fn edit_queue(sensor: &Sensor, extra: &str) {
    sensor.edit_config(
        "max_bytes = 536870912",
        &format!("max_bytes = 536870912\n{extra}"),
    );
}

#[test]
fn damage_in_the_first_of_two_segments_loses_only_the_damaged_records() {
    let (dir, _svc, sensor, _logs) = support::sensor::with_logs("qdamage");
    let data = dir.path().join("service");
    // Two segments: sends go in appends of 2,000 events; a segment closes at 64 KiB.
    edit_queue(&sensor, "segment_bytes = 65536");
    ok(sensor.send(&events(0..4000, 20)), "sensor send");
    let first = segment(&sensor, 0);
    assert!(segment(&sensor, 2000).exists(), "expected a second segment");
    let len = std::fs::metadata(&first).unwrap().len() as usize;
    // Four bytes in the middle of the first segment, as a bad sector would.
    let lost = flip(&first, len / 2, 4);
    assert!(!lost.is_empty() && lost.len() <= 2, "{lost:?}");

    let run = sensor.run_once(60);
    let text = format!("{}{}", stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("QUEUE_DAMAGED"), "{text}");
    let (a, b) = (lost[0], *lost.last().unwrap());
    let status = sensor.status();
    assert_eq!(status["last_error"]["code"], "QUEUE_DAMAGED", "{status}");
    assert_eq!(
        status["queue_damage"]["lost_records"],
        lost.len() as u64,
        "{status}"
    );
    assert_eq!(
        status["queue_damage"]["lost_seqs"],
        serde_json::json!([[a, b]]),
        "{status}"
    );
    assert_eq!(status["queue"]["events"], 0, "{status}");

    // Every event but the damaged ones is at the service, once.
    let mut ns = stored_ns(&data, "qdamage");
    ns.extend(&lost);
    assert_each_once(ns, 4000, "events stored plus the lost ones");

    // The next run has nothing new to report, but its heartbeat carries the code.
    let again = sensor.run_once(60);
    ok(again, "second run --once");
    let rows = exported(&data, "qdamage");
    let beats: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|(_, _, v)| v["kind"] == "heartbeat")
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(beats.len(), 2, "one heartbeat per run --once");
    assert!(
        beats
            .iter()
            .any(|v| v["event"]["last_error_code"] == "QUEUE_DAMAGED"),
        "{beats:?}"
    );
}

#[test]
fn sensor_status_never_changes_a_damaged_queue_and_no_seq_is_reused() {
    let (dir, _svc, sensor, _logs) = support::sensor::with_logs("qreader");
    let data = dir.path().join("service");
    ok(sensor.send(&events(0..3000, 20)), "sensor send");
    let seg = segment(&sensor, 0);
    let len = std::fs::metadata(&seg).unwrap().len() as usize;
    // And the very end: the last record no longer decodes, with nothing after it.
    let lost_end = records_over(&std::fs::read(&seg).unwrap(), len - 3, 2);
    assert_eq!(lost_end, vec![2999]);
    let lost_mid = flip(&seg, len / 3, 4);
    flip_unchecked(&seg, len - 3, 2);
    let before = std::fs::read(&seg).unwrap();
    let queue_files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let files_before = queue_files(&sensor.dir.join("queue"));
    for _ in 0..2 {
        let status = sensor.status();
        assert!(
            status["queue"]["events"].as_u64().unwrap() >= 2990,
            "{status}"
        );
    }
    assert!(
        std::fs::read(&seg).unwrap() == before,
        "sensor status changed the segment"
    );
    assert!(
        queue_files(&sensor.dir.join("queue")) == files_before,
        "sensor status changed the queue directory"
    );

    // A writer repairs the end (the damaged last record goes) without touching intact records,
    // and the new events get seqs above every one the damaged bytes could have held.
    ok(
        with_stdin(
            uplink_cmd(&["sensor", "send", "--config-dir", sensor.cfg()]),
            &(3000..3010)
                .map(|n| format!("{{\"kind\":\"t\",\"n\":{n},\"pad\":\"after\"}}\n"))
                .collect::<String>(),
        ),
        "sensor send after the damage",
    );
    let run = sensor.run_once(60);
    let text = format!("{}{}", stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("QUEUE_DAMAGED"), "{text}");
    let rows = support::sensor::rows_of_kind(&exported(&data, "qreader"), "t");
    let mut ns: Vec<u64> = rows
        .iter()
        .map(|(_, _, v)| v["event"]["n"].as_u64().unwrap())
        .collect();
    // The later events' seqs are above 2999 (never reused), each stored once.
    for (_, seq, v) in &rows {
        let n = v["event"]["n"].as_u64().unwrap();
        if n >= 3000 {
            assert!(*seq > 2999, "event {n} got seq {seq}: reused");
        } else {
            assert_eq!(*seq, n, "{v}");
        }
    }
    ns.extend(&lost_mid);
    ns.extend(&lost_end);
    assert_each_once(ns, 3010, "events stored plus the lost ones");
    let status = sensor.status();
    assert_eq!(status["last_error"]["code"], "QUEUE_DAMAGED", "{status}");
    let damage = &status["queue_damage"];
    assert_eq!(
        damage["lost_records"].as_u64().unwrap(),
        (lost_mid.len() + 1) as u64,
        "{status}"
    );
}

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().expect("run id");
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            assert!(
                std::env::var("CI").is_err(),
                "this test mounts a tmpfs and must run as root under CI"
            );
            eprintln!("SKIPPED (not root): mounting a tmpfs needs root; run the suite as root (./test.sh does)");
            return None;
        }
        support::require("mount");
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs failed");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "--format=%a %S"])
            .arg(self.path())
            .output()
            .expect("run stat");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_drains_completely_and_gives_its_space_back() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "qfull", svc.port);
    let sensor = Sensor::installed(&fs.path().join("sensor"), &ws, &["--quiet"]);
    // Smaller segments: delivered ones are freed as the drain goes.
    edit_queue(&sensor, "segment_bytes = 262144");
    let mut queued = 0u64;
    let mut last = None;
    for round in 0..100u64 {
        let from = round * 5000;
        let out = sensor.send(&events(from..from + 5000, 150));
        match out.status.code() {
            Some(0) => queued += 5000,
            Some(3) => {
                let err = stderr(&out);
                let n: u64 = err
                    .split(" events were queued")
                    .next()
                    .and_then(|s| s.rsplit(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("no count in: {err}"));
                assert_eq!(queued, from, "sends are in order");
                queued += n;
                last = Some(err);
                break;
            }
            _ => panic!("sensor send: {}{}", stdout(&out), stderr(&out)),
        }
    }
    let err = last.expect("the disk never filled");
    assert!(err.contains("DISK_FULL"), "{err}");
    let free_full = fs.free();
    let status = sensor.status();
    assert_eq!(status["last_error"]["code"], "DISK_FULL", "{status}");

    let run = sensor.run_once(120);
    let text = format!("{}{}", stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert!(text.contains("the queue is empty"), "{text}");
    assert_each_once(stored_ns(&data, "qfull"), queued, "events stored");

    // The space is back: the queue holds no delivered record.
    let queue_bytes: u64 = std::fs::read_dir(sensor.dir.join("queue"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(queue_bytes < 4096, "queue still holds {queue_bytes} bytes");
    assert!(
        fs.free() > free_full + 3 * (1 << 20),
        "free before {free_full}, after {}",
        fs.free()
    );
    let status = sensor.status();
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(status["queue"]["events"], 0, "{status}");
}

/// `sensor send` with `input` (bytes, not necessarily UTF-8).
fn send_bytes(sensor: &Sensor, input: Vec<u8>) -> std::process::Output {
    let mut child = uplink_cmd(&["sensor", "send", "--config-dir", sensor.cfg()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn send_skips_a_bad_line_queues_the_rest_and_a_retry_of_that_line_never_duplicates() {
    let (dir, _svc, sensor, _logs) = support::sensor::with_logs("qinput");
    let data = dir.path().join("service");
    let line = |n: u64| format!("{{\"kind\":\"t\",\"n\":{n}}}\n");
    let mut input: Vec<u8> = (0..100_000).flat_map(|n| line(n).into_bytes()).collect();
    // Line 100,001: invalid UTF-8 (inside a JSON string).
    input.extend_from_slice(b"{\"kind\":\"t\",\"n\":\"\xff\xfe\"}\n");
    input.extend((100_000..100_005).flat_map(|n| line(n).into_bytes()));
    // Line 100,007: valid JSON, over 1 MiB.
    input.extend_from_slice(
        format!("{{\"kind\":\"t\",\"big\":\"{}\"}}\n", "y".repeat(1 << 20)).as_bytes(),
    );
    input.extend((100_005..100_010).flat_map(|n| line(n).into_bytes()));
    let out = send_bytes(&sensor, input);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 100001: not UTF-8"), "{err}");
    assert!(err.contains("line 100007: the line is 1048"), "{err}");
    assert!(
        err.contains("100010 events queued, 2 lines rejected"),
        "{err}"
    );
    assert_eq!(sensor.status()["queue"]["events"], 100_010);

    let run = sensor.run_once(300);
    ok(run, "run --once");
    assert_each_once(stored_ns(&data, "qinput"), 100_010, "events stored");

    // The retry is the two lines named, fixed: nothing stored twice.
    ok(
        sensor.send(&(100_010..100_012).map(line).collect::<String>()),
        "send the fixed lines",
    );
    ok(sensor.run_once(60), "run --once after the retry");
    assert_each_once(stored_ns(&data, "qinput"), 100_012, "events stored");
    let help = stdout(&uplink(&["sensor", "send", "--help"]));
    assert!(
        help.contains("is skipped and reported with its line number"),
        "{help}"
    );
}

#[test]
fn sigterm_during_run_once_says_how_many_events_remain() {
    let (_dir, svc, sensor, _logs) = support::sensor::with_logs("qterm");
    ok(sensor.send(&events(0..500, 10)), "sensor send");
    // The service goes away: the run keeps retrying, with every event still queued.
    drop(svc);
    let mut child = uplink_cmd(&[
        "sensor",
        "run",
        "--once",
        "--timeout",
        "120",
        "--config-dir",
        sensor.cfg(),
        "--log-level",
        "info",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start run --once");
    let stdout_pipe = child.stdout.take().unwrap();
    let out_thread = std::thread::spawn(move || read_all(stdout_pipe));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        log.push_str(&l);
        log.push('\n');
        if l.contains("upload failed; will retry") {
            break;
        }
    }
    assert!(
        log.contains("upload failed"),
        "run --once ended first:\n{log}"
    );
    signal(child.id(), "TERM");
    for l in lines {
        log.push_str(&l.unwrap());
        log.push('\n');
    }
    let status = wait_exit(child, Duration::from_secs(20)).expect("stopped within 20 s");
    let out = out_thread.join().unwrap();
    let text = format!("{out}{log}");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(!text.contains("the queue is empty"), "{text}");
    let remaining: u64 = text
        .split(" events remain queued")
        .next()
        .and_then(|s| s.rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count of events remaining in:\n{text}"));
    // The 500 events, plus the run's own heartbeat and inventory if they were queued by then.
    assert!((500..=502).contains(&remaining), "{text}");
    assert_eq!(sensor.status()["queue"]["events"], remaining, "{text}");
}

/// A running sensor tailing a file while the service is away fills its small disk: status says
/// `disk_full` (DISK_FULL) while the sources wait, the file keeps what they could not queue, and
/// once the service is back every line arrives once and the condition clears.
#[test]
fn a_running_sensor_reports_a_full_disk_and_recovers_when_the_service_returns() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let mut svc = ServiceProc::start(&data);
    let port = svc.port;
    let ws = create_workspace(&data, "runfull", port);
    let sensor = Sensor::installed(&fs.path().join("sensor"), &ws, &["--quiet"]);
    edit_queue(&sensor, "segment_bytes = 262144");
    // The log lives off the small disk: ~9 MB of lines, more than its 4 MiB.
    let log = dir.path().join("app.log");
    const LINES: u64 = 60_000;
    let text: String = (0..LINES)
        .map(|n| format!("line n={n} {}\n", "y".repeat(140)))
        .collect();
    std::fs::write(&log, text).unwrap();
    sensor.add_config(&format!(
        "[[sources.files]]\npaths = [{:?}]\n",
        log.display().to_string()
    ));
    // The service goes away before the sensor starts: nothing can drain.
    signal(svc.pid(), "KILL");
    let _ = wait_exit(svc.take(), Duration::from_secs(10));
    let run_log = dir.path().join("run.log");
    let run = sensor.spawn_run(&run_log);
    poll_until(
        "sensor status to report the full disk",
        60,
        || sensor.status()["disk_full"]["code"] == "DISK_FULL",
        || format!("{}\n{}", sensor.status(), sensor.context(&run_log)),
    );
    let text = ok(
        uplink_cmd(&["sensor", "status", "--config-dir", sensor.cfg()])
            .output()
            .unwrap(),
        "sensor status",
    );
    assert!(text.contains("disk full") && text.contains("fix"), "{text}");

    // Back on its port: everything drains, the sources read on, the condition clears.
    let _svc = ServiceProc::start_at(&data, &format!("127.0.0.1:{port}"));
    let lines = || support::sensor::log_line_numbers(&exported(&data, "runfull"));
    poll_until(
        "every line at the service",
        120,
        || lines().len() as u64 >= LINES,
        || format!("{}\n{}", sensor.status(), sensor.context(&run_log)),
    );
    poll_until(
        "the full disk to clear in status",
        20,
        || sensor.status()["disk_full"].is_null(),
        || format!("{}\n{}", sensor.status(), sensor.context(&run_log)),
    );
    signal(run.id(), "TERM");
    assert!(wait_exit(run, Duration::from_secs(20)).is_some());
    assert_each_once(lines(), LINES, "lines stored");
}
