//! Property: with any permessage-deflate settings, any sequence of messages, sent whole
//! or fragmented and delivered in arbitrary chunks, arrives unchanged in both
//! directions. Uses only the public API, negotiation included.

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
