//! A minimal tokio-tungstenite echo server: the cost floor of a conventional
//! Rust WebSocket server, without wasm. It echoes text and binary messages
//! (tungstenite answers pings and close frames itself).
//!
//! This is the canonical tokio-tungstenite echo (`read.forward(write)`): the
//! sink is flushed only when no further message is ready, so pipelined
//! messages share write syscalls, as in wsbox's connection loop. Like wsbox
//! (whose echo handler does not ask for it), it leaves `TCP_NODELAY` off.
//!
//! Usage: `native-echo [PORT]` (or env `PORT`; default 9000). Listens on
//! 127.0.0.1 only. tokio-tungstenite has no permessage-deflate, so
//! `--compress` is refused.

#[path = "listen.rs"]
mod listen;

use std::process::ExitCode;

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::TcpStream;

fn main() -> ExitCode {
    listen::run("native-echo", serve)
}

async fn serve(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
