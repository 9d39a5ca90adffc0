//! Batches stored as sent (format 18, table `event_blobs`; docs/storage.md, "Batches stored as
//! sent").
//!
//! Why: with every event's text in its row, SQLite writes each byte of it three times (into
//! the WAL with its checksum, then the checkpoint reads it back and writes it into the
//! database) and the kernel copies it each time: about 1.8 ns per byte, 3.5 µs CPU for an event
//! of 2,000 B, where issue #28 asks for 1.5. A sensor sends its batches zstd-compressed; the
//! service has to decode them anyway, and the compressed body is the smallest form of the
//! batch's text there is. So the ingest writer stores that body once per batch, as it came,
//! and each event's row holds an empty `body` and where its text lies in the batch's decoded
//! text (`blob`, `span`). The events stay rows with their seq and kind: exactly-once, retention,
//! the holes and the counters work on them as before, whichever way their text is kept.
//!
//! Only a batch of new events is stored so (every seq above the watermark, increasing, none of
//! their range stored: `commit_group`); then every row of it points into it, and it holds
//! exactly its rows' texts. Anything else keeps each event's text in its row. A batch goes when
//! no row points into it any more (`collect`, after retention removes rows). Reading an event
//! back ([`Reader`], the export) decodes only the frames that hold its text.

use rusqlite::{params, Connection, OptionalExtension};
use uplink_protocol::body::Frame;
use uplink_store::batch::decode_zstd_exact;

/// The batches' bodies. A sensor's batches go with it (its workspace's deletion removes them
/// first, as it removes its events). `AUTOINCREMENT`: an id is never used again, so a row that
/// pointed into a batch gone could never read another batch's text (the reader also checks the
/// sensor and the seqs).
macro_rules! blobs_table {
    () => {
        "
CREATE TABLE IF NOT EXISTS event_blobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor INTEGER NOT NULL REFERENCES sensors(id),
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    text_len INTEGER NOT NULL,
    zstd BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_blobs_by_sensor ON event_blobs(sensor, first_seq);
"
    };
}

/// A new store's batches (its `events` table is made with `blob` and `span`).
pub(crate) const BLOBS_TABLE: &str = blobs_table!();

/// Format 18, from 17: the batches, and where each event's text lies in its batch.
pub(crate) const FORMAT_18: &str = concat!(
    blobs_table!(),
    "ALTER TABLE events ADD COLUMN blob INTEGER;
ALTER TABLE events ADD COLUMN span INTEGER;
"
);

/// An event's text as the range `start..start + len` of its batch's text, in one integer
/// (`start` in the high 32 bits). `None` when either does not fit in 32 bits (the row keeps its
/// text then; a batch is far smaller than 4 GiB).
pub(crate) fn span(range: &std::ops::Range<usize>) -> Option<i64> {
    let start = u32::try_from(range.start).ok()?;
    let len = u32::try_from(range.end.checked_sub(range.start)?).ok()?;
    Some(((u64::from(start) << 32) | u64::from(len)) as i64)
}

/// The range a [`span`] stands for (`None` only where `usize` is 32 bits and it ends past it).
pub(crate) fn range(span: i64) -> Option<std::ops::Range<usize>> {
    let span = span as u64;
    let start = usize::try_from(span >> 32).ok()?;
    Some(start..start.checked_add(usize::try_from(span & 0xffff_ffff).ok()?)?)
}

/// Stores a batch's body: sensor `sensor`'s events of seqs `first..=last` will point into it.
pub(crate) fn insert(
    tx: &Connection,
    sensor: i64,
    (first, last): (i64, i64),
    text_len: usize,
    zstd: &[u8],
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO event_blobs (sensor, first_seq, last_seq, text_len, zstd) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![sensor, first, last, text_len as i64, zstd])?;
    Ok(tx.last_insert_rowid())
}

