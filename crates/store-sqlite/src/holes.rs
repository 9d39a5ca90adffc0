//! The holes retention's watermark passed (format 15, table `pruned_holes`; docs/storage.md,
//! "Retention and the watermark").
//!
//! Ingest answers a seq at or below a sensor's watermark (`sensors.pruned_through`) "duplicate":
//! a retried copy of an event retention removed. That is exact only for seqs that were stored.
//! A sensor can leave seqs unstored below a later committed batch — a batch that failed while a
//! later one in flight was committed (`upload.inflight` > 1), or seqs its queue skipped (a
//! damaged record) — and retention, removing in seq order, passes them. So when the watermark
//! rises, every range of seqs it passes that was never stored is recorded here; a seq inside
//! one is new, is stored, and leaves the range (the range is split) in the same transaction.
//! Stored, it is removed later like any event (by age), so retention never stalls behind it.
//!
//! One row per range: a hole costs a row until its seqs arrive, whatever its length; a sensor
//! whose queue lost records keeps one row per loss. Nothing here runs on the common path: a
//! seq above the watermark (every new event) never reads this table.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use uplink_store::backup::uncovered;
use uplink_store::StoreError;

use crate::SqliteStore;

/// Format 15 (IF NOT EXISTS: a step may be re-run). A sensor's
/// holes go with it.
pub(crate) const FORMAT_15: &str = "
CREATE TABLE IF NOT EXISTS pruned_holes (
    sensor INTEGER NOT NULL REFERENCES sensors(id) ON DELETE CASCADE,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (sensor, lo)
) WITHOUT ROWID;
";

/// The ranges `(lo, hi)` (inclusive) of seqs above `through` and below the last of `seqs` that
/// are not in `seqs` (ascending, all above `through`). Pure.
pub(crate) fn holes(through: i64, seqs: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut prev = through;
    let mut out = Vec::new();
    for seq in seqs {
        if seq > prev + 1 {
            out.push((prev + 1, seq - 1));
        }
        prev = prev.max(seq);
    }
    out
}

/// Records the holes the watermark passes as it rises from `through` over `seqs` (ascending,
/// the seqs stored above `through` up to the new watermark).
pub(crate) fn record(
    tx: &Connection,
    sensor: i64,
    through: i64,
    seqs: impl IntoIterator<Item = i64>,
) -> rusqlite::Result<()> {
    let found = holes(through, seqs);
    if found.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO pruned_holes (sensor, lo, hi) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for (lo, hi) in found {
        st.execute(params![sensor, lo, hi])?;
    }
    Ok(())
}

/// For a seq at or below the watermark: whether it lies in a hole (never stored, so new). If so,
/// it leaves the hole; the caller stores it in the same transaction.
pub(crate) fn fill(tx: &Connection, sensor: i64, seq: i64) -> rusqlite::Result<bool> {
    let found: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT lo, hi FROM pruned_holes WHERE sensor = ?1 AND lo <= ?2 ORDER BY lo DESC LIMIT 1",
        )?
        .query_row(params![sensor, seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((lo, hi)) = found.filter(|&(_, hi)| hi >= seq) else {
        return Ok(false);
    };
    tx.prepare_cached("DELETE FROM pruned_holes WHERE sensor = ?1 AND lo = ?2")?
        .execute(params![sensor, lo])?;
    let mut put =
        tx.prepare_cached("INSERT INTO pruned_holes (sensor, lo, hi) VALUES (?1, ?2, ?3)")?;
    for (lo, hi) in split(lo, hi, seq) {
        put.execute(params![sensor, lo, hi])?;
    }
    Ok(true)
}

/// What is left of the hole `lo..=hi` once `seq` (inside it) arrived. Pure.
fn split(lo: i64, hi: i64, seq: i64) -> impl Iterator<Item = (i64, i64)> {
    [(lo, seq - 1), (seq + 1, hi)]
        .into_iter()
        .filter(|(a, b)| a <= b)
}

/// Copies (`store backup`, `store migrate`): the holes read and recorded as they are.
impl SqliteStore {
    pub(crate) fn pruned_holes_sync(
        &self,
        workspace: &str,
    ) -> Result<BTreeMap<String, Vec<(u64, u64)>>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT s.sensor_id, h.lo, h.hi FROM pruned_holes h JOIN sensors s ON s.id = h.sensor
                 WHERE s.workspace = ?1 ORDER BY s.sensor_id, h.lo",
            )?;
            let rows = st.query_map([workspace], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
            for row in rows {
                let (sensor, lo, hi) = row?;
                out.entry(sensor).or_default().push((lo as u64, hi as u64));
            }
            Ok(out)
        })
    }

    pub(crate) fn add_pruned_holes_sync(
        &self,
        sensor_id: &str,
        holes: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        let found = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let Some(row) = tx
                .query_row(
                    "SELECT id FROM sensors WHERE sensor_id = ?1",
                    [sensor_id],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
            else {
                return Ok(false);
            };
            {
                // Only what is still a hole here: at or below this store's watermark (a seq
                // above it is decided by the stored rows anyway), not stored (a copy taken while
                // a late arrival filled the hole has it both as an event and inside the hole),
                // not covered by a hole already recorded (a copy run again; a hole split since).
                // `fill` relies on holes never overlapping and never holding a stored seq
                // (found in review: a copy broke both, and a seq could be stored twice later).
                let through: i64 = tx.query_row(
                    "SELECT COALESCE(pruned_through, -1) FROM sensors WHERE id = ?1",
                    [row],
                    |r| r.get(0),
                )?;
                record_uncovered(&tx, row, holes, -1, through)?;
            }
            tx.commit()?;
            Ok(true)
        })?;
        if !found {
            return Err(StoreError::NoSuchSensor(sensor_id.to_owned()));
        }
        Ok(())
    }
}

