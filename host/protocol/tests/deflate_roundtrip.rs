//! Property: with any permessage-deflate settings, any sequence of messages, sent whole
//! or fragmented and delivered in arbitrary chunks, arrives unchanged in both
//! directions, also when one side calls `compact_idle` at random points and the other
//! never does. Uses only the public API, negotiation included.

use bytes::Bytes;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wsbox_protocol::deflate::{DeflateConfig, client_offer, negotiate_client, negotiate_server};
use wsbox_protocol::{Config, Connection, Event, Message, Role};

fn deflate_config() -> impl Strategy<Value = DeflateConfig> {
    (
        0..=9u32,
        1..=9u8,
        8..=15u8,
        8..=15u8,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0usize), 0..2000usize],
    )
        .prop_map(
            |(level, mem, server_bits, client_bits, server_nct, client_nct, min)| DeflateConfig {
                compression_level: level,
                mem_level: mem,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
                server_no_context_takeover: server_nct,
                client_no_context_takeover: client_nct,
                min_compress_size: min,
            },
        )
}

/// A message described by its kind, length, content style and how it is sent.
#[derive(Debug, Clone)]
struct Spec {
    text: bool,
    len: usize,
    seed: u64,
    /// Content drawn from this many distinct symbols: small = compressible.
    alphabet: u8,
    fragment: Option<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        prop_oneof![
            3 => 0..300usize,
            3 => 300..5000usize,
            1 => 65_000..70_000usize,
        ],
        any::<u64>(),
        prop_oneof![Just(1u8), Just(4), Just(255)],
        prop_oneof![Just(None), (1..3000usize).prop_map(Some)],
    )
        .prop_map(|(text, len, seed, alphabet, fragment)| Spec {
            text,
            len,
            seed,
            alphabet,
            fragment,
        })
}

fn build(spec: &Spec) -> Message {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    if spec.text {
        // ASCII and multi-byte characters, so fragments split code points.
        const CHARS: [char; 8] = ['a', 'b', ' ', 'é', '€', '𝄞', 'z', '\n'];
        let mut text = String::with_capacity(spec.len);
        while text.len() < spec.len {
            let pick = rng.random_range(0..usize::from(spec.alphabet).min(CHARS.len()));
            text.push(CHARS[pick]);
        }
        Message::Text(text)
    } else {
        let data: Vec<u8> = (0..spec.len)
            .map(|_| rng.random_range(0..=spec.alphabet.saturating_sub(1)))
            .collect();
        Message::Binary(Bytes::from(data))
    }
}

/// Move all of `from`'s output to `to` in chunks of `chunk` bytes, collecting events.
fn deliver(from: &mut Connection, to: &mut Connection, chunk: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while from.has_pending_output() {
        let n = from.pending_output().len().min(chunk);
        to.receive(&from.pending_output()[..n]);
        from.consume_output(n);
        events.extend(std::iter::from_fn(|| to.next_event()));
    }
    events
}

