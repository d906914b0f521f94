//! Unpack limits: how many bytes and entries one layer, and how many bytes the layers of
//! one image, may expand to (`images.max_layer_bytes`, `max_image_bytes`,
//! `max_layer_entries`), counted while streaming so that a decompression bomb is refused
//! after at most the limit was written.
//!
//! Two counts per layer, each held to the byte budget: the decompressed tar stream (what
//! the decompressor produced, headers and padding included) and the entries' content at
//! their full size (a sparse file counts its real size, holes included), charged before
//! an entry is written. It never touches the disk itself.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use super::ImageError;
use super::config::UnpackLimits;

/// Room left for the layers of one image that are still to extract.
#[derive(Clone, Copy, Debug)]
pub struct ImageBudget {
    limits: UnpackLimits,
    used: u64,
}

/// What one layer may expand to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerBudget {
    pub bytes: u64,
    pub entries: u64,
    /// The image's own limit when the image's room is the tighter one.
    image_limit: Option<u64>,
}

impl ImageBudget {
    pub fn new(limits: UnpackLimits) -> Self {
        Self { limits, used: 0 }
    }

    /// The budget of the next layer: its own limit or what is left of the image's.
    pub fn next_layer(&self) -> LayerBudget {
        let room = self.limits.image_bytes.saturating_sub(self.used);
        let image_tighter = room < self.limits.layer_bytes;
        LayerBudget {
            bytes: room.min(self.limits.layer_bytes),
            entries: self.limits.layer_entries,
            image_limit: image_tighter.then_some(self.limits.image_bytes),
        }
    }

    /// Records a layer that was extracted with `bytes`.
    pub fn add(&mut self, bytes: u64) {
        self.used = self.used.saturating_add(bytes);
    }
}

impl LayerBudget {
    /// The error for `layer` going beyond the byte budget.
    pub fn too_large(&self, layer: &str) -> ImageError {
        match self.image_limit {
            Some(limit) => ImageError::ImageTooLarge {
                layer: layer.to_string(),
                limit,
            },
            None => ImageError::LayerTooLarge {
                layer: layer.to_string(),
                limit: self.bytes,
            },
        }
    }
}

/// Counts the entries and content of one layer against its budget.
#[derive(Debug)]
pub struct EntryMeter {
    budget: LayerBudget,
    entries: u64,
    content: u64,
}

/// Tar header block size: each entry costs at least one.
const BLOCK: u64 = 512;

impl EntryMeter {
    pub fn new(budget: LayerBudget) -> Self {
        Self {
            budget,
            entries: 0,
            content: 0,
        }
    }

    /// Charges one entry of `size` content bytes (its real size when sparse), before it
    /// is written.
    pub fn charge(&mut self, size: u64, layer: &str) -> Result<(), ImageError> {
        self.entries += 1;
        if self.entries > self.budget.entries {
            return Err(ImageError::TooManyEntries {
                layer: layer.to_string(),
                limit: self.budget.entries,
            });
        }
        self.content = self.content.saturating_add(BLOCK).saturating_add(size);
        if self.content > self.budget.bytes {
            return Err(self.budget.too_large(layer));
        }
        Ok(())
    }

    /// Content bytes charged so far.
    pub fn content(&self) -> u64 {
        self.content
    }
}

/// A reader that fails once more than `limit` bytes came through it, and says so in
/// the flag shared with the caller (the error itself passes through the tar reader as
/// a plain I/O error).
pub struct LimitedReader<R> {
    inner: R,
    read: u64,
    limit: u64,
    over: Rc<Cell<bool>>,
}

impl<R: Read> LimitedReader<R> {
    pub fn new(inner: R, limit: u64) -> (Self, Rc<Cell<bool>>) {
        let over = Rc::new(Cell::new(false));
        let r = Self {
            inner,
            read: 0,
            limit,
            over: Rc::clone(&over),
        };
        (r, over)
    }

    /// Bytes that came through.
    pub fn count(&self) -> u64 {
        self.read
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.over.get() {
            return Err(io::Error::other("layer expands beyond its limit"));
        }
        let room = self.limit - self.read;
        if room == 0 {
            // At the limit: one more byte, if any, is beyond it.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.read += 1;
            self.over.set(true);
            return Err(io::Error::other("layer expands beyond its limit"));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(layer: u64, image: u64, entries: u64) -> UnpackLimits {
        UnpackLimits {
            layer_bytes: layer,
            image_bytes: image,
            layer_entries: entries,
        }
    }

    #[test]
    fn the_image_budget_shrinks_the_last_layers() {
        let mut b = ImageBudget::new(limits(100, 250, 10));
        assert_eq!(b.next_layer().bytes, 100);
        b.add(100);
        b.add(100);
        let last = b.next_layer();
        assert_eq!(last.bytes, 50);
        let msg = last.too_large("sha256:ab").to_string();
        assert!(
            msg.contains("beyond 250 bytes at layer sha256:ab (images.max_image_bytes)"),
            "{msg}"
        );
        b.add(60);
        assert_eq!(b.next_layer().bytes, 0);
        let own = ImageBudget::new(limits(100, 250, 10)).next_layer();
        let msg = own.too_large("sha256:ab").to_string();
        assert!(
            msg.contains("layer sha256:ab expands beyond 100 bytes (images.max_layer_bytes)"),
            "{msg}"
        );
    }

    #[test]
    fn entries_and_content_are_charged_before_writing() {
        let budget = ImageBudget::new(limits(2048, 1 << 20, 3)).next_layer();
        let mut m = EntryMeter::new(budget);
        m.charge(0, "l").unwrap();
        m.charge(1000, "l").unwrap();
        assert_eq!(m.content(), 2024);
        let big = m.charge(1, "l").unwrap_err();
        assert!(
            matches!(big, ImageError::LayerTooLarge { limit: 2048, .. }),
            "{big}"
        );
        let mut m = EntryMeter::new(budget);
        for _ in 0..3 {
            m.charge(0, "l").unwrap();
        }
        let many = m.charge(0, "l").unwrap_err().to_string();
        assert!(
            many.contains("more than 3 entries (images.max_layer_entries)"),
            "{many}"
        );
    }

    #[test]
    fn the_reader_stops_one_byte_past_the_limit() {
        let (mut r, over) = LimitedReader::new(io::repeat(0), 10_000);
        let mut sink = Vec::new();
        let err = io::copy(&mut r, &mut sink).unwrap_err();
        assert!(err.to_string().contains("beyond its limit"));
        assert!(over.get());
        assert_eq!(sink.len(), 10_000);
        assert_eq!(r.count(), 10_001);
        let (mut exact, over) = LimitedReader::new(&[1u8; 100][..], 100);
        io::copy(&mut exact, &mut io::sink()).unwrap();
        assert!(!over.get());
    }
}
