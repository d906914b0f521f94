//! Streaming zstd decompression (pure Rust, `ruzstd`) of a whole layer blob: every
//! frame in turn, skipping skippable frames (as written by `zstd:chunked`).
//!
//! It only decodes: it never buffers more than a zstd window and never touches files.

use std::io::{self, BufRead, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// Decodes concatenated zstd frames read from `R`.
pub struct MultiFrameDecoder<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> MultiFrameDecoder<R> {
    pub fn new(source: R) -> Self {
        Self {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    pub fn into_inner(self) -> R {
        self.source
    }

    /// Starts the next frame; `false` at the end of the input.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd: truncated skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::other(format!("zstd: {e}"))),
            }
        }
    }
}

impl<R: BufRead> Read for MultiFrameDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            let dec = &mut self.decoder;
            while dec.can_collect() < buf.len() && !dec.is_finished() {
                let wanted = buf.len() - dec.can_collect();
                dec.decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(|e| io::Error::other(format!("zstd: {e}")))?;
            }
            let n = dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if dec.is_finished() && dec.can_collect() == 0 {
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_concatenated_and_skippable_frames() {
        let a = ruzstd::encoding::compress_to_vec(
            &b"hello "[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let b = ruzstd::encoding::compress_to_vec(
            &b"world"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut input = a;
        input.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        input.extend_from_slice(&3u32.to_le_bytes());
        input.extend_from_slice(b"xyz");
        input.extend_from_slice(&b);
        let mut out = String::new();
        MultiFrameDecoder::new(&input[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
        let mut bad = MultiFrameDecoder::new(&b"not zstd"[..]);
        assert!(bad.read_to_string(&mut out).is_err());
    }
}
