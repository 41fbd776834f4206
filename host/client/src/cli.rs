//! `wsbox connect URL`: an interactive WebSocket client in the spirit of
//! websocat. Lines from stdin are sent as text messages; messages from the
//! server are printed to stdout, one per line (text as is, binary as hex or
//! base64).
//!
//! At EOF on stdin the client closes with 1000 after the server answered a
//! last ping (so that replies to the last lines are printed), and exits 0
//! once the close handshake is over. The exit status is non-zero, with the
//! close code and reason on stderr, when the connection ends abnormally: a
//! close code other than 1000/1001 (or none), a lost connection, a ping
//! timeout or a protocol error.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{ClientOptions, CloseCause, CloseInfo, Message, WriteError, connect};
use wsbox_protocol::deflate::DeflateConfig;

/// How long the EOF ping may wait for its pong before the client closes anyway.
const EOF_PING_WAIT: Duration = Duration::from_secs(5);

/// Arguments of `wsbox connect`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The server: `ws://HOST[:PORT]/PATH` or `wss://...`
    pub url: String,
    /// An extra request header, `'Name: value'` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Offer this subprotocol (repeatable, in order of preference).
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,
    /// Offer permessage-deflate compression.
    #[arg(long)]
    pub compress: bool,
    /// Send a keepalive ping every SECS seconds (e.g. 20, 0.5, 500ms).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Close with 1011 when a keepalive ping is unanswered this long
    /// (default: the ping interval; needs --ping-interval).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub ping_timeout: Option<Duration>,
    /// Largest message accepted (e.g. 10MiB); larger ones close with 1009.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "10MiB")]
    pub max_message_size: u64,
    /// Trust the CA certificate(s) in this PEM file for wss:// (e.g. the
    /// certificate of `wsbox cert --dev`).
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// How long connecting and the upgrade may take.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "20")]
    pub connect_timeout: Duration,
    /// Print binary messages as base64 instead of hex.
    #[arg(long)]
    pub base64: bool,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("`{text}` is not a header like 'Name: value'")),
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    wsbox_io::units::parse_size_text(text)
}

/// Seconds (`20`, `0.5`) or a number with a unit (`500ms`, `10s`, `2m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    wsbox_io::units::parse_duration_text(text)
}

impl ConnectArgs {
    fn options(&self) -> anyhow::Result<ClientOptions> {
        Ok(ClientOptions {
            connect_timeout: self.connect_timeout,
            compression: self.compress.then(DeflateConfig::default),
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            max_message_size: usize::try_from(self.max_message_size)
                .context("--max-message-size is too large for this machine")?,
            subprotocols: self.subprotocols.clone(),
            headers: self.headers.clone(),
            ca_file: self.ca.clone(),
            ..ClientOptions::default()
        })
    }
}

/// Runs `wsbox connect`. `Err` (exit status 1) when connecting fails or the
/// connection ends abnormally.
pub fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let options = args.options()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(session(&args.url, options, args.base64));
    // A blocking read of stdin may still be under way: don't wait for it.
    rt.shutdown_background();
    result
}

async fn session(url: &str, options: ClientOptions, base64: bool) -> anyhow::Result<()> {
    let mut client = connect(url, options)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut connected = format!("connected to {url}");
    if let Some(protocol) = client.selected_subprotocol() {
        connected.push_str(&format!(" (subprotocol {protocol})"));
    }
    if let Some(extensions) = client.extensions() {
        connected.push_str(&format!(" (extensions: {extensions})"));
    }
    eprintln!("{connected}");

    let writer = client.handle();
    let stdin_task = tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin());
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = tokio::select! {
                read = stdin.read_until(b'\n', &mut line) => read,
                _ = writer.closed() => return,
                _ = tokio::signal::ctrl_c() => {
                    let _ = writer.close(Some(1000), "");
                    return;
                }
            };
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("wsbox: reading stdin: {e}");
                    break;
                }
            }
            if line.ends_with(b"\n") {
                line.pop();
                if line.ends_with(b"\r") {
                    line.pop();
                }
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                eprintln!("wsbox: skipped a line of stdin that is not UTF-8");
                continue;
            };
            match writer.write_text(text).await {
                Ok(()) => {}
                Err(WriteError::Closed) => return,
                Err(e) => {
                    eprintln!("wsbox: {e}");
                    return;
                }
            }
        }
        // EOF. Our close would make the server's later frames unwelcome, so
        // first let a ping make the round trip: a server that answers in
        // order has sent its replies to our lines by the time it pongs.
        let _ = tokio::time::timeout(EOF_PING_WAIT, writer.ping_roundtrip(b"wsbox-eof")).await;
        let _ = writer.close(Some(1000), "");
    });

    let mut stdout = std::io::stdout();
    let mut output_error = None;
    while let Some(message) = client.read_message().await {
        let written = print_message(&mut stdout, &message, base64);
        if let Err(e) = written {
            output_error = Some(e);
            let _ = client.close(Some(1001), "");
            break;
        }
    }
    let info = client.closed().await;
    stdin_task.abort();
    match output_error {
        // The reader went away (`wsbox connect ... | head`): not our failure.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Some(e) => return Err(e).context("writing to stdout"),
        None => {}
    }
    if info.is_normal() {
        Ok(())
    } else {
        bail!("{}", describe(&info))
    }
}

