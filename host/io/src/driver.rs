//! The socket side of a protocol engine, shared by the server's connection
//! tasks, the client and the load generator: one poll that writes the
//! engine's queued output (several buffers per system call) or reads into
//! it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsbox_protocol::Connection;

/// Buffers handed to one vectored write: enough for a burst of shared
/// frames, few enough to live on the stack.
const MAX_BUFFERS: usize = 64;

/// Writes what the transport takes now of `engine`'s pending output, in one
/// vectored write when the transport supports it; `Ok(n)` bytes were written
/// (the caller consumes them). `Ok(0)` with output pending means the
/// transport was closed; with nothing pending it is not called.
pub fn poll_write_output<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    cx: &mut Context<'_>,
    engine: &Connection,
) -> Poll<io::Result<usize>> {
    let front = engine.pending_output();
    if front.len() == engine.pending_output_len() || !stream.is_write_vectored() {
        return Pin::new(stream).poll_write(cx, front);
    }
    let mut buffers = [IoSlice::new(&[]); MAX_BUFFERS];
    let n = engine.pending_output_vectored(&mut buffers);
    match n {
        0 => Poll::Ready(Ok(0)),
        1 => Pin::new(stream).poll_write(cx, &buffers[0]),
        _ => Pin::new(stream).poll_write_vectored(cx, &buffers[..n]),
    }
}

/// What one [`poll_socket`] did.
#[derive(Debug)]
pub enum SocketIo {
    /// Wrote this many bytes of the engine's output (consumed already).
    Wrote(usize),
    /// Read this many bytes and fed them to the engine.
    Read(usize),
    /// The peer closed its side, or the socket takes no more bytes.
    Eof,
    Failed(io::Error),
}

/// One step of a connection's socket I/O: writes the engine's pending output
/// if there is some and the socket takes it now; otherwise, given a
/// `read_buf`, reads into it and feeds the engine. Pending when neither can
/// progress (the waker is registered for both).
pub fn poll_socket<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    cx: &mut Context<'_>,
    engine: &mut Connection,
    read_buf: Option<&mut [u8]>,
) -> Poll<SocketIo> {
    if engine.has_pending_output() {
        match poll_write_output(stream, cx, engine) {
            Poll::Ready(Ok(0)) => return Poll::Ready(SocketIo::Eof),
            Poll::Ready(Ok(n)) => {
                engine.consume_output(n);
                return Poll::Ready(SocketIo::Wrote(n));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(SocketIo::Failed(e)),
            Poll::Pending => {}
        }
    }
    let Some(read_buf) = read_buf else {
        return Poll::Pending;
    };
    let mut buf = ReadBuf::new(read_buf);
    match Pin::new(stream).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(SocketIo::Eof),
        Poll::Ready(Ok(())) => {
            engine.receive(buf.filled());
            Poll::Ready(SocketIo::Read(buf.filled().len()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(SocketIo::Failed(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Writes all of `engine`'s pending output, consuming it as it goes; stops at
/// the first error or a closed transport.
pub async fn write_all_output<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    engine: &mut Connection,
) -> io::Result<()> {
    while engine.has_pending_output() {
        let n = std::future::poll_fn(|cx| poll_write_output(stream, cx, engine)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        engine.consume_output(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use wsbox_protocol::{Config, Message};

    #[tokio::test]
    async fn queued_frames_arrive_whole_and_in_order_over_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            socket.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut engine = Connection::new(Config::default());
        let big = Bytes::from(vec![b'b'; 300_000]);
        let mut expected = Vec::new();
        for i in 0..200u32 {
            if i % 3 == 0 {
                engine.send_owned(Message::Binary(big.clone())).unwrap();
                expected.extend_from_slice(&[0x82, 127, 0, 0, 0, 0, 0, 4, 0x93, 0xe0]);
                expected.extend_from_slice(&big);
            } else {
                let text = format!("message {i}");
                engine.send_text(&text).unwrap();
                expected.extend_from_slice(&[0x81, text.len() as u8]);
                expected.extend_from_slice(text.as_bytes());
            }
        }
        assert!(stream.is_write_vectored());
        write_all_output(&mut stream, &mut engine).await.unwrap();
        assert!(!engine.has_pending_output());
        drop(stream);
        let wire = reader.await.unwrap();
        assert_eq!(wire.len(), expected.len());
        assert!(wire == expected, "the bytes differ");
    }
}
