-- Version 14: the holes retention's watermark passed (issue #28; docs/storage.md, "Retention
-- and the watermark").
--
-- Ingest answers a seq at or below a sensor's watermark (`sensors.pruned_through`) "duplicate".
-- That is exact only for seqs that were stored: a sensor can leave seqs unstored below a batch
-- committed later (a batch that failed while a later one in flight was committed; records its
-- queue lost), and retention, raising the watermark to the highest seq it removed, passes them.
-- Each range of seqs it passes that `seen` does not hold is recorded here, in the transaction
-- that raises the watermark. Ingest stores a seq in a range like one above the watermark (its
-- `seen` row decides whether it is a duplicate), and retention keeps the `seen` rows inside
-- ranges: a range is never shrunk, its seqs are deduplicated by `seen` instead of the
-- watermark. One row per range, whatever its length; a sensor's ranges go with it.
--
-- Expand only: an older build (3 and later) runs beside it as before (it ignores the table, so
-- it still answers a seq in a hole "duplicate").

CREATE TABLE pruned_holes (
    sensor BIGINT NOT NULL REFERENCES sensors (id) ON DELETE CASCADE,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    PRIMARY KEY (sensor, lo)
);
