//! Compressed task messages, as kombu writes them: `apply_async(...,
//! compression="zlib")` compresses the serialized body and names the method
//! in the `compression` header by its content type (`application/x-gzip`
//! for `zlib` and `gzip` alike, `application/x-bz2`, `application/x-lzma`
//! for `lzma` and `xz`, `application/x-brotli`, `application/zstd`).
//!
//! A body is inflated to at most [`MAX_BODY`] bytes, whatever it claims:
//! a small message cannot unfold into a huge one. Every decoder here is
//! pure Rust and reads bytes from a peer, so each is fuzzed (see the
//! tests).
//!
//! ```
//! use celery_pages::message::compression::{Compression, decompress};
//! let body = br#"[[4, 10], {}, {}]"#;
//! let packed = Compression::Bzip2.compress(body);
//! assert_eq!(decompress(Compression::Bzip2.content_type(), &packed).unwrap(), body);
//! ```

use std::io::{Read, Write};

/// The largest body a compressed message may inflate to.
pub const MAX_BODY: usize = 16 << 20;

/// A compression method kombu offers (`compression=` in `apply_async`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Zlib,
    Gzip,
    Bzip2,
    Lzma,
    Xz,
    Brotli,
    Zstd,
}

impl Compression {
    /// What the `compression` header says, as kombu registers it.
    pub fn content_type(self) -> &'static str {
        match self {
            Compression::Zlib | Compression::Gzip => "application/x-gzip",
            Compression::Bzip2 => "application/x-bz2",
            Compression::Lzma | Compression::Xz => "application/x-lzma",
            Compression::Brotli => "application/x-brotli",
            Compression::Zstd => "application/zstd",
        }
    }

    /// `body` compressed as kombu's encoder for this method does (Python's
    /// `zlib.compress`, `bz2.compress`, `lzma.compress` (xz),
    /// `brotli.compress`, `zstandard` frames).
    pub fn compress(self, body: &[u8]) -> Vec<u8> {
        let mut packed = Vec::new();
        let written = match self {
            Compression::Zlib | Compression::Gzip => {
                let mut encoder =
                    flate2::write::ZlibEncoder::new(&mut packed, flate2::Compression::default());
                encoder
                    .write_all(body)
                    .and_then(|()| encoder.finish().map(drop))
            }
            Compression::Bzip2 => {
                let mut encoder =
                    bzip2::write::BzEncoder::new(&mut packed, bzip2::Compression::default());
                encoder
                    .write_all(body)
                    .and_then(|()| encoder.finish().map(drop))
            }
            Compression::Lzma | Compression::Xz => {
                lzma_rs::xz_compress(&mut std::io::BufReader::new(body), &mut packed)
            }
            Compression::Brotli => brotli::CompressorReader::new(body, 4096, 11, 22)
                .read_to_end(&mut packed)
                .map(drop),
            Compression::Zstd => {
                packed = ruzstd::encoding::compress_to_vec(
                    body,
                    ruzstd::encoding::CompressionLevel::Fastest,
                );
                Ok(())
            }
        };
        written.expect("compressing into memory cannot fail");
        packed
    }
}

/// The method a `compression` header names (a content type, or one of
/// kombu's aliases for it).
fn method_of(header: &str) -> Option<Compression> {
    Some(match header {
        "application/x-gzip" | "zlib" | "gzip" => Compression::Zlib,
        "application/x-bz2" | "bzip2" | "bzip" => Compression::Bzip2,
        "application/x-lzma" | "lzma" | "xz" => Compression::Xz,
        "application/x-brotli" | "brotli" => Compression::Brotli,
        "application/zstd" | "zstd" | "zstandard" => Compression::Zstd,
        _ => return None,
    })
}

/// `body` inflated by the method the `compression` header names, or why
/// it cannot be.
pub fn decompress(header: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let method = method_of(header).ok_or_else(|| {
        format!("compression {header:?} is not supported (zlib, bzip2, lzma, brotli and zstd are)")
    })?;
    let mut inflated = Vec::new();
    let limit = MAX_BODY as u64 + 1;
    let read = match method {
        Compression::Zlib | Compression::Gzip => flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(&mut inflated)
            .map(drop),
        Compression::Bzip2 => bzip2::read::BzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut inflated)
            .map(drop),
        // Python's lzma.decompress reads both the xz and the old .lzma
        // format.
        Compression::Lzma | Compression::Xz => {
            let mut limited = Limited {
                inner: &mut inflated,
                room: MAX_BODY + 1,
            };
            let mut input = std::io::BufReader::new(body);
            match lzma_rs::xz_decompress(&mut input, &mut limited) {
                Ok(()) => Ok(()),
                Err(_) => {
                    limited.inner.clear();
                    limited.room = MAX_BODY + 1;
                    lzma_rs::lzma_decompress(&mut std::io::BufReader::new(body), &mut limited)
                        .map_err(|err| std::io::Error::other(err.to_string()))
                }
            }
        }
        Compression::Brotli => brotli::Decompressor::new(body, 4096)
            .take(limit)
            .read_to_end(&mut inflated)
            .map(drop),
        Compression::Zstd => ruzstd::decoding::StreamingDecoder::new(body)
            .map_err(|err| std::io::Error::other(err.to_string()))
            .and_then(|decoder| decoder.take(limit).read_to_end(&mut inflated).map(drop)),
    };
    read.map_err(|err| format!("the {header} body cannot be decompressed: {err}"))?;
    if inflated.len() > MAX_BODY {
        return Err(format!(
            "the {header} body decompresses to more than {MAX_BODY} bytes"
        ));
    }
    Ok(inflated)
}

/// A writer that refuses to grow past `room` bytes (for decoders that
/// write rather than read).
struct Limited<'a> {
    inner: &'a mut Vec<u8>,
    room: usize,
}

impl Write for Limited<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if bytes.len() > self.room {
            return Err(std::io::Error::other("too large"));
        }
        self.room -= bytes.len();
        self.inner.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use proptest::prelude::*;

    #[test]
    fn every_method_round_trips() {
        let body = br#"[["Kamu sudah membaca 4", " halaman"], {}, {"callbacks": null}]"#.repeat(20);
        for method in Compression::value_variants() {
            let packed = method.compress(&body);
            assert_eq!(
                decompress(method.content_type(), &packed).unwrap(),
                body,
                "{method:?}"
            );
        }
    }

    #[test]
    fn a_bomb_is_refused_not_inflated() {
        let huge = vec![b' '; MAX_BODY + 10];
        for method in [Compression::Zlib, Compression::Bzip2, Compression::Zstd] {
            let packed = method.compress(&huge);
            let err = decompress(method.content_type(), &packed).unwrap_err();
            assert!(err.contains("more than"), "{method:?}: {err}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Whatever bytes come with whatever method, an error or a body,
        /// never a panic.
        #[test]
        fn random_bodies_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            method in 0usize..7,
        ) {
            let method = Compression::value_variants()[method];
            let _ = decompress(method.content_type(), &body);
        }
    }
}
