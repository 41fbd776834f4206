//! A guest's stdout and stderr, routed to `tracing` line by line with the
//! connection id, instead of the host's own stdio.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept before it is logged anyway: a guest cannot make the
/// host buffer without bound by never printing a newline.
const MAX_LINE: usize = 4096;

use super::log_budget::LogBudget;

/// Reports guest log lines dropped over the rate limit, if any.
pub(crate) fn report_dropped(connection_id: u64, dropped: u64) {
    if dropped > 0 {
        tracing::warn!(
            target: "wsbox::guest",
            conn = connection_id,
            dropped,
            "guest log lines dropped: over the rate limit (log_lines_per_second)"
        );
    }
}

/// Which of the guest's streams.
#[derive(Clone, Copy, Debug)]
pub enum GuestStream {
    Stdout,
    Stderr,
}

/// The `StdoutStream` given to WASI for one instance.
#[derive(Clone)]
pub struct GuestLog {
    pub connection_id: u64,
    pub stream: GuestStream,
    /// Shared with the instance's `log` import.
    pub budget: Arc<LogBudget>,
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter::new(self.clone()))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self.clone()))
    }
}

/// Collects bytes into lines and logs each complete one.
struct LineWriter {
    target: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn new(target: GuestLog) -> LineWriter {
        LineWriter {
            target,
            line: Vec::new(),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..pos]);
            self.emit();
            bytes = &bytes[pos + 1..];
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() >= MAX_LINE {
            self.emit();
        }
    }

    fn emit(&mut self) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let id = self.target.connection_id;
        let Some(dropped) = self.target.budget.admit(self.line.len()) else {
            self.line.clear();
            return;
        };
        report_dropped(id, dropped);
        let text = String::from_utf8_lossy(&self.line);
        match self.target.stream {
            GuestStream::Stdout => {
                tracing::info!(target: "wsbox::guest", conn = id, stream = "stdout", "{text}")
            }
            GuestStream::Stderr => {
                tracing::warn!(target: "wsbox::guest", conn = id, stream = "stderr", "{text}")
            }
        }
        self.line.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
