//! The bytes a connection has queued for its transport.
//!
//! Small frames are copied into one growing buffer (`tail`); a large payload the
//! caller owns, or a frame encoded once for many connections, is queued as the
//! reference-counted [`Bytes`] it already is. A writer hands the queue to the
//! transport as several buffers at once (see [`Output::chunks_vectored`]), so
//! neither kind is copied again.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this long are queued by reference rather than copied:
/// below it a copy costs less than another buffer in a vectored write.
pub(crate) const SHARE_MIN: usize = 512;

/// A `tail` that grew past this is freed once empty, so that one large burst
/// does not pin its memory for the life of the connection.
const KEEP_CAPACITY: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Queued before `tail`, in order.
    chunks: VecDeque<Bytes>,
    /// Small frames, copied; written after `chunks`.
    tail: BytesMut,
    /// Largest length `tail` reached since it was last reallocated (a buffer's
    /// capacity cannot be read back once it was advanced).
    tail_peak: usize,
    /// Bytes queued in all.
    len: usize,
}

impl Output {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends to the copied part; `write` gets the buffer to extend and
    /// returns nothing (the length is read back afterwards).
    pub(crate) fn copy_with(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let before = self.tail.len();
        write(&mut self.tail);
        self.len += self.tail.len() - before;
        self.tail_peak = self.tail_peak.max(self.tail.len());
    }

    /// Queues `bytes` without copying them.
    pub(crate) fn share(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            let copied = self.tail.split().freeze();
            self.chunks.push_back(copied);
        }
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// The next contiguous bytes to write.
    pub(crate) fn front(&self) -> &[u8] {
        match self.chunks.front() {
            Some(chunk) => chunk,
            None => &self.tail,
        }
    }

    /// Fills `dst` with the queued buffers, in order; returns how many it filled.
    pub(crate) fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let buffers = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain((!self.tail.is_empty()).then_some(&self.tail[..]));
        let mut filled = 0;
        for (slot, buffer) in dst.iter_mut().zip(buffers) {
            *slot = IoSlice::new(buffer);
            filled += 1;
        }
        filled
    }

    /// Drops the first `n` bytes (they were written).
    pub(crate) fn advance(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                break;
            };
            if n < front.len() {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
        if self.len == 0 {
            self.release_large();
        }
    }

    /// Everything queued, as one buffer: without copying when it is one
    /// buffer already.
    pub(crate) fn take(&mut self) -> Bytes {
        let taken = if self.chunks.is_empty() {
            self.tail.split().freeze()
        } else if self.chunks.len() == 1 && self.tail.is_empty() {
            self.chunks.pop_front().unwrap_or_default()
        } else {
            let mut all = BytesMut::with_capacity(self.len);
            for chunk in self.chunks.drain(..) {
                all.extend_from_slice(&chunk);
            }
            all.extend_from_slice(&self.tail.split());
            all.freeze()
        };
        self.len = 0;
        self.release_large();
        taken
    }

    /// Frees the copy buffer while nothing is queued (an idle connection).
    pub(crate) fn compact(&mut self) {
        if self.is_empty() {
            self.chunks = VecDeque::new();
            self.tail = BytesMut::new();
            self.tail_peak = 0;
        }
    }

    #[cfg(test)]
    pub(crate) fn tail_capacity(&self) -> usize {
        self.tail.capacity()
    }

    #[cfg(test)]
    pub(crate) fn tail_peak(&self) -> usize {
        self.tail_peak
    }

    fn release_large(&mut self) {
        if self.tail_peak > KEEP_CAPACITY {
            self.tail = BytesMut::new();
            self.tail_peak = 0;
        }
        if self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(out: &mut Output, step: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = out.chunks_vectored(&mut slices);
            assert!(n > 0, "a non-empty queue yields buffers");
            let mut budget = step;
            let mut wrote = 0;
            for slice in &slices[..n] {
                let take = slice.len().min(budget);
                all.extend_from_slice(&slice[..take]);
                budget -= take;
                wrote += take;
            }
            out.advance(wrote);
        }
        all
    }

    #[test]
    fn copied_and_shared_bytes_come_out_in_order_whatever_the_write_sizes() {
        for step in [1, 3, 7, 600, 5000] {
            let mut out = Output::default();
            let shared = Bytes::from(vec![b's'; 1000]);
            out.copy_with(|b| b.extend_from_slice(b"ab"));
            out.share(shared.clone());
            out.copy_with(|b| b.extend_from_slice(b"cd"));
            out.share(shared.clone());
            out.share(Bytes::new());
            out.copy_with(|b| b.extend_from_slice(b"e"));
            assert_eq!(out.len(), 2005);
            let mut expected = b"ab".to_vec();
            expected.extend_from_slice(&shared);
            expected.extend_from_slice(b"cd");
            expected.extend_from_slice(&shared);
            expected.extend_from_slice(b"e");
            assert_eq!(written(&mut out, step), expected, "step {step}");
            assert_eq!(out.len(), 0);
            assert!(out.front().is_empty());
        }
    }

    #[test]
    fn shared_bytes_are_queued_without_a_copy() {
        let mut out = Output::default();
        let shared = Bytes::from(vec![7u8; 4096]);
        out.copy_with(|b| b.extend_from_slice(b"hd"));
        out.share(shared.clone());
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(out.chunks_vectored(&mut slices), 2);
        assert_eq!(slices[1].as_ptr(), shared.as_ptr(), "the same memory");
    }

    #[test]
    fn take_returns_everything_once() {
        let mut out = Output::default();
        out.copy_with(|b| b.extend_from_slice(b"x"));
        out.share(Bytes::from_static(b"yz"));
        assert_eq!(&out.take()[..], b"xyz");
        assert!(out.is_empty());
        assert!(out.take().is_empty());
        let single = Bytes::from(vec![1u8; 600]);
        out.share(single.clone());
        assert_eq!(out.take().as_ptr(), single.as_ptr(), "one buffer: no copy");
    }
}
