//! Heap use of permessage-deflate, measured with a counting global allocator: a
//! decompression bomb never makes the connection allocate much past the message limit,
//! connections without context takeover hold no zlib state between messages,
//! `compact_idle` shrinks an idle connection with context takeover to its two windows,
//! and `deflate_memory_estimate` is close to what is really held.
//!
//! One test function only: the counters are process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wsbox_protocol::deflate::{DeflateConfig, Negotiated};
use wsbox_protocol::{Config, Connection, Event, ProtocolError, Role};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Reset the peak to the current level and return that level.
fn start_peak() -> usize {
    let now = current();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn negotiated(no_context_takeover: bool) -> Negotiated {
    Negotiated {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        min_compress_size: 0,
        ..Negotiated::with_defaults(&DeflateConfig::default())
    }
}

fn pair_with(n: &Negotiated, max: usize) -> (Connection, Connection) {
    let config = |role| Config {
        role,
        max_message_size: max,
    };
    (
        Connection::with_deflate(config(Role::Client), Some(n.clone())),
        Connection::with_deflate(config(Role::Server), Some(n.clone())),
    )
}

fn pair(no_context_takeover: bool, max: usize) -> (Connection, Connection) {
    pair_with(&negotiated(no_context_takeover), max)
}

/// Messages both ways, each side receiving what the other sent.
fn exchange(client: &mut Connection, server: &mut Connection, text: &str) {
    client.send_text(text).expect("open");
    server.receive(&client.take_output());
    assert!(
        matches!(server.next_event(), Some(Event::Message(m)) if m.as_bytes() == text.as_bytes())
    );
    server.send_text(text).expect("open");
    client.receive(&server.take_output());
    assert!(
        matches!(client.next_event(), Some(Event::Message(m)) if m.as_bytes() == text.as_bytes())
    );
}

#[test]
fn deflate_memory() {
    // A bomb: 1 GiB of zeros would compress to ~1 MiB; 64 MiB is enough to show it.
    let max = 1024 * 1024;
    let (mut client, server) = pair(true, usize::MAX);
    client
        .send_binary(&vec![0u8; 64 * 1024 * 1024])
        .expect("open");
    let bomb = client.take_output();
    assert!(bomb.len() < 100 * 1024, "{}", bomb.len());
    drop((client, server));

    let mut server = Connection::with_deflate(
        Config {
            role: Role::Server,
            max_message_size: max,
        },
        Some(negotiated(true)),
    );
    let before = start_peak();
    server.receive(&bomb);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(matches!(
        server.next_event(),
        Some(Event::ProtocolError(ProtocolError::InflatedTooBig { .. }))
    ));
    // The output buffer grows geometrically up to the limit; while it is reallocated
    // the old half is still held (this allocator counts a realloc as alloc + free).
    // Plus the compressed frame being received and the inflater's own state.
    let bound = max + max / 2 + bomb.len() * 2 + 64 * 1024;
    assert!(peak <= bound, "peak {peak} > {bound}");
    drop(server);

    for no_context_takeover in [true, false] {
        let base = current();
        let (mut client, mut server) = pair(no_context_takeover, 1 << 20);
        let text = "some text that compresses rather well, some text ".repeat(100);
        for _ in 0..3 {
            client.send_text(&text).expect("open");
            server.receive(&client.take_output());
            assert!(matches!(server.next_event(), Some(Event::Message(_))));
            server.send_text(&text).expect("open");
            client.receive(&server.take_output());
            assert!(matches!(client.next_event(), Some(Event::Message(_))));
        }
        let held = current() - base;
        let estimate = client.deflate_memory_estimate() + server.deflate_memory_estimate();
        if no_context_takeover {
            // Idle: no zlib state, only the connections themselves.
            assert_eq!(estimate, 0);
            assert!(held < 8 * 1024, "{held}");
        } else {
            // Two compressors and two inflaters, within 25% of the estimate.
            assert!(
                held.abs_diff(estimate) < estimate / 4,
                "held {held}, estimated {estimate}"
            );
        }
    }

    // Idle connections with context takeover, before and after compact_idle.
    for bits in [15u8, 9] {
        let n = Negotiated {
            server_max_window_bits: bits,
            client_max_window_bits: bits,
            ..negotiated(false)
        };
        let text = "some text that compresses rather well, some text ".repeat(100);
        let base = current();
        let (mut client, mut server) = pair_with(&n, 1 << 20);
        let empty = current() - base;
        // 5 KB each: enough for a full 32 KiB window each way.
        for _ in 0..8 {
            exchange(&mut client, &mut server, &text);
        }
        let before = current() - base;
        client.compact_idle();
        server.compact_idle();
        let after = current() - base;
        let estimate = client.deflate_memory_estimate() + server.deflate_memory_estimate();
        // Each connection keeps one window per direction, and nothing else grew.
        let window = 1usize << bits;
        assert_eq!(estimate, 2 * 2 * window);
        assert!(after <= estimate + empty + 512, "{after}");
        assert!(before > 2 * 250 * 1024, "{before}");
        // Compacting again, or after the streams came back, holds the same.
        client.compact_idle();
        server.compact_idle();
        assert_eq!(current() - base, after);
        exchange(&mut client, &mut server, &text);
        client.compact_idle();
        server.compact_idle();
        assert_eq!(current() - base, after);
        // Printed last: captured output is allocated too.
        eprintln!(
            "window {bits}: two idle connections hold {before} bytes, {after} compacted \
             (estimate {estimate}; {empty} before any message)"
        );
    }
}
