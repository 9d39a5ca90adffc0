//! Request bodies under limits: optional zstd decoding that stops at a decoded-size limit, so a
//! small compressed body cannot expand into an unbounded allocation (a "zip bomb").
//!
//! [`decoded_bound`] says, before decoding, the most bytes [`decode`] will produce for a body: the
//! service reserves that much of its memory budget first. A zstd frame that declares its size
//! (the zstd tool, the library's bulk API and the sensor all write it) is held to it, so a
//! sensor's typical 2 MB batch costs 2 MB, not the 64 MiB ceiling.

use std::io::Read;

/// Content encodings the service accepts for event batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value (absent means identity).
    pub fn from_header(value: Option<&str>) -> Result<Self, BodyError> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(Encoding::Identity),
            Some(v) if v.is_empty() || v == "identity" => Ok(Encoding::Identity),
            Some(v) if v == "zstd" => Ok(Encoding::Zstd),
            Some(v) => Err(BodyError::UnsupportedEncoding(v)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("content encoding {0:?} is not supported: send identity or zstd")]
    UnsupportedEncoding(String),
    #[error("the body is larger than {limit} bytes after decompression: send smaller batches")]
    TooLargeDecoded { limit: usize },
    #[error("the zstd body could not be decoded: {0}")]
    Corrupt(String),
}

/// The most bytes [`decode`] can produce for `body`, at most `max_decoded`: its length for
/// identity; for zstd the sum of the sizes its frame headers declare, or `max_decoded` when a
/// frame declares none or the headers cannot be read (decoding then says what is wrong).
pub fn decoded_bound(encoding: Encoding, body: &[u8], max_decoded: usize) -> usize {
    match encoding {
        Encoding::Identity => body.len().min(max_decoded),
        Encoding::Zstd => declared_zstd_size(body)
            .and_then(|n| usize::try_from(n).ok())
            .map_or(max_decoded, |n| n.min(max_decoded)),
    }
}

/// The total content size the frames of `body` declare, if every frame declares one.
fn declared_zstd_size(mut body: &[u8]) -> Option<u64> {
    use zstd::zstd_safe;
    let mut total = 0u64;
    while !body.is_empty() {
        let size = zstd_safe::get_frame_content_size(body).ok()??;
        let frame = zstd_safe::find_frame_compressed_size(body).ok()?;
        if frame == 0 || frame > body.len() {
            return None;
        }
        total = total.checked_add(size)?;
        body = &body[frame..];
    }
    Some(total)
}

/// One zstd frame of a body: the bytes it takes, and the bytes of the decoded body it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub compressed: std::ops::Range<usize>,
    pub decoded: std::ops::Range<usize>,
}

/// The frames of a zstd `body` in order, if every frame's header can be read and declares its
/// size (the sensor's do): a reader of one piece of the decoded body then decodes only the
/// frames that hold it. `None` otherwise (decode the whole body).
pub fn zstd_frames(body: &[u8]) -> Option<Vec<Frame>> {
    zstd_frames_at_most(body, usize::MAX)
}

/// [`zstd_frames`], `None` past `max` frames (a list of frames is not counted by the decode
/// budget: a small body of many empty frames must not make a large one).
pub fn zstd_frames_at_most(body: &[u8], max: usize) -> Option<Vec<Frame>> {
    use zstd::zstd_safe;
    let (mut at, mut decoded) = (0usize, 0usize);
    let mut frames = Vec::new();
    while at < body.len() {
        if frames.len() == max {
            return None;
        }
        let rest = &body[at..];
        let size = usize::try_from(zstd_safe::get_frame_content_size(rest).ok()??).ok()?;
        let len = zstd_safe::find_frame_compressed_size(rest).ok()?;
        if len == 0 || len > rest.len() {
            return None;
        }
        let end = decoded.checked_add(size)?;
        frames.push(Frame {
            compressed: at..at + len,
            decoded: decoded..end,
        });
        (at, decoded) = (at + len, end);
    }
    Some(frames)
}

