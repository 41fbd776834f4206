include!("../host/server/guest_build.rs");

fn main() {
    rerun_if_guest_sources_change();
    let chaos = build_guest("wsbox-test-guest-chaos");
    println!("cargo:rustc-env=WSBOX_CHAOS_WASM={}", chaos.display());
    let basic = build_guest("wsbox-test-guest-basic");
    println!("cargo:rustc-env=WSBOX_BASIC_WASM={}", basic.display());
    let pubsub = build_guest("wsbox-test-guest-pubsub");
    println!("cargo:rustc-env=WSBOX_PUBSUB_WASM={}", pubsub.display());
    // The echo example with its `hibernate` feature (the bundled one is
    // built without it), for the polyglot suite's hibernation scenario.
    let echo = build_guest_with("wsbox-example-echo", &["hibernate"]);
    println!(
        "cargo:rustc-env=WSBOX_ECHO_HIBERNATE_WASM={}",
        echo.display()
    );
    let hibernate = build_guest("wsbox-test-guest-hibernate");
    println!(
        "cargo:rustc-env=WSBOX_HIBERNATE_WASM={}",
        hibernate.display()
    );
}
