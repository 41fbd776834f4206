//! Arbitrary bytes read as HTTP header lines, then run through both sides of the
//! opening handshake and the permessage-deflate negotiation.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use libfuzzer_sys::fuzz_target;
use wsbox_protocol::deflate::{
    self, DeflateConfig, client_offer, negotiate_client, negotiate_client_response,
    negotiate_server,
};
use wsbox_protocol::handshake;

#[path = "common.rs"]
mod common;
use common::Reader;

fn config(r: &mut Reader) -> DeflateConfig {
    let flags = r.byte();
    DeflateConfig {
        compression_level: u32::from(r.byte() % 12),
        mem_level: r.byte() % 11,
        // Beyond 8..=15 now and then: the config is clamped, never trusted.
        server_max_window_bits: r.byte() % 18,
        client_max_window_bits: r.byte() % 18,
        server_no_context_takeover: flags & 1 != 0,
        client_no_context_takeover: flags & 2 != 0,
        min_compress_size: usize::from(r.byte()),
    }
}

fn headers(text: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let server_config = config(&mut r);
    let client_config = config(&mut r);
    let headers = headers(r.data);

    // Our own offer, whatever the settings, is accepted by our own server, and the
    // server's answer by our own client, with the same parameters on both sides.
    let offer = client_offer(&client_config);
    let (agreed, answer) =
        negotiate_server(std::slice::from_ref(&offer), &server_config).expect("own offer");
    let client = negotiate_client(&answer, &client_config).expect("own answer");
    assert_eq!(agreed.server_max_window_bits, client.server_max_window_bits);
    assert_eq!(agreed.client_max_window_bits, client.client_max_window_bits);
    assert_eq!(
        agreed.server_no_context_takeover,
        client.server_no_context_takeover
    );
    assert!(client.client_no_context_takeover || !agreed.client_no_context_takeover);

    if let Ok(info) = handshake::validate_request(&Method::GET, Version::HTTP_11, &headers)
        && let Some((agreed, answer)) = negotiate_server(&info.extensions, &server_config)
    {
        // Any answer we give is a valid header and acceptable to a client that
        // offered plain permessage-deflate with client_max_window_bits.
        assert!(handshake::response_headers(&info.accept, None, Some(&answer)).is_ok());
        let client = negotiate_client(&answer, &DeflateConfig::default())
            .unwrap_or_else(|e| panic!("{answer:?}: {e}"));
        assert_eq!(agreed.server_max_window_bits, client.server_max_window_bits);
        assert_eq!(agreed.client_max_window_bits, client.client_max_window_bits);
        assert!((8..=15).contains(&agreed.server_max_window_bits));
        assert!((8..=15).contains(&agreed.client_max_window_bits));
    }
    let extensions = handshake::parse_extension_list(&headers, "sec-websocket-extensions");
    let _ = negotiate_server(&extensions, &server_config);
    let _ = negotiate_client_response(&extensions, &client_config);
    for value in headers.get_all("sec-websocket-extensions") {
        if let Ok(value) = value.to_str() {
            let _ = negotiate_client(value, &client_config);
        }
    }
    let key = headers
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .unwrap_or("dGhlIHNhbXBsZSBub25jZQ==");
    let offered = handshake::parse_header_list(&headers, "x-offered");
    if let Ok(info) =
        handshake::validate_response(StatusCode::SWITCHING_PROTOCOLS, &headers, key, &offered)
    {
        let _ = deflate::negotiate_client_response(&info.extensions, &client_config);
    }
});
