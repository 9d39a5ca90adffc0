//! A batch of new events in one buffer (issue #28): the decoded request body as received, with
//! each event's seq and where its kind and body lie in it. The service builds one per request
//! from the parsed lines instead of two `String`s per event ([`crate::NewEvent`]); the SQLite
//! writer binds straight from it. [`crate::Store::ingest_batch`] takes it; a backend without
//! its own implementation gets the events as [`crate::NewEvent`]s ([`EventBatch::into_events`]).
//!
//! A batch that came compressed keeps its body as sent ([`EventBatch::keep_zstd`]): the SQLite
//! store writes those bytes once per batch and each event's row points into them, instead of
//! every event's text (docs/storage.md, "Batches stored as sent"). For such a store the service
//! does not even keep the decoded text ([`EventBatch::sent`]): it checks each piece as it
//! decodes it and keeps where each event lies; a store that needs the texts after all (a retried
//! batch, or a store that keeps every event's text) decodes them again ([`EventBatch::with_text`]).

use std::ops::Range;

use crate::NewEvent;

/// New events whose kinds and bodies are ranges of one text.
///
/// Strings appended ([`EventBatch::append`]: a kind not in the body as sent) go to a second,
/// small buffer, addressed as if it followed the text: the text (a whole request body, sized
/// exactly) is never grown, which would copy it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventBatch {
    /// The decoded body, or nothing for a batch made by [`EventBatch::sent`].
    text: String,
    /// The decoded body's length, whether `text` holds it or not.
    len: usize,
    extra: String,
    events: Vec<Span>,
    /// The request body as sent, zstd, whose decoding is exactly `text`.
    zstd: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    seq: u64,
    kind: Range<usize>,
    body: Range<usize>,
}

/// One event of an [`EventBatch`], borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchEvent<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub body: &'a str,
}

impl EventBatch {
    /// A batch over `text` with no event yet, room for `events`.
    pub fn new(text: String, events: usize) -> EventBatch {
        EventBatch {
            len: text.len(),
            text,
            extra: String::new(),
            events: Vec::with_capacity(events),
            zstd: None,
        }
    }

    /// A batch of a zstd body as sent (given by [`EventBatch::keep_zstd`] next), whose
    /// decoding (`len` bytes, checked by the caller: UTF-8, every event where
    /// [`EventBatch::push`] says) is not kept. Its bodies are read only after
    /// [`EventBatch::with_text`]; until then they are empty.
    pub fn sent(len: usize, events: usize) -> EventBatch {
        EventBatch {
            text: String::new(),
            len,
            extra: String::new(),
            events: Vec::with_capacity(events),
            zstd: None,
        }
    }

    /// Whether the batch holds its decoded text (not one made by [`EventBatch::sent`] and
    /// not decoded since).
    pub fn has_text(&self) -> bool {
        self.text.len() == self.len
    }

    /// The batch with its text: itself if it has it, else with its zstd body decoded again
    /// (a store that needs its events' texts). An error, naming what does not match, when the
    /// body does not decode to what it was checked to be when it came.
    pub fn with_text(&self) -> Result<std::borrow::Cow<'_, EventBatch>, String> {
        if self.has_text() {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let Some(zstd) = self.zstd.as_deref() else {
            return Err("the batch as sent has no body to decode".into());
        };
        let text = decode_zstd_exact(zstd, self.len)
            .and_then(|d| String::from_utf8(d).map_err(|e| format!("it is not UTF-8 ({e})")))
            .map_err(|e| format!("the batch as sent could not be decoded again: {e}"))?;
        let batch = EventBatch {
            text,
            len: self.len,
            extra: self.extra.clone(),
            events: self.events.clone(),
            zstd: None,
        };
        match batch.events.iter().all(|s| batch.piece(&s.body).is_some()) {
            true => Ok(std::borrow::Cow::Owned(batch)),
            false => Err("the batch as sent could not be decoded again: an event does not lie on its characters".into()),
        }
    }

