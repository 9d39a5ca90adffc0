//! Splitting a file's bytes into lines, chunk by chunk, as a pure state machine.
//!
//! The splitter is fed consecutive chunks of a file with the file offset of each; it emits every
//! complete line (without `\n`, and without a `\r` before it) with the offsets where it starts and
//! ends, and carries a partial last line over to the next chunk. A checkpoint may be placed at the
//! end of any emitted line ([`Splitter::committed`]): re-reading from there re-creates the carry.
//!
//! Over-long lines are **split, not truncated**: once a line reaches `max_line` bytes without a
//! newline, those bytes are emitted as a piece marked `continued` and the line goes on in the next
//! piece. Nothing is dropped and memory stays bounded by `max_line` per file. Bytes that are not
//! UTF-8 are replaced (U+FFFD) when the line becomes an event.
//!
//! In a JSON file ([`Splitter::json`]) each whole line is also classified as it is emitted: is it
//! one JSON object ([`crate::json::object`]; [`Line::object`])? The pieces of an over-long line
//! never are (each is text). A checkpoint inside an over-long line (after a piece: the byte before
//! it is not a newline) resumes with [`Splitter::inside_a_line`], so the rest goes on as text
//! pieces after a restart, as it would have without one.
//!
//! NUL bytes where a line would start are skipped: they are holes (a sparse or preallocated log
//! file, or blocks a crash left unwritten), not lines. NUL bytes inside a line are kept.

/// One line (or one piece of an over-long line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// File offset of the first byte.
    pub start: u64,
    /// File offset just past the line's newline (or past the piece).
    pub end: u64,
    pub bytes: Vec<u8>,
    /// The line goes on in the next piece (it was longer than the cap).
    pub continued: bool,
    /// In a JSON file: the line is one JSON object the service takes ([`crate::json::object`]),
    /// shipped as the event's `data`. Always `false` in a text file.
    pub object: bool,
}

impl Line {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The line splitter of one file.
#[derive(Debug, Clone)]
pub struct Splitter {
    carry: Vec<u8>,
    carry_start: u64,
    max_line: usize,
    /// Classify whole lines as JSON objects or not.
    json: bool,
    /// The carry is the rest of an over-long line (a piece was emitted before it).
    split: bool,
}

impl Splitter {
    /// A splitter whose next byte is at `offset`.
    pub fn new(offset: u64, max_line: usize) -> Splitter {
        Splitter {
            carry: Vec::new(),
            carry_start: offset,
            max_line: max_line.max(1),
            json: false,
            split: false,
        }
    }

    /// With `on`, whole lines are classified as JSON objects or not ([`Line::object`]).
    pub fn json(mut self, on: bool) -> Splitter {
        self.json = on;
        self
    }

    /// With `inside`, the first byte fed goes on a line of which a piece was emitted before (a
    /// restart at a checkpoint after a piece of an over-long line): the rest of that line is a
    /// piece too, never classified as a JSON object.
    pub fn inside_a_line(mut self, inside: bool) -> Splitter {
        self.split = inside;
        self
    }

    /// Whether a line just completed, `bytes`, is a JSON object to ship as one.
    fn object(&self, bytes: &[u8]) -> bool {
        self.json && !self.split && crate::json::object(bytes).is_ok()
    }

    /// The offset up to which every byte belongs to an emitted line: where to resume after a
    /// restart.
    pub fn committed(&self) -> u64 {
        self.carry_start
    }

    /// The offset of the next byte to feed.
    pub fn next_offset(&self) -> u64 {
        self.carry_start + self.carry.len() as u64
    }

    /// Bytes held of a line not yet complete.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Forgets everything and continues at `offset` (after a truncation).
    pub fn reset(&mut self, offset: u64) {
        self.carry = Vec::new();
        self.carry_start = offset;
        self.split = false;
    }

