//! A minimal tokio-tungstenite broadcast server with a
//! `tokio::sync::broadcast` channel: the cost floor of a conventional Rust
//! fan-out, without wasm. Every text or binary message a client sends is
//! sent to every other connected client (the protocol of
//! `wsbox bench broadcast`; the path is not looked at).
//!
//! Each connection has a reader (messages into the channel, tagged with the
//! sender) and a writer (the channel into the socket, flushed when no
//! further message is ready). The message is shared (`Bytes`), so it is
//! copied by nobody; each connection frames it itself. A connection that
//! falls more than the channel's capacity behind loses the oldest messages
//! (the channel's `Lagged`): the benchmark counts them as drops, as it
//! counts wsbox's slow-consumer skips.
//!
//! `TCP_NODELAY` is set on every connection, as in every broadcast peer.
//!
//! Usage: `native-broadcast [PORT]` (or env `PORT`; default 9000). Listens
//! on 127.0.0.1 only. tokio-tungstenite has no permessage-deflate, so
//! `--compress` is refused.

#[path = "listen.rs"]
mod listen;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// Messages a connection may fall behind before it loses some.
const CAPACITY: usize = 4096;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn main() -> ExitCode {
    let (tx, _) = broadcast::channel::<(u64, Message)>(CAPACITY);
    listen::run("native-broadcast", move |stream| serve(stream, tx.clone()))
}

async fn serve(stream: TcpStream, tx: broadcast::Sender<(u64, Message)>) {
    // Small deliveries, latency measured: no Nagle delay, as every
    // broadcast peer (wsbox's handler asks for it too).
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut rx = tx.subscribe();
    let (mut write, mut read) = ws.split();
    let reader = async {
        while let Some(Ok(msg)) = read.next().await {
            if msg.is_text() || msg.is_binary() {
                // No receivers is not an error here.
                let _ = tx.send((id, msg));
            }
        }
    };
    let writer = async {
        loop {
            let (from, msg) = match rx.recv().await {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if from != id && write.feed(msg).await.is_err() {
                return;
            }
            // Everything already waiting goes out with the same flush.
            loop {
                match rx.try_recv() {
                    Ok((from, msg)) => {
                        if from != id && write.feed(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            if write.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
}
