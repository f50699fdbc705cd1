//! Content digests: parsing the sha256 digests the store accepts, and hashing while copying.
//!
//! The store addresses content only by sha256; a digest with another algorithm is refused
//! rather than stored unverified. [`HashingReader`] hashes whatever passes through it, so a blob
//! or an uncompressed layer is verified in the same pass that writes it.

use std::io::{self, Read};

pub use oci_spec::image::Digest;
use oci_spec::image::DigestAlgorithm;
use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// The lowercase hex of a sha256 `digest`, or an error naming `location` for other algorithms.
pub fn sha256_hex<'a>(digest: &'a Digest, location: &str) -> Result<&'a str, ImageError> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 => Ok(digest.digest()),
        _ => Err(ImageError::UnsupportedDigest {
            digest: digest.to_string(),
            location: location.to_owned(),
        }),
    }
}

/// Parse a `sha256:<hex>` string found at `location`.
pub fn parse_sha256(s: &str, location: &str) -> Result<Digest, ImageError> {
    let d: Digest = s.parse().map_err(|_| ImageError::InvalidDigest {
        digest: s.to_owned(),
        location: location.to_owned(),
    })?;
    sha256_hex(&d, location)?;
    Ok(d)
}

/// A reader that hashes (sha256) and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Read the rest of the stream (hashing it) and return `(sha256:<hex>, total bytes)`.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
