//! Batches as the service makes them of a zstd request, their bodies kept (`blobs.rs`): for the
//! store-sqlite tests and the store's conformance tests (both backends).

use uplink_store::EventBatch;

/// The text of event `seq` in [`kept_batch`]: UTF-8 and JSON escapes, of varied lengths.
pub fn kept_body(seq: u64) -> String {
    format!(
        "{{\"seq\":{seq},\"msg\":\"caf\\u00e9 é 日本 \\\"q\\\" {}\"}}",
        "x".repeat((seq % 7 * 300) as usize)
    )
}

/// A batch as the service makes one of a zstd request: each event's line a piece of the text,
/// the default kind appended after it, the body as sent kept.
pub fn kept_batch(seqs: impl IntoIterator<Item = u64>) -> EventBatch {
    let seqs: Vec<u64> = seqs.into_iter().collect();
    let mut text = String::new();
    let mut lines = Vec::new();
    for &seq in &seqs {
        let start = text.len();
        text.push_str(&kept_body(seq));
        lines.push(start..text.len());
        text.push('\n');
    }
    let zstd = framed(&text);
    let mut batch = EventBatch::new(text, seqs.len());
    let kind = batch.append("log");
    for (seq, line) in seqs.iter().zip(lines) {
        assert!(batch.push(*seq, kind.clone(), line));
    }
    batch.keep_zstd(zstd);
    batch
}

/// `text` as the sensor compresses, in frames that each declare their size; small ones, so that
/// a batch has several and texts cross from one to the next (the reader decodes only the
/// frames that hold a text).
fn framed(text: &str) -> Vec<u8> {
    text.as_bytes()
        .chunks(1000)
        .flat_map(|piece| zstd::bulk::compress(piece, 1).unwrap())
        .collect()
}

/// [`kept_batch`] as the service makes it for a store that keeps batches as sent: without its
/// decoded text ([`EventBatch::sent`]), which the store decodes again if it needs it.
pub fn sent_batch(seqs: impl IntoIterator<Item = u64>) -> EventBatch {
    let whole = kept_batch(seqs);
    let mut batch = EventBatch::sent(whole.text_len(), whole.len());
    let kind = batch.append("log");
    for (e, line) in whole.iter().zip(whole.body_ranges()) {
        assert!(batch.push(e.seq, kind.clone(), line.unwrap()));
    }
    batch.keep_zstd(whole.zstd().unwrap().to_vec());
    assert!(!batch.has_text());
    batch
}
