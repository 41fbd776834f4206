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

use std::process::ExitCode;

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};

fn main() -> ExitCode {
    let mut port: Option<u16> = std::env::var("PORT").ok().and_then(|p| p.parse().ok());
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--compress" => {
                eprintln!("native-echo: tokio-tungstenite has no permessage-deflate");
                return ExitCode::from(2);
            }
            other => match other.parse() {
                Ok(p) => port = Some(p),
                Err(_) => {
                    eprintln!("native-echo: usage: native-echo [PORT]");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let addr = format!("127.0.0.1:{}", port.unwrap_or(9000));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("native-echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let listener = match TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("native-echo: binding {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("native-echo listening on {addr}");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream));
                }
                Err(e) => {
                    // EMFILE and friends: back off, keep serving the others.
                    eprintln!("native-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
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