/// Decodes `body` per `encoding`, refusing to produce more than `max_decoded` bytes, or more than
/// its zstd frames declare ([`decoded_bound`]).
pub fn decode(
    encoding: Encoding,
    body: &[u8],
    max_decoded: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, BodyError> {
    match encoding {
        Encoding::Identity if body.len() > max_decoded => {
            Err(BodyError::TooLargeDecoded { limit: max_decoded })
        }
        Encoding::Identity => Ok(std::borrow::Cow::Borrowed(body)),
        Encoding::Zstd => {
            let declared = declared_zstd_size(body);
            if declared.is_some_and(|n| n > max_decoded as u64) {
                return Err(BodyError::TooLargeDecoded { limit: max_decoded });
            }
            let limit = decoded_bound(encoding, body, max_decoded);
            if declared.is_some() {
                if let Some(out) = decode_declared(body, limit) {
                    return out.map(std::borrow::Cow::Owned);
                }
            }
            let decoder = zstd::stream::read::Decoder::new(body)
                .map_err(|e| BodyError::Corrupt(e.to_string()))?;
            let mut out = Vec::with_capacity(match declared {
                Some(_) => limit,
                None => body.len().saturating_mul(4).min(max_decoded),
            });
            // Read one byte past the limit to tell "exactly at the limit" from "over it".
            decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Corrupt(e.to_string()))?;
            if out.len() > limit {
                return Err(if limit < max_decoded {
                    BodyError::Corrupt(format!(
                        "it decodes to more than the {limit} bytes its frame headers declare"
                    ))
                } else {
                    BodyError::TooLargeDecoded { limit: max_decoded }
                });
            }
            Ok(std::borrow::Cow::Owned(out))
        }
    }
}

