//! `format = "json"` files against the real service: a line that is one JSON object arrives as
//! its event's `data` (its fields readable through `events export`), every other line — bad
//! JSON, an array, a scalar, invalid UTF-8, too deep, a lone surrogate, plain text — arrives as
//! text, exactly once, and the sensor counts those (`sources.files[].not_json` in `sensor
//! status --json`).

use crate::support;

use std::io::Write;

use support::*;

/// Line `k` of the test file, and whether it is an object the sensor ships as `data`. Objects
/// carry `"n": k`; the others carry `n=k;` in their text.
fn line(k: u64) -> (Vec<u8>, bool) {
    let nest = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let s = |t: String| t.into_bytes();
    match k % 12 {
        // Objects: plain; escapes and non-ASCII; keys the event itself has (seq, kind, line),
        // which stay inside `data`; surrounding whitespace; the deepest nesting shipped (63).
        0 => (
            s(format!(r#"{{"n":{k},"user":"CONTOSO\\u{k}","ok":true}}"#)),
            true,
        ),
        1 => (
            s(format!(
                r#"{{"msg":"say \"hi\"\t\u00e9 Übergröße 日本 🚀","n":{k}}}"#
            )),
            true,
        ),
        2 => (
            s(format!(
                r#"{{"seq":-1,"kind":"not a kind!","line":7,"n":{k}}}"#
            )),
            true,
        ),
        3 => (s(format!("  {{\"n\": {k} , \"a\" : [ ] }}\t")), true),
        4 => (s(format!(r#"{{"n":{k},"d":{}}}"#, nest(62))), true),
        // Not objects.
        5 => (s(format!(r#"{{"note":"n={k};" broken"#)), false),
        6 => (s(format!(r#"["n={k};"]"#)), false),
        7 => (s(format!(r#""n={k};""#)), false),
        8 => {
            let mut b = format!(r#"{{"note":"n={k};","b":""#).into_bytes();
            b.extend_from_slice(b"\xff\xfe\"}");
            (b, false)
        }
        9 => (s(format!(r#"{{"note":"n={k};","d":{}}}"#, nest(63))), false),
        10 => (s(format!(r#"{{"note":"n={k};","s":"\ud800"}}"#)), false),
        _ => (s(format!("plain text n={k}; not json")), false),
    }
}

#[test]
fn json_lines_arrive_as_objects_and_the_rest_as_text_each_once_and_counted() {
    let (dir, svc, sensor, logs) = support::sensor::with_logs("jsonlines");
    let path = logs.join("app.json");
    let n = 600u64;
    let mut f = std::fs::File::create(&path).unwrap();
    for k in 0..n {
        f.write_all(&line(k).0).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let want_text = (0..n).filter(|&k| !line(k).1).count() as u64;
    sensor.add_config(&format!(
        "[[sources.files]]\npaths = [{:?}]\nformat = \"json\"",
        path.display().to_string()
    ));
    let run = sensor.run_once(120);
    assert!(run.status.success(), "{}\n{}", stderr(&run), svc.log());

    let rows = exported(&dir.path().join("service"), "jsonlines");
    let logs = support::sensor::rows_of_kind(&rows, "log");
    let mut seen = vec![0u32; n as usize];
    for (_, _, v) in &logs {
        let e = &v["event"];
        assert_eq!(e["path"], path.display().to_string(), "{v}");
        let k = match (&e["data"], &e["line"]) {
            (serde_json::Value::Object(data), serde_json::Value::Null) => {
                let k = data["n"].as_u64().unwrap_or_else(|| panic!("no n: {v}"));
                assert!(
                    line(k).1,
                    "line {k} is not an object but arrived as one: {v}"
                );
                match k % 12 {
                    0 => assert_eq!(data["user"], format!("CONTOSO\\u{k}"), "{v}"),
                    1 => assert_eq!(data["msg"], "say \"hi\"\té Übergröße 日本 🚀", "{v}"),
                    2 => {
                        // The line's own seq and kind stay in data; the event's are the sensor's.
                        assert_eq!(
                            (&data["seq"], &data["kind"]),
                            (&(-1).into(), &"not a kind!".into()),
                            "{v}"
                        );
                        assert_eq!(e["kind"], "log", "{v}");
                    }
                    _ => {}
                }
                k
            }
            (serde_json::Value::Null, serde_json::Value::String(text)) => {
                let k: u64 = text
                    .split_once("n=")
                    .and_then(|(_, r)| r.split_once(';'))
                    .and_then(|(k, _)| k.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected text line {v}"));
                assert!(!line(k).1, "line {k} is an object but arrived as text: {v}");
                assert_eq!(
                    text.as_bytes(),
                    String::from_utf8_lossy(&line(k).0).as_bytes(),
                    "line {k} as text"
                );
                k
            }
            _ => panic!("neither data nor line: {v}"),
        };
        seen[k as usize] += 1;
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 1)
        .map(|(k, c)| (k, *c))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "lines not arrived exactly once (line, times): {wrong:?}"
    );
    assert_eq!(logs.len() as u64, n);

    // The count of lines shipped as text, in `sensor status --json`.
    let status = sensor.status();
    let files = status["sources"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{status}");
    assert_eq!(files[0]["not_json"], want_text, "{status}");
    assert_eq!(files[0]["behind"], 0, "{status}");
}
