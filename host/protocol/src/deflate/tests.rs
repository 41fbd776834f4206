use super::*;

use DeflateNegotiationError as E;

fn offers(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn server(list: &[&str]) -> Option<(Negotiated, String)> {
    negotiate_server(&offers(list), &DeflateConfig::default())
}

fn response(list: &[&str]) -> Option<String> {
    server(list).map(|(_, r)| r)
}

#[test]
fn default_config() {
    let c = DeflateConfig::default();
    assert_eq!((c.compression_level, c.mem_level), (6, 8));
    assert_eq!(
        (c.server_max_window_bits, c.client_max_window_bits),
        (15, 15)
    );
    assert!(!c.server_no_context_takeover && !c.client_no_context_takeover);
    assert_eq!(c.min_compress_size, 256);
}

#[test]
fn server_accepts_good_offers() {
    let cases: &[(&str, &str)] = &[
        ("permessage-deflate", "permessage-deflate"),
        ("Permessage-Deflate", "permessage-deflate"),
        // Without a value: the client allows a limit; ours is 15, so none is sent.
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
        ),
        (
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; client_max_window_bits=\"10\"",
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            "permessage-deflate;server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            "permessage-deflate; server_max_window_bits = \"8\"",
            "permessage-deflate; server_max_window_bits=8",
        ),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            "permessage-deflate; CLIENT_NO_CONTEXT_TAKEOVER",
            "permessage-deflate; client_no_context_takeover",
        ),
        (
            "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15; client_max_window_bits=15",
        ),
    ];
    for (offer, expected) in cases {
        assert_eq!(response(&[offer]).as_deref(), Some(*expected), "{offer}");
    }
}

#[test]
fn negotiated_parameters_follow_the_response() {
    let (n, _) = server(&[
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
    ])
    .unwrap();
    assert!(n.server_no_context_takeover && !n.client_no_context_takeover);
    assert_eq!(
        (n.server_max_window_bits, n.client_max_window_bits),
        (10, 12)
    );
    assert_eq!(
        (n.compression_level, n.mem_level, n.min_compress_size),
        (6, 8, 256)
    );
}

#[test]
fn server_declines_bad_offers() {
    for offer in [
        "x-webkit-deflate-frame",
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; Server_Max_Window_Bits=11",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=9a",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=256",
        "permessage-deflate; client_max_window_bits=\"1 0\"",
        "permessage-deflate; client_max_window_bits=\"10",
        "permessage-deflate; client_max_window_bits=\"10\"x",
        "permessage-deflate;",
        "permessage-deflate; ; client_max_window_bits",
        "permessage deflate",
        "",
    ] {
        assert_eq!(response(&[offer]), None, "{offer:?}");
    }
}

#[test]
fn first_acceptable_of_several_offers_wins() {
    let r = response(&[
        "permessage-deflate; server_max_window_bits=20",
        "foo",
        "permessage-deflate; client_max_window_bits=9",
        "permessage-deflate",
    ]);
    assert_eq!(
        r.as_deref(),
        Some("permessage-deflate; client_max_window_bits=9")
    );
    assert_eq!(server(&[]), None);
}

#[test]
fn offers_split_by_the_handshake_parser() {
    let mut headers = http::HeaderMap::new();
    headers.append(
        "sec-websocket-extensions",
        http::HeaderValue::from_static(
            "permessage-deflate; client_max_window_bits=\"x,y\", permessage-deflate; client_max_window_bits=\"11\"",
        ),
    );
    let list = crate::handshake::parse_extension_list(&headers, "sec-websocket-extensions");
    let (n, r) = negotiate_server(&list, &DeflateConfig::default()).unwrap();
    assert_eq!(r, "permessage-deflate; client_max_window_bits=11");
    assert_eq!(n.client_max_window_bits, 11);
}