/// Removes sensor `sensor`'s batches that start at or below `through` and that no event row
/// points into any more (retention removed them); how many went. Each check is one seek in the
/// events' primary key to the batch's first seq, answered by the first row while any is left.
pub(crate) fn collect(tx: &Connection, sensor: i64, through: i64) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM event_blobs WHERE sensor = ?1 AND first_seq <= ?2 AND NOT EXISTS (
             SELECT 1 FROM events e WHERE e.sensor = ?1 AND e.seq BETWEEN event_blobs.first_seq AND event_blobs.last_seq AND e.blob = event_blobs.id)",
    )?
    .execute(params![sensor, through])
}

/// A stored batch being read: its body, and the frames of it decoded last.
struct Batch {
    id: i64,
    sensor: i64,
    seqs: std::ops::RangeInclusive<i64>,
    zstd: Vec<u8>,
    /// The body's frames (each declares its size, as the sensor's do); `None`: decoded whole.
    frames: Option<Vec<Frame>>,
    /// The decoded bytes of one or more whole frames, and where they start in the text.
    window: (usize, Vec<u8>),
}

/// Reads events' texts out of their stored batches ([`Reader::text`]). The row a batch is
/// read from is kept for its run of events (the export reads in seq order), and only the
/// frames that hold the text asked for are decoded (the sensor sends frames of 256 KiB): an
/// export filtered by kind (a heartbeat a batch) decodes one frame per event, not its batch.
#[derive(Default)]
pub(crate) struct Reader {
    batch: Option<Batch>,
}

impl Reader {
    /// The text at `span` of batch `blob`, for the row of sensor `sensor` (rowid) and seq
    /// `seq`; an error that says what is wrong when the batch is missing, is another sensor's
    /// or seqs', does not decode to the text stored with it, or has no such piece.
    pub(crate) fn text(
        &mut self,
        tx: &Connection,
        (sensor, seq): (i64, i64),
        blob: i64,
        span: i64,
    ) -> Result<&str, String> {
        if self.batch.as_ref().is_none_or(|b| b.id != blob) {
            self.batch = None;
            self.batch = Some(load(tx, blob)?);
        }
        let Some(b) = self.batch.as_mut() else {
            return Err(format!("batch {blob} is missing"));
        };
        if b.sensor != sensor || !b.seqs.contains(&seq) {
            return Err(format!(
                "the row points into batch {blob}, which holds seqs {}..={} of another sensor or range",
                b.seqs.start(),
                b.seqs.end()
            ));
        }
        let text_len = b
            .frames
            .as_ref()
            .map_or(b.window.1.len(), |f| f.last().map_or(0, |f| f.decoded.end));
        let want = range(span).filter(|r| r.end <= text_len).ok_or_else(|| {
            format!("batch {blob} ({text_len} bytes) has no text at span {span:#x}")
        })?;
        if want.is_empty() {
            return Ok("");
        }
        let (base, bytes) = &b.window;
        let inside = want.start >= *base && want.end <= base + bytes.len();
        if !inside {
            // Only frames declare where they start: the window is always whole when there are
            // none (decoded at load).
            let Some(frames) = &b.frames else {
                return Err(format!("batch {blob} has no text at {want:?}"));
            };
            let first = frames.partition_point(|f| f.decoded.end <= want.start);
            let last = first.max(frames.partition_point(|f| f.decoded.end < want.end));
            let (Some(a), Some(z)) = (frames.get(first), frames.get(last)) else {
                return Err(format!("batch {blob} has no frame at {want:?}"));
            };
            let decoded = decode_zstd_exact(
                &b.zstd[a.compressed.start..z.compressed.end],
                z.decoded.end - a.decoded.start,
            )
            .map_err(|e| format!("batch {blob}: {e}"))?;
            b.window = (a.decoded.start, decoded);
        }
        let (base, bytes) = &b.window;
        std::str::from_utf8(&bytes[want.start - base..want.end - base]).map_err(|e| {
            format!(
                "batch {blob}: the text at {want:?} is not UTF-8 (at byte {})",
                e.valid_up_to()
            )
        })
    }
}

