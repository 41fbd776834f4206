//! Components compiled into the `wsbox` binary.

/// The echo example (`examples/echo`), built for wasm32-wasip2 by the build
/// script: what `wsbox serve` runs when given no config.
pub const ECHO_WASM: &[u8] = include_bytes!(env!("WSBOX_BUNDLED_ECHO_WASM"));

/// The chat example (`examples/chat`), served at `/chat/<room>` with no
/// config.
pub const CHAT_WASM: &[u8] = include_bytes!(env!("WSBOX_BUNDLED_CHAT_WASM"));

/// The broadcast benchmark handler (`examples/broadcast`): every message
/// a client sends goes to every other client of its route. Not in the
/// default demo; `bench/broadcast.toml` serves it (from the wasm file) and
/// the bench's end-to-end test embeds it.
pub const BROADCAST_WASM: &[u8] = include_bytes!(env!("WSBOX_BUNDLED_BROADCAST_WASM"));

/// The echo demo's web page (`examples/echo/index.html`), served at
/// `/echo.html` with no config: it talks to the echo routes from the same
/// origin.
pub const ECHO_PAGE: &str = include_str!("../../../examples/echo/index.html");

/// The chat demo's web page (`examples/chat/index.html`), served at `/`
/// with no config.
pub const CHAT_PAGE: &str = include_str!("../../../examples/chat/index.html");