/// Records the parts of `holes` between the watermarks `old` (exclusive) and `new` that are
/// still holes here: not stored, not covered by a hole recorded already. `fill` relies on holes
/// never overlapping and never holding a stored seq. Shared by `add_pruned_holes` and the
/// copies' `import_watermark`; `tx` holds the write lock.
pub(crate) fn record_uncovered(
    tx: &Connection,
    row: i64,
    holes: &[(u64, u64)],
    old: i64,
    new: i64,
) -> rusqlite::Result<()> {
    let mut taken_in = tx.prepare_cached(
        "SELECT lo, hi FROM pruned_holes WHERE sensor = ?1 AND hi >= ?2 AND lo <= ?3
         UNION ALL
         SELECT seq, seq FROM events WHERE sensor = ?1 AND seq BETWEEN ?2 AND ?3
         ORDER BY 1",
    )?;
    let mut insert =
        tx.prepare_cached("INSERT INTO pruned_holes (sensor, lo, hi) VALUES (?1, ?2, ?3)")?;
    for &(lo, hi) in holes {
        let Some((lo, hi)) = uplink_store::backup::between_watermarks(lo, hi, old, new) else {
            continue;
        };
        let taken = taken_in
            .query_map(params![row, lo as i64, hi as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (lo, hi) in uncovered(lo, hi, &taken) {
            insert.execute(params![row, lo as i64, hi as i64])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inclusive ranges of seqs.
    type Ranges = &'static [(i64, i64)];

    #[test]
    fn holes_between_stored_seqs() {
        let cases: &[(i64, &[i64], Ranges)] = &[
            (-1, &[], &[]),
            (-1, &[0, 1, 2], &[]),
            (-1, &[3], &[(0, 2)]),
            (9, &[10, 11, 20, 21, 23], &[(12, 19), (22, 22)]),
            // Above the last seq nothing is a hole: the watermark stops there.
            (4, &[5], &[]),
            (4, &[7, 8], &[(5, 6)]),
        ];
        for (through, seqs, want) in cases {
            assert_eq!(
                holes(*through, seqs.iter().copied()),
                *want,
                "{through} {seqs:?}"
            );
        }
    }

    #[test]
    fn an_arrival_splits_its_hole() {
        let cases: &[(i64, i64, i64, Ranges)] = &[
            (5, 5, 5, &[]),
            (5, 9, 5, &[(6, 9)]),
            (5, 9, 9, &[(5, 8)]),
            (5, 9, 7, &[(5, 6), (8, 9)]),
        ];
        for (lo, hi, seq, want) in cases {
            assert_eq!(split(*lo, *hi, *seq).collect::<Vec<_>>(), *want);
        }
    }

    #[test]
    fn filling_and_recording_in_a_store() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE sensors (id INTEGER PRIMARY KEY); INSERT INTO sensors VALUES (1), (2); {FORMAT_15}"
        ))
        .unwrap();
        record(&c, 1, -1, [0, 1, 5, 9]).unwrap();
        record(&c, 2, 3, [4, 6]).unwrap();
        let rows = |c: &Connection| -> Vec<(i64, i64, i64)> {
            let mut st = c
                .prepare("SELECT sensor, lo, hi FROM pruned_holes ORDER BY sensor, lo")
                .unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(rows(&c), [(1, 2, 4), (1, 6, 8), (2, 5, 5)]);
        // Not in a hole: stored once, or another sensor's hole.
        for (sensor, seq) in [(1, 0), (1, 5), (1, 9), (1, 1), (2, 3), (2, 4)] {
            assert!(!fill(&c, sensor, seq).unwrap(), "{sensor} {seq}");
        }
        assert!(fill(&c, 1, 7).unwrap());
        assert!(!fill(&c, 1, 7).unwrap(), "filled once");
        assert!(fill(&c, 1, 2).unwrap());
        assert!(fill(&c, 2, 5).unwrap());
        assert_eq!(rows(&c), [(1, 3, 4), (1, 6, 6), (1, 8, 8)]);
    }
}
