//! The end of a connection: our last frames reach the peer before the
//! socket goes away.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// How long to drain the socket after our side is finished, so that the
/// peer reads our close frame before the socket is reset.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends FIN and reads until the peer closes too (or a short timeout), so
/// our last frames are not lost to a reset.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let drain = async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 1024];
        loop {
            match tokio::io::AsyncReadExt::read(stream, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}