#[test]
fn server_config_shapes_the_response() {
    let config = DeflateConfig {
        server_max_window_bits: 12,
        client_max_window_bits: 10,
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let run = |offer: &str| negotiate_server(&offers(&[offer]), &config).unwrap();
    // Our limits and resets are announced even when not asked for; a client window
    // limit only if the client said it supports one.
    let (n, r) = run("permessage-deflate");
    assert_eq!(
        r,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"
    );
    assert_eq!(
        (n.server_max_window_bits, n.client_max_window_bits),
        (12, 15)
    );
    let (n, r) = run("permessage-deflate; client_max_window_bits");
    assert!(r.ends_with("server_max_window_bits=12; client_max_window_bits=10"));
    assert_eq!(n.client_max_window_bits, 10);
    // The smaller of the client's request and our own limit.
    let (n, r) = run("permessage-deflate; server_max_window_bits=9; client_max_window_bits=14");
    assert!(r.ends_with("server_max_window_bits=9; client_max_window_bits=10"));
    assert_eq!(
        (n.server_max_window_bits, n.client_max_window_bits),
        (9, 10)
    );
    let (n, _) = run("permessage-deflate; server_max_window_bits=14; client_max_window_bits=9");
    assert_eq!(
        (n.server_max_window_bits, n.client_max_window_bits),
        (12, 9)
    );
}

#[test]
fn out_of_range_config_is_clamped() {
    let config = DeflateConfig {
        compression_level: 42,
        mem_level: 0,
        server_max_window_bits: 3,
        client_max_window_bits: 99,
        ..DeflateConfig::default()
    };
    let (n, r) = negotiate_server(&offers(&["permessage-deflate"]), &config).unwrap();
    assert_eq!(r, "permessage-deflate; server_max_window_bits=8");
    assert_eq!((n.compression_level, n.mem_level), (9, 1));
    assert_eq!(
        client_offer(&config),
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
    );
}

// ----- client side -----

#[test]
fn client_offers() {
    assert_eq!(
        client_offer(&DeflateConfig::default()),
        "permessage-deflate; client_max_window_bits"
    );
    let config = DeflateConfig {
        server_max_window_bits: 10,
        client_max_window_bits: 11,
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let offer = client_offer(&config);
    assert_eq!(
        offer,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
    );
    // Our own offer is acceptable to our own server, with the same parameters.
    let (n, r) = negotiate_server(&[offer], &DeflateConfig::default()).unwrap();
    let agreed = negotiate_client(&r, &config).unwrap();
    assert_eq!(
        (
            agreed.server_no_context_takeover,
            agreed.client_no_context_takeover,
            agreed.server_max_window_bits,
            agreed.client_max_window_bits
        ),
        (
            n.server_no_context_takeover,
            n.client_no_context_takeover,
            n.server_max_window_bits,
            n.client_max_window_bits
        )
    );
    assert_eq!(
        (agreed.server_max_window_bits, agreed.client_max_window_bits),
        (10, 11)
    );
}

#[test]
fn client_accepts_valid_responses() {
    let c = DeflateConfig::default();
    let n = negotiate_client("permessage-deflate", &c).unwrap();
    assert_eq!(
        (n.server_max_window_bits, n.client_max_window_bits),
        (15, 15)
    );
    assert!(!n.server_no_context_takeover && !n.client_no_context_takeover);
    let n = negotiate_client(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=\"9\"; client_max_window_bits=8",
        &c,
    )
    .unwrap();
    assert!(n.server_no_context_takeover && n.client_no_context_takeover);
    assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (9, 8));
    // Our own client_no_context_takeover holds without the server repeating it.
    let c = DeflateConfig {
        client_no_context_takeover: true,
        client_max_window_bits: 12,
        ..DeflateConfig::default()
    };
    let n = negotiate_client("permessage-deflate", &c).unwrap();
    assert!(n.client_no_context_takeover);
    assert_eq!(n.client_max_window_bits, 12);
}

#[test]
fn client_rejects_bad_responses() {
    let c = DeflateConfig::default();
    let cases: &[(&str, E)] = &[
        ("", E::Malformed),
        ("permessage-deflate; x=\"", E::Malformed),
        ("permessage-deflate;", E::Malformed),
        ("foo", E::UnofferedExtension("foo".into())),
        (
            "permessage-deflate, foo",
            E::UnofferedExtension("foo".into()),
        ),
        ("permessage-deflate, permessage-deflate", E::Duplicated),
        (
            "permessage-deflate; mystery",
            E::UnknownParameter("mystery".into()),
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            E::DuplicateParameter(SERVER_NO_CONTEXT_TAKEOVER),
        ),
        (
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
            E::DuplicateParameter(CLIENT_MAX_WINDOW_BITS),
        ),
        (
            "permessage-deflate; client_no_context_takeover=yes",
            E::InvalidValue(CLIENT_NO_CONTEXT_TAKEOVER),
        ),
        (
            "permessage-deflate; server_max_window_bits",
            E::InvalidValue(SERVER_MAX_WINDOW_BITS),
        ),
        (
            "permessage-deflate; server_max_window_bits=16",
            E::InvalidValue(SERVER_MAX_WINDOW_BITS),
        ),
        (
            "permessage-deflate; client_max_window_bits",
            E::InvalidValue(CLIENT_MAX_WINDOW_BITS),
        ),
        (
            "permessage-deflate; client_max_window_bits=7",
            E::InvalidValue(CLIENT_MAX_WINDOW_BITS),
        ),
    ];
    for (value, error) in cases {
        assert_eq!(
            negotiate_client(value, &c).as_ref(),
            Err(error),
            "{value:?}"
        );
    }
}

#[test]
fn client_holds_the_server_to_its_requests() {
    let c = DeflateConfig {
        server_max_window_bits: 10,
        client_max_window_bits: 11,
        server_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let full = "permessage-deflate; server_no_context_takeover; server_max_window_bits=10";
    assert!(negotiate_client(full, &c).is_ok());
    let cases: &[(&str, E)] = &[
        (
            "permessage-deflate; server_max_window_bits=10",
            E::MissingParameter(SERVER_NO_CONTEXT_TAKEOVER),
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            E::MissingParameter(SERVER_MAX_WINDOW_BITS),
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            E::WindowTooLarge(SERVER_MAX_WINDOW_BITS),
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
            E::WindowTooLarge(CLIENT_MAX_WINDOW_BITS),
        ),
    ];
    for (value, error) in cases {
        assert_eq!(
            negotiate_client(value, &c).as_ref(),
            Err(error),
            "{value:?}"
        );
    }
}

#[test]
fn client_response_list() {
    let c = DeflateConfig::default();
    assert_eq!(negotiate_client_response(&[], &c), Ok(None));
    let n = negotiate_client_response(
        &offers(&["permessage-deflate; server_max_window_bits=9"]),
        &c,
    )
    .unwrap()
    .unwrap();
    assert_eq!(n.server_max_window_bits, 9);
    assert_eq!(
        negotiate_client_response(&offers(&["permessage-deflate", "permessage-deflate"]), &c),
        Err(E::Duplicated)
    );
    assert_eq!(
        negotiate_client_response(&offers(&["bar; x=\"ab\""]), &c),
        Err(E::UnofferedExtension("bar".into()))
    );
}

#[test]
fn syntax_helpers() {
    assert_eq!(
        split_unquoted("a; b=\"x;y\"; c", b';'),
        Some(vec!["a", "b=\"x;y\"", "c"])
    );
    assert_eq!(split_unquoted("a=\"\\\"\"", b';'), Some(vec!["a=\"\\\"\""]));
    assert_eq!(split_unquoted("a=\"", b';'), None);
    assert_eq!(parse_value("\"1\\0\""), Some("10".into()));
    assert_eq!(parse_value("\"\""), None);
    assert_eq!(parse_value("a b"), None);
    assert_eq!(parse_window_bits("15"), Some(15));
    assert_eq!(parse_window_bits("8"), Some(8));
    for bad in ["", "7", "16", "015", "1.0", "-9", "99999999999999999999"] {
        assert_eq!(parse_window_bits(bad), None, "{bad}");
    }
    assert!(is_token("permessage-deflate") && !is_token("a\"b") && !is_token("é"));
}

#[test]
fn full_handshake_then_compressed_messages() {
    use crate::handshake;
    use crate::{Config, Connection, Event, Message, Role};
    use http::{Method, StatusCode, Version};

    let client_config = DeflateConfig {
        client_no_context_takeover: true,
        min_compress_size: 0,
        ..DeflateConfig::default()
    };
    let server_config = DeflateConfig {
        server_max_window_bits: 11,
        min_compress_size: 0,
        ..DeflateConfig::default()
    };
    let key = handshake::generate_key();
    let request =
        handshake::client_request_headers("h", &key, &[], Some(&client_offer(&client_config)))
            .unwrap();
    let info = handshake::validate_request(&Method::GET, Version::HTTP_11, &request).unwrap();
    let (server_agreed, value) = negotiate_server(&info.extensions, &server_config).unwrap();
    assert_eq!(
        value,
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"
    );
    let response = handshake::response_headers(&info.accept, None, Some(&value)).unwrap();
    let answer =
        handshake::validate_response(StatusCode::SWITCHING_PROTOCOLS, &response, &key, &[])
            .unwrap();
    let client_agreed = negotiate_client_response(&answer.extensions, &client_config)
        .unwrap()
        .unwrap();
    assert_eq!(client_agreed.server_max_window_bits, 11);
    assert!(client_agreed.client_no_context_takeover);

    let mut server = Connection::with_deflate(Config::new(Role::Server), Some(server_agreed));
    let mut client = Connection::with_deflate(Config::new(Role::Client), Some(client_agreed));
    // Only the server's compressor (context kept) stays between messages.
    let mut compressor_memory = 0;
    for text in ["one", "two two", "one"] {
        client.send_text(text).unwrap();
        server.receive(&client.take_output());
        assert_eq!(
            server.next_event(),
            Some(Event::Message(Message::Text(text.into())))
        );
        // The client resets, so the server drops its inflater after each message.
        assert_eq!(server.deflate_memory_estimate(), compressor_memory);
        server.send_text(text).unwrap();
        compressor_memory = server.deflate_memory_estimate();
        assert!(compressor_memory > 0);
        client.receive(&server.take_output());
        assert_eq!(
            client.next_event(),
            Some(Event::Message(Message::Text(text.into())))
        );
    }
}
