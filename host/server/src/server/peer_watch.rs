//! Watching the socket while a handler call runs: a call still running
//! when its peer goes away (EOF, reset) is cancelled, which drops the
//! instance and frees its slot at once instead of at the end of its time.
//!
//! A call that finishes when first polled (the usual case) never touches
//! the socket. One that yields (an epoch tick, a WASI wait) has the socket
//! read meanwhile; what arrives is kept, up to [`READ_AHEAD_LIMIT`], for
//! the engine after the call, so no byte is lost and a flooding peer gets
//! backpressure beyond the limit.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

use wsbox_runtime::CallError;

/// The most bytes read ahead during one call.
const READ_AHEAD_LIMIT: usize = 64 * 1024;

/// What was read while calls ran, and whether the peer is gone.
#[derive(Debug, Default)]
pub(super) struct PeerWatch {
    /// Bytes for the engine, in order.
    pub ahead: Vec<u8>,
    /// The socket reached EOF or failed during a call.
    pub gone: bool,
}

impl PeerWatch {
    /// Runs `call`, cancelling it with [`CallError::PeerGone`] if the peer
    /// goes away first. `count_in` is told of every byte read.
    pub async fn run<S, F>(
        &mut self,
        stream: &mut S,
        count_in: impl Fn(usize),
        call: F,
    ) -> Result<(), CallError>
    where
        S: AsyncRead + Unpin,
        F: Future<Output = Result<(), CallError>>,
    {
        let mut call = std::pin::pin!(call);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = call.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if self.gone {
                return Poll::Ready(Err(CallError::PeerGone));
            }
            let mut scratch = [0u8; 4096];
            while self.ahead.len() < READ_AHEAD_LIMIT {
                let mut buf = ReadBuf::new(&mut scratch);
                match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        self.gone = true;
                        return Poll::Ready(Err(CallError::PeerGone));
                    }
                    Poll::Ready(Ok(())) => {
                        count_in(buf.filled().len());
                        self.ahead.extend_from_slice(buf.filled());
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "socket error during a handler call");
                        self.gone = true;
                        return Poll::Ready(Err(CallError::PeerGone));
                    }
                    Poll::Pending => break,
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_call_that_returns_at_once_reads_nothing() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        theirs.write_all(b"later").await.unwrap();
        let mut watch = PeerWatch::default();
        let r = watch.run(&mut ours, |_| {}, async { Ok(()) }).await;
        assert!(r.is_ok());
        assert!(watch.ahead.is_empty() && !watch.gone);
    }

    #[tokio::test]
    async fn bytes_that_arrive_during_a_call_are_kept_and_eof_cancels_it() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let mut watch = PeerWatch::default();
        let counted = Cell::new(0);
        let peer = async move {
            theirs.write_all(b"abc").await.unwrap();
            tokio::task::yield_now().await;
            drop(theirs);
        };
        let (r, ()) = tokio::join!(
            watch.run(
                &mut ours,
                |n| counted.set(counted.get() + n),
                std::future::pending()
            ),
            peer
        );
        assert!(matches!(r, Err(CallError::PeerGone)), "{r:?}");
        assert_eq!(watch.ahead, b"abc");
        assert_eq!(counted.get(), 3);
        assert!(watch.gone);
    }

    #[tokio::test]
    async fn reading_ahead_stops_at_its_limit() {
        let (mut ours, mut theirs) = tokio::io::duplex(READ_AHEAD_LIMIT * 2);
        theirs
            .write_all(&vec![7u8; READ_AHEAD_LIMIT + 10_000])
            .await
            .unwrap();
        drop(theirs);
        let mut watch = PeerWatch::default();
        let call = async {
            tokio::task::yield_now().await;
            Ok(())
        };
        let r = watch.run(&mut ours, |_| {}, call).await;
        assert!(r.is_ok(), "over the limit the EOF is not seen: {r:?}");
        assert!(watch.ahead.len() >= READ_AHEAD_LIMIT && !watch.gone);
    }
}
