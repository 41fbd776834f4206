//! Incremental, fail-fast UTF-8 validation for text messages that arrive in pieces.
//!
//! RFC 6455 §8.1 asks endpoints to fail a connection on invalid UTF-8 as soon as it is
//! seen, not only when the message is complete (Autobahn 6.4.x). `from_utf8` (std's, and
//! `simdutf8::compat`'s, which is used here for speed) already reports an error only
//! when the bytes seen so far cannot start a valid sequence (`error_len() == Some`);
//! `None` means "valid, but cut off". So a chunked validator only has to carry the (at
//! most 3) bytes of a cut-off sequence over. Every byte of a text message goes through
//! it once: [`Utf8Validator::finish`] at the message's end is the whole check.

#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    /// Bytes of an incomplete sequence at the end of the previous chunk.
    partial: [u8; 4],
    partial_len: usize,
}

/// The input is not (and cannot become) valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

/// Total length of the sequence a (valid) leading byte starts.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// Validate the next chunk of a message.
    pub(crate) fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let need = sequence_len(self.partial[0]).saturating_sub(self.partial_len);
            let take = need.min(input.len());
            let end = self.partial_len + take;
            let (filled, rest) = input.split_at(take);
            self.partial[self.partial_len..end].copy_from_slice(filled);
            match simdutf8::compat::from_utf8(&self.partial[..end]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    // Still cut off, so `rest` is empty.
                    self.partial_len = end;
                    return Ok(());
                }
            }
            input = rest;
        }
        match simdutf8::compat::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = input.get(e.valid_up_to()..).unwrap_or_default();
                self.partial_len = tail.len().min(4);
                self.partial[..self.partial_len].copy_from_slice(&tail[..self.partial_len]);
                Ok(())
            }
        }
    }

    /// Whether everything fed so far ends on a character boundary.
    #[cfg(test)]
    pub(crate) fn is_complete(&self) -> bool {
        self.partial_len == 0
    }

    /// The message ends here: `Ok` when everything fed since the last reset is
    /// valid UTF-8 (no sequence left cut off). Resets for the next message.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.reset();
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    pub(crate) fn reset(&mut self) {
        self.partial_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn feed_split(data: &[u8], splits: &[usize]) -> Result<bool, InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let mut pos = 0;
        for &s in splits {
            v.feed(&data[pos..s])?;
            pos = s;
        }
        v.feed(&data[pos..])?;
        Ok(v.is_complete())
    }

    #[test]
    fn valid_text_in_random_pieces() {
        let text = "κόσμε ✓ 𝄞 plain ascii — ünïcödé 🎉".repeat(5);
        let bytes = text.as_bytes();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..500 {
            let mut splits: Vec<usize> = (0..rng.random_range(0..20))
                .map(|_| rng.random_range(0..=bytes.len()))
                .collect();
            splits.sort_unstable();
            assert_eq!(feed_split(bytes, &splits), Ok(true));
        }
        // Byte by byte.
        let all: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(feed_split(bytes, &all), Ok(true));
    }

    #[test]
    fn finish_rejects_a_message_that_ends_inside_a_sequence_and_resets() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed("ok ✓".as_bytes()), Ok(()));
        assert_eq!(v.finish(), Ok(()));
        assert_eq!(v.feed(&[b'a', 0xE2, 0x9C]), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // The next message starts clean: the cut-off bytes are gone.
        assert_eq!(v.feed(&[0x93]), Err(InvalidUtf8));
        v.reset();
        assert_eq!(v.feed(b"next"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn cut_off_sequence_is_incomplete_not_invalid() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[b'a', 0xF0, 0x9F]), Ok(()));
        assert!(!v.is_complete());
        assert_eq!(v.feed(&[0x8E]), Ok(()));
        assert!(!v.is_complete());
        assert_eq!(v.feed(&[0x89, b'b']), Ok(()));
        assert!(v.is_complete());
    }

    #[test]
    fn fails_as_soon_as_bytes_are_invalid() {
        let cases: &[&[u8]] = &[
            &[0xFF],
            &[0xC0],
            &[0xC1],
            &[0xF5],
            &[0xE0, 0x80],       // overlong 3-byte prefix
            &[0xED, 0xA0],       // surrogate
            &[0xF4, 0x90],       // above U+10FFFF
            &[0xF0, 0x80],       // overlong 4-byte prefix
            &[0xCE, 0x41],       // continuation expected
            &[0xE2, 0x82, 0x41], // third byte not a continuation
            &[0x80],             // lone continuation
        ];
        for case in cases {
            // Whole, and byte by byte: the error must come with the last byte.
            let mut v = Utf8Validator::default();
            assert_eq!(v.feed(case), Err(InvalidUtf8), "{case:x?}");
            let mut v = Utf8Validator::default();
            for (i, b) in case.iter().enumerate() {
                let r = v.feed(std::slice::from_ref(b));
                if i + 1 == case.len() {
                    assert_eq!(r, Err(InvalidUtf8), "{case:x?} byte {i}");
                } else {
                    assert_eq!(r, Ok(()), "{case:x?} byte {i}");
                }
            }
        }
    }

    #[test]
    fn reset_forgets_partial_sequence() {
        let mut v = Utf8Validator::default();
        v.feed(&[0xE2]).unwrap();
        v.reset();
        assert!(v.is_complete());
        assert_eq!(v.feed(b"ok"), Ok(()));
    }
}