fn print_message(out: &mut impl Write, message: &Message, base64: bool) -> std::io::Result<()> {
    match message {
        Message::Text(text) => out.write_all(text.as_bytes())?,
        Message::Binary(data) if base64 => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(data);
            out.write_all(encoded.as_bytes())?;
        }
        Message::Binary(data) => {
            let mut hex = String::with_capacity(data.len() * 2);
            for byte in data.iter() {
                hex.push_str(&format!("{byte:02x}"));
            }
            out.write_all(hex.as_bytes())?;
        }
    }
    out.write_all(b"\n")?;
    out.flush()
}

/// One line on how the connection ended, for stderr.
pub fn describe(info: &CloseInfo) -> String {
    let server = match info.code {
        Some(code) if info.reason.is_empty() => format!("close code {code}"),
        Some(code) => format!("close code {code}, reason {:?}", info.reason),
        None => "no close code".to_owned(),
    };
    match &info.cause {
        CloseCause::ServerClosed => format!("connection closed by the server: {server}"),
        CloseCause::ClientClosed => format!("connection closed: server answered with {server}"),
        cause => {
            let sent = match &info.sent {
                Some(frame) if frame.reason.is_empty() => {
                    format!(" (we closed with {})", frame.code)
                }
                Some(frame) => format!(" (we closed with {} {:?})", frame.code, frame.reason),
                None => String::new(),
            };
            format!("connection closed abnormally: {cause}{sent}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_headers() {
        assert_eq!(parse_duration("20").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(
            parse_header("X-Token:  abc ").unwrap(),
            ("X-Token".to_owned(), "abc".to_owned())
        );
        assert_eq!(
            parse_header("Cookie: a=b:c").unwrap(),
            ("Cookie".to_owned(), "a=b:c".to_owned())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": empty name").is_err());
    }

    #[test]
    fn binary_is_hex_or_base64() {
        let message = Message::Binary(bytes::Bytes::from_static(&[0, 1, 0xab, 0xff]));
        let mut out = Vec::new();
        print_message(&mut out, &message, false).unwrap();
        assert_eq!(out, b"0001abff\n");
        out.clear();
        print_message(&mut out, &message, true).unwrap();
        assert_eq!(out, b"AAGr/w==\n");
        out.clear();
        print_message(&mut out, &Message::Text("héllo".into()), false).unwrap();
        assert_eq!(out, "héllo\n".as_bytes());
    }

    #[test]
    fn close_descriptions() {
        let info = CloseInfo {
            code: Some(4000),
            reason: "bye".into(),
            sent: None,
            cause: CloseCause::ServerClosed,
        };
        assert!(!info.is_normal());
        assert_eq!(
            describe(&info),
            "connection closed by the server: close code 4000, reason \"bye\""
        );
        let info = CloseInfo {
            code: None,
            reason: String::new(),
            sent: Some(wsbox_protocol::CloseFrame {
                code: 1011,
                reason: "keepalive ping timeout".into(),
            }),
            cause: CloseCause::PingTimeout,
        };
        assert!(!info.is_normal());
        assert_eq!(
            describe(&info),
            "connection closed abnormally: keepalive ping timeout (we closed with 1011 \"keepalive ping timeout\")"
        );
    }
}