    /// Feeds the bytes that follow [`Splitter::next_offset`]; pushes complete lines to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Line>) {
        let mut offset = self.next_offset();
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.carry.is_empty() {
                // NUL bytes where a line would start are holes (a sparse or preallocated file, a
                // crash before the data was written), not text: skipped.
                let zeros = rest.iter().take_while(|&&b| b == 0).count();
                offset += zeros as u64;
                self.carry_start = offset;
                rest = &rest[zeros..];
                if rest.is_empty() {
                    break;
                }
            }
            // memchr, not a byte loop (perf, 2,000 B lines: the byte loop was a tenth of the sensor).
            match memchr::memchr(b'\n', rest) {
                Some(k) => {
                    self.push_capped(offset, &rest[..k], out);
                    let end = offset + k as u64 + 1;
                    let mut bytes = std::mem::take(&mut self.carry);
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                    let object = self.object(&bytes);
                    self.split = false;
                    out.push(Line {
                        start: self.carry_start,
                        end,
                        bytes,
                        continued: false,
                        object,
                    });
                    self.carry_start = end;
                    offset = end;
                    rest = &rest[k + 1..];
                }
                None => {
                    self.push_capped(offset, rest, out);
                    break;
                }
            }
        }
    }

    /// Appends `seg` (at file offset `at`) to the carry, emitting `max_line` pieces as it fills.
    fn push_capped(&mut self, mut at: u64, mut seg: &[u8], out: &mut Vec<Line>) {
        while self.carry.len() + seg.len() > self.max_line {
            let take = self.max_line - self.carry.len();
            self.carry.extend_from_slice(&seg[..take]);
            at += take as u64;
            out.push(Line {
                start: self.carry_start,
                end: at,
                bytes: std::mem::take(&mut self.carry),
                continued: true,
                object: false,
            });
            self.split = true;
            self.carry_start = at;
            seg = &seg[take..];
        }
        self.carry.extend_from_slice(seg);
    }

    /// The partial last line, as a line of its own (when the file is finished for good: rotated
    /// away and idle).
    pub fn finish(&mut self) -> Option<Line> {
        if self.carry.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.carry);
        let start = self.carry_start;
        self.carry_start += bytes.len() as u64;
        let object = self.object(&bytes);
        self.split = false;
        Some(Line {
            start,
            end: self.carry_start,
            bytes,
            continued: false,
            object,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (start, end, text, continued)
    type Got = (u64, u64, String, bool);

    fn split(chunks: &[&str], max: usize) -> (Vec<Got>, u64, usize) {
        let mut s = Splitter::new(0, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c.as_bytes(), &mut out);
        }
        (
            out.iter()
                .map(|l| (l.start, l.end, l.text(), l.continued))
                .collect(),
            s.committed(),
            s.carried(),
        )
    }

    #[test]
    fn table() {
        type Want = &'static [(u64, u64, &'static str, bool)];
        let cases: &[(&[&str], usize, Want, u64, usize)] = &[
            (
                &["a\nb\n"],
                100,
                &[(0, 2, "a", false), (2, 4, "b", false)],
                4,
                0,
            ),
            // A partial line is carried, not emitted; the checkpoint stays before it.
            (&["a\nbc"], 100, &[(0, 2, "a", false)], 2, 2),
            (
                &["a\nbc", "d\n"],
                100,
                &[(0, 2, "a", false), (2, 6, "bcd", false)],
                6,
                0,
            ),
            (&["ab", "c", "\n"], 100, &[(0, 4, "abc", false)], 4, 0),
            // CRLF loses its CR; an empty line is a line.
            (
                &["x\r\n\n"],
                100,
                &[(0, 3, "x", false), (3, 4, "", false)],
                4,
                0,
            ),
            // Exactly the cap: whole. One more: split into a continued piece and the rest.
            (&["abcd\n"], 4, &[(0, 5, "abcd", false)], 5, 0),
            (
                &["abcde\n"],
                4,
                &[(0, 4, "abcd", true), (4, 6, "e", false)],
                6,
                0,
            ),
            (
                &["abcdefghij"],
                4,
                &[(0, 4, "abcd", true), (4, 8, "efgh", true)],
                8,
                2,
            ),
            (
                &["ab", "cdef\n"],
                4,
                &[(0, 4, "abcd", true), (4, 7, "ef", false)],
                7,
                0,
            ),
            (&[""], 4, &[], 0, 0),
            // Holes: NULs at a line start are skipped, inside a line kept.
            (
                &["\0\0a\n\0", "\0b\0\n"],
                100,
                &[(2, 4, "a", false), (6, 9, "b\0", false)],
                9,
                0,
            ),
            (&["\0\0\0"], 100, &[], 3, 0),
        ];
        for (chunks, max, want, committed, carried) in cases {
            let (got, c, k) = split(chunks, *max);
            let want: Vec<_> = want
                .iter()
                .map(|(a, b, t, c)| (*a, *b, t.to_string(), *c))
                .collect();
            assert_eq!(got, want, "{chunks:?} max {max}");
            assert_eq!((c, k), (*committed, *carried), "{chunks:?} max {max}");
        }
    }

    #[test]
    fn every_chunking_gives_the_same_lines() {
        let text = "one\ntwo\r\n\nthree is long\nfour";
        let (whole, _, _) = split(&[text], 5);
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(split(&[a, b], 5).0, whole, "cut at {cut}");
        }
    }

    /// In a JSON file: whole lines that are objects are marked; pieces of an over-long line
    /// never are, also when the last piece alone would be an object; text files mark nothing.
    #[test]
    fn json_lines_are_classified() {
        let text: &[u8] =
            b"{\"a\":1}\n[1]\nnot json\n{\"b\":\"\xff\"}\nxxxxxxxxxx{\"c\":3}\n {\"d\":4} \r\n{\"e\":5}";
        let run = |json: bool, chunk: usize| {
            let mut s = Splitter::new(0, 10).json(json);
            let mut out = Vec::new();
            for c in text.chunks(chunk) {
                s.feed(c, &mut out);
            }
            out.extend(s.finish());
            out.iter().map(|l| (l.text(), l.object)).collect::<Vec<_>>()
        };
        let want: Vec<(String, bool)> = [
            ("{\"a\":1}", true),
            ("[1]", false),
            ("not json", false),
            ("{\"b\":\"\u{fffd}\"}", false),
            ("xxxxxxxxxx", false),
            ("{\"c\":3}", false),
            // Exactly at the cap (the CR is not counted once gone): whole, an object.
            (" {\"d\":4} ", true),
            // The partial last line of a finished file is a line too.
            ("{\"e\":5}", true),
        ]
        .iter()
        .map(|(t, o)| (t.to_string(), *o))
        .collect();
        for chunk in [1, 3, 100] {
            assert_eq!(run(true, chunk), want, "chunks of {chunk}");
            assert!(run(false, chunk).iter().all(|(_, o)| !o));
        }
    }

    #[test]
    fn finish_and_reset() {
        let mut s = Splitter::new(10, 100);
        let mut out = Vec::new();
        s.feed(b"tail", &mut out);
        assert!(out.is_empty());
        let l = s.finish().unwrap();
        assert_eq!((l.start, l.end, l.text()), (10, 14, "tail".into()));
        assert_eq!(s.committed(), 14);
        assert!(s.finish().is_none());
        s.feed(b"xy", &mut out);
        s.reset(0);
        assert_eq!((s.committed(), s.carried(), s.next_offset()), (0, 0, 0));
    }
}
