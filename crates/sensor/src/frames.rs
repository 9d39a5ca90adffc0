//! A batch's body compressed as it is read from the queue: zstd frames of at most
//! [`FRAME_BYTES`] of text each, concatenated.
//!
//! The uploader used to read a batch's whole text (up to `upload.batch_bytes`, 4 MiB) and then
//! compress it in one call: with long lines the text alone was a fifth of the sensor's peak
//! memory, and the compressor's output buffer (sized for the worst case) as much again. Here each
//! event's text goes into a small stage; a full stage becomes one frame, appended to the
//! compressed body, and the stage is reused. So what a batch holds in memory is its compressed
//! bytes plus one stage, whatever `batch_bytes` an older `sensor.toml` says.
//!
//! Each frame declares its content size (a one-shot compression knows it), so the service still
//! learns the decoded size from the frame headers and allocates it once
//! (`uplink_protocol::body::decoded_bound` sums the frames). The wire format is unchanged: a zstd
//! body is any sequence of frames, and the text they decode to is the same NDJSON.
//!
//! Not here: what goes in a batch (the queue's limits), and sending it.

use std::io;

/// The most text one frame holds (an event larger than this is a frame of its own).
pub const FRAME_BYTES: usize = 256 * 1024;

/// About the most compressed bytes a batch holds: one ends at the first event after which its
/// frames reach this, whatever `upload.batch_bytes` allows of text. It may go over by what was
/// staged then and that event (at most one stage, [`FRAME_BYTES`] of text, and one event, as
/// compressed). A batch is in memory compressed until it is answered, two with
/// `upload.inflight` 2, so this, not the text, bounds the uploader's memory for batches: 2 MiB,
/// half of the 4 MiB of text a batch was bounded by before `batch_bytes` grew to 8 MiB. Text
/// that compresses 4× or better (the benchmarks' shapes, most logs) still fills 8 MiB.
pub const MAX_COMPRESSED: usize = 2 << 20;

/// The compression level: zstd's fastest (the sensor's CPU is the scarce resource, and the text
/// compresses well at any level).
const LEVEL: i32 = 1;

/// Compresses a batch's events into concatenated zstd frames, one stage of text at a time.
pub struct Frames {
    /// One context for every frame (a new one per frame would allocate its tables anew).
    compressor: zstd::bulk::Compressor<'static>,
    frame_bytes: usize,
    /// Text not compressed yet (less than a frame, or one event larger than a frame).
    stage: Vec<u8>,
    /// The frames so far.
    out: Vec<u8>,
    /// The first compression error of this batch (reported by [`Frames::finish`]).
    error: Option<io::Error>,
}

