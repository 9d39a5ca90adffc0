//! The two renderings of what the sensor shows (`sensor status`, `sensor proxy show`): JSON with
//! every object's keys sorted — the shape scripts were given — and text built line by line.

use serde::Serialize;

/// Pretty JSON, every object's keys sorted: through `serde_json::Value`, whose map keeps keys
/// sorted, whatever the order of a struct's fields.
pub(crate) fn sorted_json(value: &impl Serialize) -> String {
    let value = serde_json::to_value(value).expect("what the sensor shows serialises");
    serde_json::to_string_pretty(&value).expect("a JSON value serialises")
}

/// Text built one line at a time.
#[derive(Default)]
pub(crate) struct Lines(String);

impl Lines {
    pub(crate) fn line(&mut self, s: impl AsRef<str>) {
        self.0.push_str(s.as_ref());
        self.0.push('\n');
    }

    pub(crate) fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_at_every_level() {
        #[derive(Serialize)]
        struct Inner {
            z: u8,
            a: u8,
        }
        #[derive(Serialize)]
        struct Outer {
            y: Inner,
            b: Option<u8>,
        }
        assert_eq!(
            sorted_json(&Outer {
                y: Inner { z: 1, a: 2 },
                b: None
            }),
            "{\n  \"b\": null,\n  \"y\": {\n    \"a\": 2,\n    \"z\": 1\n  }\n}"
        );
        let mut l = Lines::default();
        l.line("a");
        l.line(String::from("b"));
        assert_eq!(l.finish(), "a\nb\n");
    }
}
