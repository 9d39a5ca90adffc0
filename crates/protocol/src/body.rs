//! Request bodies under limits: optional zstd decoding that stops at a decoded-size limit, so a
//! small compressed body cannot expand into an unbounded allocation (a "zip bomb").

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

/// Decodes `body` per `encoding`, refusing to produce more than `max_decoded` bytes.
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
            let decoder = zstd::stream::read::Decoder::new(body)
                .map_err(|e| BodyError::Corrupt(e.to_string()))?;
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_decoded));
            // Read one byte past the limit to tell "exactly at the limit" from "over it".
            decoder
                .take(max_decoded as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Corrupt(e.to_string()))?;
            if out.len() > max_decoded {
                return Err(BodyError::TooLargeDecoded { limit: max_decoded });
            }
            Ok(std::borrow::Cow::Owned(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