/// Reads batch `blob`'s row; its frames if each declares its size (all of them declaring the
/// length stored with it), else its whole text decoded.
fn load(tx: &Connection, blob: i64) -> Result<Batch, String> {
    let found = tx
        .prepare_cached(
            "SELECT sensor, first_seq, last_seq, text_len, zstd FROM event_blobs WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.query_row([blob], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?..=r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .optional()
        })
        .map_err(|e| format!("batch {blob} could not be read ({e})"))?;
    let (sensor, seqs, len, zstd) = found.ok_or_else(|| format!("batch {blob} is missing"))?;
    let len = usize::try_from(len).map_err(|_| format!("batch {blob} has length {len}"))?;
    let frames = uplink_protocol::body::zstd_frames(&zstd);
    let window = match &frames {
        Some(f) => {
            let declared = f.last().map_or(0, |f| f.decoded.end);
            if declared != len {
                return Err(format!(
                    "batch {blob}: its frames declare {declared} bytes, not the {len} stored with it"
                ));
            }
            (0, Vec::new())
        }
        None => (
            0,
            decode_zstd_exact(&zstd, len).map_err(|e| format!("batch {blob}: {e}"))?,
        ),
    };
    Ok(Batch {
        id: blob,
        sensor,
        seqs,
        zstd,
        frames,
        window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_gives_texts_across_frames_and_refuses_what_is_not_utf8() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE sensors (id INTEGER PRIMARY KEY); INSERT INTO sensors VALUES (7), (8); CREATE TABLE events (sensor, seq, body); {FORMAT_18}"
        ))
        .unwrap();
        // Frames of 4 bytes, as the sensor's of 256 KiB: "café" crosses the first two.
        let text: &[u8] = b"caf\xc3\xa9 ok \xe9!";
        let zstd: Vec<u8> = text
            .chunks(4)
            .flat_map(|p| zstd::bulk::compress(p, 1).unwrap())
            .collect();
        let blob = insert(&c, 7, (10, 12), text.len(), &zstd).unwrap();
        let mut reader = Reader::default();
        let at = |r: std::ops::Range<usize>| span(&r).unwrap();
        assert_eq!(reader.text(&c, (7, 10), blob, at(0..5)), Ok("café"));
        assert_eq!(reader.text(&c, (7, 11), blob, at(6..8)), Ok("ok"));
        assert_eq!(reader.text(&c, (7, 11), blob, at(8..8)), Ok(""));
        let cases = [
            ((7, 12), at(9..10), "is not UTF-8"),
            ((7, 12), at(9..20), "has no text at"),
            ((8, 12), at(0..5), "another sensor"),
            ((7, 13), at(0..5), "another sensor or range"),
        ];
        for (row, span, says) in cases {
            let e = reader.text(&c, row, blob, span).unwrap_err();
            assert!(e.contains(says), "{row:?} {span:#x}: {e}");
        }
        let mut fresh = Reader::default();
        let e = fresh.text(&c, (7, 10), blob + 1, at(0..5)).unwrap_err();
        assert!(e.contains("is missing"), "{e}");
    }

    #[test]
    fn spans_round_trip_and_refuse_what_does_not_fit() {
        let max = u32::MAX as usize;
        let cases: [(std::ops::Range<usize>, bool); 7] = [
            (0..0, true),
            (0..9, true),
            (17..2048, true),
            (max..max, true),
            (max - 5..max + max - 5, true),
            (max + 1..max + 2, false),
            (0..max + 1, false),
        ];
        for (r, fits) in cases {
            let s = span(&r);
            assert_eq!(s.is_some(), fits, "{r:?}");
            if let Some(s) = s {
                assert_eq!(range(s), Some(r));
            }
        }
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..3;
        assert_eq!(span(&backwards), None);
    }
}