impl std::fmt::Debug for Frames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("frame_bytes", &self.frame_bytes)
            .field("staged", &self.stage.len())
            .field("compressed", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Frames {
    /// Frames of at most `frame_bytes` of text (at least 1).
    pub fn new(frame_bytes: usize) -> io::Result<Frames> {
        Ok(Frames {
            compressor: zstd::bulk::Compressor::new(LEVEL)?,
            frame_bytes: frame_bytes.max(1),
            stage: Vec::new(),
            out: Vec::new(),
            error: None,
        })
    }

    /// Adds one event's text (without its newline; the newline is added).
    pub fn push(&mut self, payload: &[u8]) {
        if !self.stage.is_empty() && self.stage.len() + payload.len() + 1 > self.frame_bytes {
            self.flush();
        }
        if self.stage.capacity() == 0 {
            self.stage
                .reserve_exact(self.frame_bytes.max(payload.len() + 1));
        }
        self.stage.extend_from_slice(payload);
        self.stage.push(b'\n');
        if self.stage.len() >= self.frame_bytes {
            self.flush();
        }
    }

    /// The compressed bytes of the frames made so far (the stage not yet counted).
    pub fn compressed_len(&self) -> usize {
        self.out.len()
    }

    /// Compresses the stage into one frame at the end of the body.
    fn flush(&mut self) {
        if self.stage.is_empty() || self.error.is_some() {
            self.stage.clear();
            return;
        }
        let bound = zstd::zstd_safe::compress_bound(self.stage.len());
        self.out.reserve(bound);
        let at = self.out.len();
        let mut cursor = io::Cursor::new(std::mem::take(&mut self.out));
        cursor.set_position(at as u64);
        let compressed = self.compressor.compress_to_buffer(&self.stage, &mut cursor);
        self.out = cursor.into_inner();
        if let Err(e) = compressed {
            self.error = Some(e);
        }
        self.stage.clear();
        // A stage that grew for one large event does not stay that large.
        if self.stage.capacity() > self.frame_bytes {
            self.stage = Vec::new();
        }
    }

    /// The compressed body of the events pushed since the last `finish` (empty if none), and a
    /// fresh start for the next batch.
    pub fn finish(&mut self) -> io::Result<Vec<u8>> {
        self.flush();
        // The body leaves as an exact copy and the buffer stays for the next batch: a buffer
        // reserved anew per batch (room for a frame's worst case, mapped fresh) cost a page
        // fault per page touched. One that grew past a few frames is not kept: it leaves as
        // the body itself, not copied.
        let out = if self.out.capacity() > 4 * self.frame_bytes {
            std::mem::take(&mut self.out)
        } else {
            let out = self.out.clone();
            self.out.clear();
            out
        };
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Drops what was pushed since the last `finish` (a batch read but not sent).
    pub fn discard(&mut self) {
        self.stage.clear();
        self.out.clear();
        if self.out.capacity() > 4 * self.frame_bytes {
            self.out = Vec::new();
        }
        self.error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(mut body: &[u8]) -> Vec<u64> {
        let mut sizes = Vec::new();
        while !body.is_empty() {
            let size = zstd::zstd_safe::get_frame_content_size(body)
                .unwrap()
                .expect("every frame declares its size");
            let len = zstd::zstd_safe::find_frame_compressed_size(body).unwrap();
            sizes.push(size);
            body = &body[len..];
        }
        sizes
    }

    #[test]
    fn the_body_decodes_to_the_events_text_in_frames_of_at_most_the_stage() {
        // (frame bytes, event sizes, the frames' content sizes)
        let cases: &[(usize, &[usize], &[u64])] = &[
            // Nothing pushed: an empty body.
            (100, &[], &[]),
            // One event: one frame, the newline included.
            (100, &[9], &[10]),
            // Events that fill a frame exactly: a frame each time it is full.
            (20, &[9, 9, 9, 9], &[20, 20]),
            // The next event would not fit: the frame ends before it.
            (25, &[9, 9, 9], &[20, 10]),
            // An event larger than a frame is a frame of its own.
            (10, &[3, 30, 3], &[4, 31, 4]),
            (10, &[30], &[31]),
        ];
        for (frame, sizes, want) in cases {
            let mut f = Frames::new(*frame).unwrap();
            let mut text = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..*size).map(|j| b'a' + ((i + j) % 26) as u8).collect();
                f.push(&payload);
                text.extend_from_slice(&payload);
                text.push(b'\n');
            }
            let body = f.finish().unwrap();
            assert_eq!(frames_of(&body), *want, "{frame} {sizes:?}");
            if body.is_empty() {
                assert!(text.is_empty());
                continue;
            }
            let decoded = zstd::stream::decode_all(&body[..]).unwrap();
            assert_eq!(decoded, text, "{frame} {sizes:?}");
            // The service's bound is the exact size, from the frame headers.
            assert_eq!(
                uplink_protocol::body::decoded_bound(
                    uplink_protocol::body::Encoding::Zstd,
                    &body,
                    usize::MAX
                ),
                text.len(),
                "{frame} {sizes:?}"
            );
        }
    }

    #[test]
    fn the_compressed_length_counts_the_frames_made_and_starts_afresh() {
        let mut f = Frames::new(64).unwrap();
        assert_eq!(f.compressed_len(), 0);
        // Within the stage: no frame yet.
        f.push(&[b'a'; 20]);
        assert_eq!(f.compressed_len(), 0);
        // A stage the next event would overflow becomes a frame first: counted.
        f.push(&[b'b'; 60]);
        let first = f.compressed_len();
        assert!(first > 0);
        f.push(&[b'c'; 70]);
        assert!(f.compressed_len() > first);
        let made = f.compressed_len();
        let body = f.finish().unwrap();
        assert!(body.len() >= made);
        assert_eq!(frames_of(&body), [21, 61, 71]);
        // The next batch counts from nothing.
        assert_eq!(f.compressed_len(), 0);
    }

    #[test]
    fn each_batch_starts_afresh() {
        let mut f = Frames::new(64).unwrap();
        f.push(b"dropped");
        f.discard();
        f.push(b"one");
        let first = f.finish().unwrap();
        f.push(b"two");
        let second = f.finish().unwrap();
        assert_eq!(zstd::stream::decode_all(&first[..]).unwrap(), b"one\n");
        assert_eq!(zstd::stream::decode_all(&second[..]).unwrap(), b"two\n");
        assert!(f.finish().unwrap().is_empty());
    }
}