    /// Keeps `body`, the zstd request body the text was decoded from (every byte of it: the
    /// decoding of `body` must be exactly the text, as [`decode_zstd_exact`] gives it back).
    pub fn keep_zstd(&mut self, body: Vec<u8>) {
        self.zstd = Some(body);
    }

    /// The zstd body the text was decoded from, if the batch came compressed.
    pub fn zstd(&self) -> Option<&[u8]> {
        self.zstd.as_deref()
    }

    /// The length of the text (not of what was appended after it).
    pub fn text_len(&self) -> usize {
        self.len
    }

    /// Where each event's body lies in the text, in the order added; `None` for a body that
    /// was appended after it.
    pub fn body_ranges(&self) -> impl Iterator<Item = Option<Range<usize>>> + '_ {
        let n = self.len;
        self.events
            .iter()
            .map(move |s| (s.body.end <= n).then(|| s.body.clone()))
    }

    /// Adds an event whose kind and body are the given ranges of the text (or of what was
    /// appended). `false` (nothing added) when a range is not such a piece on character
    /// boundaries (for a batch without its text, a body only within it: the caller checked
    /// its characters).
    pub fn push(&mut self, seq: u64, kind: Range<usize>, body: Range<usize>) -> bool {
        let body_ok = match self.has_text() {
            true => self.piece(&body).is_some(),
            false => body.start <= body.end && body.end <= self.len,
        };
        if self.piece(&kind).is_none() || !body_ok {
            return false;
        }
        self.events.push(Span { seq, kind, body });
        true
    }

    /// Appends `s` after the text (and what was appended before) and returns its range: for a
    /// kind (the service appends each once per run, so the writer reads it from here, in cache),
    /// or a string of a batch made of separate events.
    pub fn append(&mut self, s: &str) -> Range<usize> {
        let start = self.len + self.extra.len();
        self.extra.push_str(s);
        start..start + s.len()
    }

    /// The string at `range`: within the text, or within what was appended after it (a range
    /// across both is none).
    fn piece(&self, range: &Range<usize>) -> Option<&str> {
        let n = self.len;
        if range.end <= n {
            // Nothing for a batch without its text.
            self.text.get(range.clone())
        } else if range.start >= n {
            self.extra.get(range.start - n..range.end - n)
        } else {
            None
        }
    }

    /// Where `piece` lies in the text, if it is a slice of it (compared by address).
    pub fn locate(&self, piece: &str) -> Option<Range<usize>> {
        let base = self.text.as_ptr() as usize;
        let start = (piece.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(piece.len())?;
        (end <= self.text.len() && self.text.is_char_boundary(start)).then_some(start..end)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events, in the order added.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = BatchEvent<'_>> + ExactSizeIterator {
        self.events.iter().map(|s| BatchEvent {
            seq: s.seq,
            // Checked in `push`; the text never changes, and what was appended only grows.
            kind: self.piece(&s.kind).unwrap_or_default(),
            body: self.piece(&s.body).unwrap_or_default(),
        })
    }

    /// The events' seqs and kinds, in the order added, without their bodies. A writer that
    /// stores the batch as sent needs no body: this does not read the text where the bodies
    /// lie (a 4 MiB text another thread wrote is not in this one's cache).
    pub fn heads(&self) -> impl ExactSizeIterator<Item = (u64, &str)> {
        self.events
            .iter()
            .map(|s| (s.seq, self.piece(&s.kind).unwrap_or_default()))
    }

    /// The body of the `i`th event (empty past the last, or for a batch without its text).
    pub fn body(&self, i: usize) -> &str {
        self.events
            .get(i)
            .and_then(|s| self.piece(&s.body))
            .unwrap_or_default()
    }

    /// The events as [`NewEvent`]s, each with its own strings (empty bodies for a batch
    /// without its text: see [`EventBatch::with_text`]).
    pub fn into_events(self) -> Vec<NewEvent> {
        self.iter()
            .map(|e| NewEvent {
                seq: e.seq,
                kind: e.kind.to_owned(),
                body: e.body.to_owned(),
            })
            .collect()
    }

    /// A batch of `events`, their strings copied into one text.
    pub fn from_events(events: &[NewEvent]) -> EventBatch {
        let size = events.iter().map(|e| e.kind.len() + e.body.len()).sum();
        let mut batch = EventBatch::new(String::new(), events.len());
        batch.extra.reserve_exact(size);
        for e in events {
            let kind = batch.append(&e.kind);
            let body = batch.append(&e.body);
            batch.events.push(Span {
                seq: e.seq,
                kind,
                body,
            });
        }
        batch
    }
}

