//! What both native peers share: `[PORT]` (or env `PORT`; default 9000) on
//! 127.0.0.1, `--compress` refused (tokio-tungstenite has no
//! permessage-deflate), a "listening" line, and an accept loop that backs
//! off on errors.

use std::future::Future;
use std::process::ExitCode;

use tokio::net::{TcpListener, TcpStream};

/// Parses the arguments and serves each accepted connection with `serve`
/// on a task of its own, until the process is killed.
pub fn run<F, Fut>(name: &str, serve: F) -> ExitCode
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut port: Option<u16> = std::env::var("PORT").ok().and_then(|p| p.parse().ok());
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--compress" => {
                eprintln!("{name}: tokio-tungstenite has no permessage-deflate");
                return ExitCode::from(2);
            }
            other => match other.parse() {
                Ok(p) => port = Some(p),
                Err(_) => {
                    eprintln!("{name}: usage: {name} [PORT]");
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
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let listener = match TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: binding {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("{name} listening on {addr}");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream));
                }
                Err(e) => {
                    // EMFILE and friends: back off, keep serving the others.
                    eprintln!("{name}: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
}