fn send(conn: &mut Connection, message: &Message, fragment: Option<usize>) {
    let result = match fragment {
        Some(size) => conn.send_fragmented(message, size),
        None => conn.send_message(message),
    };
    assert_eq!(result, Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn messages_survive_compression_both_ways(
        client_config in deflate_config(),
        server_config in deflate_config(),
        specs in proptest::collection::vec(spec(), 1..8),
        chunk in prop_oneof![1..64usize, 64..100_000usize],
    ) {
        let offer = client_offer(&client_config);
        let (server_agreed, response) = negotiate_server(&[offer], &server_config)
            .expect("our own offer is acceptable");
        let client_agreed = negotiate_client(&response, &client_config)
            .expect("our own server's answer is acceptable");
        prop_assert_eq!(server_agreed.server_max_window_bits, client_agreed.server_max_window_bits);
        prop_assert_eq!(server_agreed.client_max_window_bits, client_agreed.client_max_window_bits);
        prop_assert_eq!(
            server_agreed.server_no_context_takeover,
            client_agreed.server_no_context_takeover
        );

        let mut server =
            Connection::with_deflate(Config::new(Role::Server), Some(server_agreed));
        let mut client =
            Connection::with_deflate(Config::new(Role::Client), Some(client_agreed));
        for spec in &specs {
            let message = build(spec);
            send(&mut client, &message, spec.fragment);
            let received = deliver(&mut client, &mut server, chunk);
            prop_assert_eq!(received, vec![Event::Message(message.clone())]);
            send(&mut server, &message, spec.fragment);
            let received = deliver(&mut server, &mut client, chunk);
            prop_assert_eq!(received, vec![Event::Message(message)]);
        }
        // Interleave all messages in one direction before delivering any.
        for spec in &specs {
            send(&mut client, &build(spec), spec.fragment);
        }
        let received = deliver(&mut client, &mut server, chunk);
        let expected: Vec<Event> = specs.iter().map(|s| Event::Message(build(s))).collect();
        prop_assert_eq!(received, expected);
    }
}

/// Like `deliver`, compacting `from` and/or `to` between chunks (a no-op mid-message).
fn deliver_compacting(
    from: &mut Connection,
    to: &mut Connection,
    chunk: usize,
    compact: (bool, bool),
) -> Vec<Event> {
    let mut events = Vec::new();
    while from.has_pending_output() {
        let n = from.pending_output().len().min(chunk);
        to.receive(&from.pending_output()[..n]);
        from.consume_output(n);
        if compact.0 {
            from.compact_idle();
        }
        if compact.1 {
            to.compact_idle();
        }
        events.extend(std::iter::from_fn(|| to.next_event()));
    }
    events
}

/// Mostly context takeover, which is what compaction is about.
fn takeover_config() -> impl Strategy<Value = DeflateConfig> {
    (deflate_config(), 0..5u8).prop_map(|(config, nct)| DeflateConfig {
        server_no_context_takeover: nct == 0,
        client_no_context_takeover: nct == 1,
        ..config
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn compaction_is_invisible_to_a_peer_that_keeps_its_context(
        config in takeover_config(),
        client_compacts in any::<bool>(),
        // Per message: compact before sending, while delivering, after receiving.
        steps in proptest::collection::vec((spec(), any::<u8>()), 1..10),
        chunk in prop_oneof![1..64usize, 64..100_000usize],
    ) {
        let (server_agreed, response) = negotiate_server(&[client_offer(&config)], &config)
            .expect("our own offer is acceptable");
        let client_agreed = negotiate_client(&response, &config)
            .expect("our own server's answer is acceptable");
        let mut server =
            Connection::with_deflate(Config::new(Role::Server), Some(server_agreed));
        let mut client =
            Connection::with_deflate(Config::new(Role::Client), Some(client_agreed));
        for (spec, when) in &steps {
            let message = build(spec);
            for client_sends in [true, false] {
                let (from, to) = if client_sends {
                    (&mut client, &mut server)
                } else {
                    (&mut server, &mut client)
                };
                // Whether `from` / `to` is the side that compacts.
                let (from_compacts, to_compacts) = (client_sends == client_compacts, client_sends != client_compacts);
                let bits = if client_sends { *when } else { *when >> 3 };
                if bits & 1 != 0 {
                    if from_compacts { from.compact_idle() } else { to.compact_idle() }
                }
                send(from, &message, spec.fragment);
                let compact = (from_compacts && bits & 2 != 0, to_compacts && bits & 2 != 0);
                let received = deliver_compacting(from, to, chunk, compact);
                prop_assert_eq!(received, vec![Event::Message(message.clone())]);
                if bits & 4 != 0 {
                    if from_compacts { from.compact_idle() } else { to.compact_idle() }
                }
            }
        }
        // The compacting side, idle, keeps at most its two windows.
        let compacting = if client_compacts { &mut client } else { &mut server };
        compacting.compact_idle();
        prop_assert!(compacting.deflate_memory_estimate() <= 2 << 15);
    }
}