/// Decodes `body`, whole zstd frames of a body kept by [`EventBatch::keep_zstd`], that make
/// `len` bytes of the batch's text: an error that says what does not match if they do not (a
/// damaged store).
pub fn decode_zstd_exact(body: &[u8], len: usize) -> Result<Vec<u8>, String> {
    use uplink_protocol::body::{decode, BodyError, Encoding};
    match decode(Encoding::Zstd, body, len) {
        Ok(d) if d.len() == len => Ok(d.into_owned()),
        Ok(d) => Err(format!(
            "it decodes to {} bytes, not the {len} stored with it",
            d.len()
        )),
        Err(BodyError::TooLargeDecoded { .. }) => Err(format!(
            "it decodes to more than the {len} bytes stored with it"
        )),
        Err(e) => Err(format!("it does not decode ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, kind: &str, body: &str) -> NewEvent {
        NewEvent {
            seq,
            kind: kind.into(),
            body: body.into(),
        }
    }

    #[test]
    fn events_round_trip_through_one_text() {
        let events = vec![
            ev(3, "a", "{\"x\":1}"),
            ev(1, "", "{}"),
            ev(9, "é", "{\"é\":2}"),
        ];
        let batch = EventBatch::from_events(&events);
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.iter().next_back().unwrap().kind, "é");
        assert_eq!(batch.into_events(), events);
    }

    #[test]
    fn a_kept_body_decodes_back_to_the_text_or_says_why_not() {
        let text = "{\"seq\":1}\n{\"seq\":2,\"msg\":\"é\"}\n";
        let zstd = zstd::encode_all(text.as_bytes(), 1).unwrap();
        let mut batch = EventBatch::new(text.to_owned(), 2);
        assert!(batch.push(1, 0..0, 0..9));
        let default = batch.append("log");
        assert!(batch.push(2, default.clone(), 10..28));
        assert!(batch.push(3, 0..0, default));
        assert_eq!(batch.zstd(), None);
        batch.keep_zstd(zstd.clone());
        assert_eq!(batch.zstd(), Some(&zstd[..]));
        assert_eq!(batch.text_len(), text.len());
        // A body appended after the text has no range in it.
        let ranges: Vec<_> = batch.body_ranges().collect();
        assert_eq!(ranges, [Some(0..9), Some(10..28), None]);
        assert_eq!(
            decode_zstd_exact(&zstd, text.len()).as_deref(),
            Ok(text.as_bytes())
        );
        let cases: [(&[u8], usize, &str); 4] = [
            (&zstd, text.len() + 1, "not the"),
            (&zstd, text.len() - 1, "more than the"),
            (&zstd[..zstd.len() - 3], text.len(), "does not decode"),
            (b"not zstd at all", 15, "does not decode"),
        ];
        for (body, len, says) in cases {
            let e = decode_zstd_exact(body, len).unwrap_err();
            assert!(e.contains(says), "{len}: {e}");
        }
    }

    /// A batch as sent holds no text: its events are ranges within the length it was given,
    /// its bodies empty until its body is decoded again, which must give back a text on
    /// whose characters every event lies.
    #[test]
    fn a_batch_as_sent_gets_its_text_by_decoding_its_body_again() {
        let text = "{\"seq\":1}\n{\"seq\":2,\"msg\":\"é\"}\n";
        let zstd = zstd::bulk::compress(text.as_bytes(), 1).unwrap();
        let sent = |lines: &[std::ops::Range<usize>], body: Option<&[u8]>| {
            let mut batch = EventBatch::sent(text.len(), 2);
            let kind = batch.append("log");
            assert_eq!(kind, text.len()..text.len() + 3);
            for (seq, line) in lines.iter().enumerate() {
                assert!(batch.push(seq as u64 + 1, kind.clone(), line.clone()));
            }
            if let Some(body) = body {
                batch.keep_zstd(body.to_vec());
            }
            batch
        };
        let batch = sent(&[0..9, 10..30], Some(&zstd));
        assert!(!batch.has_text());
        // Past the text's length, or across it and what was appended: refused.
        let mut other = sent(&[], None);
        assert!(!other.push(3, text.len()..text.len() + 3, 10..text.len() + 1));
        assert!(!other.push(3, 0..1, 0..9));
        assert_eq!((batch.body(0), batch.text_len()), ("", text.len()));
        let whole = batch.with_text().unwrap();
        assert!(whole.has_text());
        let got: Vec<_> = whole.iter().map(|e| (e.seq, e.kind, e.body)).collect();
        assert_eq!(
            got,
            [
                (1, "log", "{\"seq\":1}"),
                (2, "log", "{\"seq\":2,\"msg\":\"é\"}")
            ]
        );
        // (lines, body, the error says)
        let cut = &zstd[..zstd.len() - 2];
        type Case<'a> = (&'a [std::ops::Range<usize>], Option<&'a [u8]>, &'a str);
        let cases: [Case; 3] = [
            (&[0..9, 10..30], None, "has no body"),
            (&[0..9, 10..30], Some(cut), "does not decode"),
            // Not on a character: in the middle of "é".
            (
                &[0..9, 10..27],
                Some(&zstd),
                "does not lie on its characters",
            ),
        ];
        for (lines, body, says) in cases {
            let e = sent(lines, body).with_text().unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn pieces_are_located_by_address_and_bad_ranges_refused() {
        let text = String::from("{\"seq\":1,\"kind\":\"ab\"}\n{\"seq\":2}");
        let mut batch = EventBatch::new(text.clone(), 2);
        let (line, kind) = {
            let t = &batch.text;
            (batch.locate(&t[0..21]), batch.locate(&t[17..19]))
        };
        assert_eq!((line.clone(), kind.clone()), (Some(0..21), Some(17..19)));
        // A string equal to a piece but elsewhere is not in the text.
        assert_eq!(batch.locate(&text[17..19]), None);
        assert_eq!(batch.locate("ab"), None);
        assert!(batch.push(1, kind.unwrap(), line.unwrap()));
        // Appending leaves the text where and as large as it was (growing it would copy a
        // whole request body).
        let (at, capacity) = (batch.text.as_ptr(), batch.text.capacity());
        let default = batch.append("log");
        assert_eq!(default, 31..34);
        assert_eq!((batch.text.as_ptr(), batch.text.capacity()), (at, capacity));
        assert!(batch.push(2, default, 22..31));
        assert!(!batch.push(3, 0..99, 0..1));
        assert!(!batch.push(3, 0..1, 40..41));
        // A range across the text and what was appended is no piece of either.
        assert!(!batch.push(3, 30..32, 0..1));
        assert!(!batch.push(3, 0..1, 29..33));
        let got: Vec<_> = batch.iter().map(|e| (e.seq, e.kind, e.body)).collect();
        assert_eq!(
            got,
            [
                (1, "ab", "{\"seq\":1,\"kind\":\"ab\"}"),
                (2, "log", "{\"seq\":2}")
            ]
        );
    }
}
