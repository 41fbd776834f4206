include!("guest_build.rs");

fn main() {
    rerun_if_guest_sources_change();
    // The bundled demo that `wsbox serve` runs with no config.
    let echo = build_guest("wsbox-example-echo");
    println!("cargo:rustc-env=WSBOX_BUNDLED_ECHO_WASM={}", echo.display());
    let chat = build_guest("wsbox-example-chat");
    println!("cargo:rustc-env=WSBOX_BUNDLED_CHAT_WASM={}", chat.display());
    // The broadcast benchmark handler (`wsbox bench broadcast`, bench/run.sh).
    let broadcast = build_guest("wsbox-example-broadcast");
    println!(
        "cargo:rustc-env=WSBOX_BUNDLED_BROADCAST_WASM={}",
        broadcast.display()
    );
}