thread_local! {
    /// Each decoding thread's zstd context, made once: a context is ~100 KiB of tables that
    /// would otherwise be allocated and faulted in again for every batch.
    static DCTX: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decodes a body whose every frame declared its size (`declared`, which the service reserved):
/// in one call straight into a buffer of exactly that size, with the thread's reused context.
/// A stream decoder would copy through its own buffers and zero the output first (issue #28:
/// perf showed that zeroing, and its page faults, at ~3 % of the service). zstd itself checks
/// each frame's output against its declared size, so a frame that understates it fails here
/// (the buffer is full) and one that overstates it fails its check. `None` when no context can
/// be made (out of memory): the caller streams instead.
fn decode_declared(body: &[u8], declared: usize) -> Option<Result<Vec<u8>, BodyError>> {
    DCTX.with(|cell| {
        let mut cell = cell.try_borrow_mut().ok()?;
        if cell.is_none() {
            *cell = zstd::zstd_safe::DCtx::try_create();
        }
        let dctx = cell.as_mut()?;
        let mut out = Vec::new();
        if out.try_reserve_exact(declared).is_err() {
            return None;
        }
        // An empty body is no frame at all: nothing decoded, as the stream decoder says.
        if body.is_empty() {
            return Some(Ok(out));
        }
        Some(match dctx.decompress(&mut out, body) {
            Ok(n) if n == declared => Ok(out),
            Ok(n) => Err(BodyError::Corrupt(format!(
                "it decodes to {n} bytes, not the {declared} its frame headers declare"
            ))),
            Err(code) => {
                // A failed call may leave the context mid-frame: start the next one afresh.
                let _ = dctx.reset(zstd::zstd_safe::ResetDirective::SessionAndParameters);
                Err(BodyError::Corrupt(format!(
                    "{} (its frame headers declare {declared} bytes)",
                    zstd::zstd_safe::get_error_name(code)
                )))
            }
        })
    })
}

/// Largest frame [`for_each_frame`] decodes into its thread's buffer (the sensor's frames are
/// 256 KiB): a body of larger frames is decoded whole instead.
pub const MAX_FRAME: usize = 1 << 20;

thread_local! {
    /// Each decoding thread's buffer for one frame ([`for_each_frame`]): small enough to stay
    /// in the CPU's cache while the frame is read, and not allocated for every frame.
    static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes the `frames` of `body` ([`zstd_frames`]) one at a time, each into a buffer the
/// thread reuses, and hands `each` its decoded bytes and where they start in the decoded body,
/// in order (issue #28: a whole 4 MiB batch decoded first is out of the cache by the time it
/// is read). `None` when a frame does not decode to exactly its declared size, one is larger
/// than [`MAX_FRAME`], or `each` says `None`.
pub fn for_each_frame(
    body: &[u8],
    frames: &[Frame],
    mut each: impl FnMut(&[u8], usize) -> Option<()>,
) -> Option<()> {
    if frames
        .iter()
        .any(|f| f.decoded.len() > MAX_FRAME || body.get(f.compressed.clone()).is_none())
    {
        return None;
    }
    DCTX.with(|dctx| {
        let mut dctx = dctx.try_borrow_mut().ok()?;
        if dctx.is_none() {
            *dctx = zstd::zstd_safe::DCtx::try_create();
        }
        let dctx = dctx.as_mut()?;
        FRAME.with(|buf| {
            let mut buf = buf.try_borrow_mut().ok()?;
            for f in frames {
                buf.clear();
                buf.try_reserve_exact(f.decoded.len()).ok()?;
                match dctx.decompress(&mut *buf, &body[f.compressed.clone()]) {
                    Ok(n) if n == f.decoded.len() => {}
                    Ok(_) => return None,
                    Err(_) => {
                        // A failed call may leave the context mid-frame: start the next afresh.
                        let _ = dctx.reset(zstd::zstd_safe::ResetDirective::SessionAndParameters);
                        return None;
                    }
                }
                each(&buf, f.decoded.start)?;
            }
            Some(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_listed_when_each_declares_its_size() {
        let one = zstd::bulk::compress(b"first frame\n", 1).unwrap();
        let two = zstd::bulk::compress(b"second\n", 1).unwrap();
        let body = [one.clone(), two.clone()].concat();
        assert_eq!(
            zstd_frames(&body),
            Some(vec![
                Frame {
                    compressed: 0..one.len(),
                    decoded: 0..12
                },
                Frame {
                    compressed: one.len()..body.len(),
                    decoded: 12..19
                },
            ])
        );
        assert_eq!(zstd_frames(b""), Some(vec![]));
        // At most so many frames.
        assert_eq!(zstd_frames_at_most(&body, 2), zstd_frames(&body));
        assert_eq!(zstd_frames_at_most(&body, 1), None);
        assert_eq!(zstd_frames_at_most(b"", 0), Some(vec![]));
        // A stream frame declares no size; a cut frame or another format has no readable end.
        let stream = zstd::encode_all(&b"no size"[..], 1).unwrap();
        let cases: [&[u8]; 3] = [
            &[one.as_slice(), &stream].concat(),
            &body[..body.len() - 2],
            b"plain text",
        ];
        for case in cases {
            assert_eq!(zstd_frames(case), None, "{case:?}");
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_header(None).unwrap(), Encoding::Identity);
        assert_eq!(
            Encoding::from_header(Some(" ZSTD ")).unwrap(),
            Encoding::Zstd
        );
        assert_eq!(
            Encoding::from_header(Some("identity")).unwrap(),
            Encoding::Identity
        );
        assert!(matches!(
            Encoding::from_header(Some("gzip")),
            Err(BodyError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn decoded_bounds() {
        let plain = vec![b'a'; 100_000];
        // The bulk API (the sensor's) declares the size; a streamed frame does not.
        let packed = zstd::bulk::compress(&plain, 3).unwrap();
        let mut two = packed.clone();
        two.extend_from_slice(&zstd::bulk::compress(b"0123456789", 3).unwrap());
        let streamed = zstd::encode_all(&plain[..], 3).unwrap();
        let cases: &[(Encoding, &[u8], usize, usize)] = &[
            (Encoding::Identity, b"12345", 100, 5),
            (Encoding::Identity, b"12345", 3, 3),
            (Encoding::Zstd, &packed, 1 << 20, 100_000),
            (Encoding::Zstd, &packed, 1000, 1000),
            (Encoding::Zstd, &two, 1 << 20, 100_010),
            (Encoding::Zstd, &streamed, 1 << 20, 1 << 20),
            (Encoding::Zstd, b"garbage", 1 << 20, 1 << 20),
            (
                Encoding::Zstd,
                &packed[..packed.len() / 2],
                1 << 20,
                1 << 20,
            ),
            (Encoding::Zstd, b"", 1 << 20, 0),
        ];
        for (i, (enc, body, max, want)) in cases.iter().enumerate() {
            assert_eq!(decoded_bound(*enc, body, *max), *want, "case {i}");
        }
        assert_eq!(
            decode(Encoding::Zstd, &two, 1 << 20).unwrap().len(),
            100_010
        );
        assert_eq!(
            decode(Encoding::Zstd, &streamed, 1 << 20).unwrap().len(),
            100_000
        );
        assert_eq!(
            decode(Encoding::Zstd, &streamed, 99_999).unwrap_err(),
            BodyError::TooLargeDecoded { limit: 99_999 }
        );
    }

    /// A frame whose header understates its content is refused, never decoded past the header's
    /// size (the size the service reserved memory for).
    #[test]
    fn a_frame_that_lies_about_its_size_is_refused() {
        let plain = vec![b'a'; 100_000];
        let mut packed = zstd::bulk::compress(&plain, 3).unwrap();
        // The frame header: magic (4), descriptor (1), then the content size field whose width
        // the descriptor gives; shrink the declared size.
        let fcs_flag = packed[4] >> 6;
        let single = packed[4] & 0x20 != 0;
        assert_eq!((fcs_flag, single), (2, true), "4-byte size field expected");
        packed[5..9].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(decoded_bound(Encoding::Zstd, &packed, 1 << 20), 1000);
        assert!(matches!(
            decode(Encoding::Zstd, &packed, 1 << 20),
            Err(BodyError::Corrupt(_))
        ));
    }

    #[test]
    fn zstd_round_trip_and_limits() {
        let plain = vec![b'a'; 100_000];
        let packed = zstd::encode_all(&plain[..], 3).unwrap();
        assert!(packed.len() < 1000);
        assert_eq!(
            &*decode(Encoding::Zstd, &packed, 100_000).unwrap(),
            &plain[..]
        );
        assert_eq!(
            decode(Encoding::Zstd, &packed, 99_999).unwrap_err(),
            BodyError::TooLargeDecoded { limit: 99_999 }
        );
        assert_eq!(
            decode(Encoding::Identity, &plain, 10).unwrap_err(),
            BodyError::TooLargeDecoded { limit: 10 }
        );
        assert!(matches!(
            decode(Encoding::Zstd, b"garbage", 100),
            Err(BodyError::Corrupt(_))
        ));
        assert!(matches!(
            decode(Encoding::Zstd, &packed[..packed.len() / 2], 1 << 20),
            Err(BodyError::Corrupt(_))
        ));
    }

    /// Frames that declare their size are decoded in one call with the thread's context
    /// (issue #28); a frame that overstates or understates its size, or is cut short, is refused,
    /// and the context decodes the next body as if new.
    #[test]
    fn declared_frames_are_decoded_whole_and_a_bad_one_does_not_spoil_the_next() {
        let plain: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let packed = zstd::bulk::compress(&plain, 1).unwrap();
        // The frame header: magic (4), descriptor (1), a window byte unless single-segment, then
        // the 4-byte content size.
        assert_eq!(packed[4] >> 6, 2, "4-byte size field expected");
        let at = if packed[4] & 0x20 != 0 { 5 } else { 6 };
        let size = u32::from_le_bytes(packed[at..at + 4].try_into().unwrap());
        assert_eq!(size as usize, plain.len());
        let mut over = packed.clone();
        over[at..at + 4].copy_from_slice(&(size + 10).to_le_bytes());
        let mut under = packed.clone();
        under[at..at + 4].copy_from_slice(&(size - 10).to_le_bytes());
        let cut = &packed[..packed.len() - 7];
        let good = || {
            assert_eq!(
                &*decode(Encoding::Zstd, &packed, 1 << 22).unwrap(),
                &plain[..]
            )
        };
        good();
        for (i, bad) in [&over[..], &under[..], cut].into_iter().enumerate() {
            assert!(
                matches!(
                    decode(Encoding::Zstd, bad, 1 << 22),
                    Err(BodyError::Corrupt(_))
                ),
                "case {i}: {:?}",
                decode(Encoding::Zstd, bad, 1 << 22).map(|d| d.len())
            );
            good();
        }
        // Over the limit before any decoding, whatever the path.
        assert_eq!(
            decode(Encoding::Zstd, &packed, plain.len() - 1).unwrap_err(),
            BodyError::TooLargeDecoded {
                limit: plain.len() - 1
            }
        );
        // No frame at all decodes to nothing.
        assert!(decode(Encoding::Zstd, b"", 100).unwrap().is_empty());
    }
}
