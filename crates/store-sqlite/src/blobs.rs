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
//! A batch's body is kept only for the events that go in by the multi-row path (new events in
//! ascending seq order above the watermark, `commit_group`); the others (a retried batch's
//! stragglers, a seq in a hole, a short tail) keep their text in the row. A blob goes when no
//! row points to it any more (`collect`, after retention removes rows). Reading an event back
//! (`Reader`, the export) decodes its batch once for all its events.

use rusqlite::{params, Connection, OptionalExtension};

/// Format 18: the batches' bodies, and where each event's text lies in its batch. A sensor's
/// batches go with it (its workspace's deletion removes them first, as it removes its events).
pub(crate) const FORMAT_18: &str = "
CREATE TABLE IF NOT EXISTS event_blobs (
    id INTEGER PRIMARY KEY,
    sensor INTEGER NOT NULL REFERENCES sensors(id),
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    text_len INTEGER NOT NULL,
    zstd BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_blobs_by_sensor ON event_blobs(sensor, first_seq);
ALTER TABLE events ADD COLUMN blob INTEGER;
ALTER TABLE events ADD COLUMN span INTEGER;
";

/// An event's text as the range `start..start + len` of its batch's text, in one integer
/// (`start` in the high 32 bits). `None` when either does not fit in 32 bits (the row keeps its
/// text then; a batch is far smaller than 4 GiB).
pub(crate) fn span(range: &std::ops::Range<usize>) -> Option<i64> {
    let start = u32::try_from(range.start).ok()?;
    let len = u32::try_from(range.end.checked_sub(range.start)?).ok()?;
    Some(((u64::from(start) << 32) | u64::from(len)) as i64)
}

/// The range a [`span`] stands for.
pub(crate) fn range(span: i64) -> std::ops::Range<usize> {
    let span = span as u64;
    let start = (span >> 32) as usize;
    start..start + (span & 0xffff_ffff) as usize
}

/// Stores a batch's body: sensor `sensor`'s events of seqs `first..=last` may point into it.
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
/// points to any more (retention removed them); how many went. Each check is one seek in the
/// events' primary key to the batch's first seq, usually answered by the first row.
pub(crate) fn collect(tx: &Connection, sensor: i64, through: i64) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM event_blobs WHERE sensor = ?1 AND first_seq <= ?2 AND NOT EXISTS (
             SELECT 1 FROM events e WHERE e.sensor = ?1 AND e.seq BETWEEN event_blobs.first_seq AND event_blobs.last_seq AND e.blob = event_blobs.id)",
    )?
    .execute(params![sensor, through])
}

/// Reads events' texts out of their batches, decoding each batch once while its events come in
/// a row (the export reads them in seq order).
#[derive(Default)]
pub(crate) struct Reader {
    batch: Option<(i64, String)>,
}

impl Reader {
    /// The text at `span` of batch `blob`; an error that says what is wrong when the batch is
    /// missing, does not decode to the text it was stored with, or has no such piece.
    pub(crate) fn text(&mut self, tx: &Connection, blob: i64, span: i64) -> Result<&str, String> {
        if self.batch.as_ref().is_none_or(|(id, _)| *id != blob) {
            self.batch = None;
            let found = tx
                .prepare_cached("SELECT text_len, zstd FROM event_blobs WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([blob], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()
                })
                .map_err(|e| format!("batch {blob} could not be read ({e})"))?;
            let (len, zstd) = found.ok_or_else(|| format!("batch {blob} is missing"))?;
            let text = uplink_store::batch::decode_zstd_text(&zstd, len.max(0) as usize)
                .map_err(|e| format!("batch {blob}: {e}"))?;
            self.batch = Some((blob, text));
        }
        let text = self
            .batch
            .as_ref()
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        let range = range(span);
        text.get(range.clone()).ok_or_else(|| {
            format!(
                "batch {blob} ({} bytes) has no text at {range:?}",
                text.len()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                assert_eq!(range(s), r);
            }
        }
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..3;
        assert_eq!(span(&backwards), None);
    }
}
