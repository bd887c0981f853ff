//! The four Pulsar payload codecs, in the exact formats the official clients use
//! (checked against the C++ client carried by the Python wheel):
//!
//! - LZ4: the raw LZ4 *block* format, no frame header (`LZ4_compress_default`).
//! - ZLIB: zlib-wrapped deflate (zlib's `compress()`), not raw deflate or gzip.
//! - ZSTD: a standard zstd frame (`ZSTD_compress`, level 3).
//! - SNAPPY: the raw snappy block format (`snappy::Compress`), not the framing format.
//!
//! The block formats do not record their output size, so decompression is
//! driven by `MessageMetadata.uncompressed_size`, which comes from the peer:
//! it is capped to stop memory bombs and the output must match it exactly.

use std::io::Read;

use bytes::Bytes;

use crate::error::WireError;
use crate::CompressionType;

/// Largest `uncompressed_size` accepted by [`decompress`].
pub const MAX_UNCOMPRESSED_SIZE: usize = 64 * 1024 * 1024;

/// zstd level used by the Pulsar clients.
const ZSTD_LEVEL: i32 = 3;

/// Compresses `data` with `kind`. `NONE` copies the input.
pub fn compress(kind: CompressionType, data: &[u8]) -> Result<Bytes, WireError> {
    let out = match kind {
        CompressionType::None => data.to_vec(),
        CompressionType::Lz4 => lz4_flex::block::compress(data),
        CompressionType::Zlib => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut encoder, data).map_err(codec_error("zlib"))?;
            encoder.finish().map_err(codec_error("zlib"))?
        }
        CompressionType::Zstd => {
            zstd::bulk::compress(data, ZSTD_LEVEL).map_err(codec_error("zstd"))?
        }
        CompressionType::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(codec_error("snappy"))?,
    };
    Ok(Bytes::from(out))
}

/// Decompresses `data`, which must expand to exactly `uncompressed_size` bytes
/// (at most [`MAX_UNCOMPRESSED_SIZE`]). `NONE` copies the input unchanged.
pub fn decompress(
    kind: CompressionType,
    data: &[u8],
    uncompressed_size: usize,
) -> Result<Bytes, WireError> {
    if kind == CompressionType::None {
        return Ok(Bytes::copy_from_slice(data));
    }
    if uncompressed_size > MAX_UNCOMPRESSED_SIZE {
        return Err(WireError::FrameTooLarge {
            size: uncompressed_size,
            max: MAX_UNCOMPRESSED_SIZE,
        });
    }
    let out = match kind {
        CompressionType::None => data.to_vec(),
        CompressionType::Lz4 => {
            lz4_flex::block::decompress(data, uncompressed_size).map_err(codec_error("lz4"))?
        }
        CompressionType::Zlib => {
            // Read one byte past the expected size to notice overlong streams
            // without letting them allocate more.
            let mut out = Vec::with_capacity(uncompressed_size);
            flate2::read::ZlibDecoder::new(data)
                .take(uncompressed_size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(codec_error("zlib"))?;
            out
        }
        CompressionType::Zstd => {
            // `bulk::decompress` fails if the output would exceed the capacity.
            zstd::bulk::decompress(data, uncompressed_size).map_err(codec_error("zstd"))?
        }
        CompressionType::Snappy => {
            let declared = snap::raw::decompress_len(data).map_err(codec_error("snappy"))?;
            if declared != uncompressed_size {
                return Err(size_mismatch("snappy", declared, uncompressed_size));
            }
            snap::raw::Decoder::new()
                .decompress_vec(data)
                .map_err(codec_error("snappy"))?
        }
    };
    if out.len() != uncompressed_size {
        return Err(size_mismatch(
            kind.as_str_name(),
            out.len(),
            uncompressed_size,
        ));
    }
    Ok(Bytes::from(out))
}

fn codec_error<E: std::fmt::Display>(codec: &'static str) -> impl Fn(E) -> WireError {
    move |e| WireError::Compression(format!("{codec}: {e}"))
}

fn size_mismatch(codec: &str, actual: usize, declared: usize) -> WireError {
    WireError::Compression(format!(
        "{codec}: data expands to {actual} bytes but uncompressed_size is {declared}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CompressionType; 5] = [
        CompressionType::None,
        CompressionType::Lz4,
        CompressionType::Zlib,
        CompressionType::Zstd,
        CompressionType::Snappy,
    ];

    fn sample() -> Vec<u8> {
        b"pulsar magnetar "
            .iter()
            .copied()
            .cycle()
            .take(10_000)
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for kind in ALL {
            let packed = compress(kind, &data).expect("compress");
            if kind != CompressionType::None {
                assert!(packed.len() < data.len() / 4, "{kind:?} did not compress");
            }
            let unpacked = decompress(kind, &packed, data.len()).expect("decompress");
            assert_eq!(unpacked, data, "{kind:?}");
        }
    }

    #[test]
    fn empty_input_round_trips() {
        for kind in ALL {
            let packed = compress(kind, &[]).expect("compress");
            assert!(decompress(kind, &packed, 0).expect("decompress").is_empty());
        }
    }

    #[test]
    fn formats_are_the_ones_pulsar_uses() {
        let data = sample();
        // zlib header: CMF 0x78 (deflate, 32K window), header checksum valid.
        let z = compress(CompressionType::Zlib, &data).expect("zlib");
        assert_eq!(z[0], 0x78);
        assert_eq!(u16::from_be_bytes([z[0], z[1]]) % 31, 0);
        // zstd frame magic 0xFD2FB528 (little endian).
        let z = compress(CompressionType::Zstd, &data).expect("zstd");
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        // snappy raw block starts with the varint uncompressed length (10000).
        let s = compress(CompressionType::Snappy, &data).expect("snappy");
        assert_eq!(&s[..2], &[0x90, 0x4e]);
        // LZ4 block: no frame magic 0x184D2204.
        let l = compress(CompressionType::Lz4, &data).expect("lz4");
        assert_ne!(&l[..4], &[0x04, 0x22, 0x4d, 0x18]);
        // A hand-made LZ4 block for 21 x 'a': one literal, a match at offset 1 of
        // length 11 + 4, then the 5 closing literals the format requires.
        let block = [0x1b, b'a', 0x01, 0x00, 0x50, b'a', b'a', b'a', b'a', b'a'];
        let out = decompress(CompressionType::Lz4, &block, 21).expect("lz4 block");
        assert_eq!(&out[..], &[b'a'; 21][..]);
    }

    #[test]
    fn wrong_sizes_are_rejected() {
        let data = sample();
        for kind in ALL.into_iter().skip(1) {
            let packed = compress(kind, &data).expect("compress");
            for size in [0, data.len() - 1, data.len() + 1] {
                assert!(
                    matches!(
                        decompress(kind, &packed, size),
                        Err(WireError::Compression(_))
                    ),
                    "{kind:?} accepted size {size}"
                );
            }
        }
    }

    #[test]
    fn memory_bombs_are_rejected() {
        for kind in ALL.into_iter().skip(1) {
            assert!(matches!(
                decompress(kind, &[0; 16], MAX_UNCOMPRESSED_SIZE + 1),
                Err(WireError::FrameTooLarge { .. })
            ));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for kind in ALL.into_iter().skip(1) {
            for size in [0, 1, 100, 10_000] {
                let _ = decompress(kind, &garbage, size);
            }
        }
    }
}
