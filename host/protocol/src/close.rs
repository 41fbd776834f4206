//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use bytes::{BufMut, BytesMut};

use crate::{CloseError, CloseFrame, ProtocolError};

/// 1000: the purpose of the connection has been fulfilled.
pub const NORMAL: u16 = 1000;
/// 1001: endpoint going away (server shutdown, page navigation).
pub const GOING_AWAY: u16 = 1001;
/// 1002: protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1003: data of a type the endpoint cannot accept.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// 1005: no status code was present. Never sent on the wire.
pub const NO_STATUS: u16 = 1005;
/// 1006: closed without a close frame. Never sent on the wire.
pub const ABNORMAL: u16 = 1006;
/// 1007: payload inconsistent with the message type (e.g. invalid UTF-8 in text).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: generic policy violation.
pub const POLICY_VIOLATION: u16 = 1008;
/// 1009: message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1010: (client) the server did not negotiate a required extension.
pub const MANDATORY_EXTENSION: u16 = 1010;
/// 1011: unexpected condition on the server.
pub const INTERNAL_ERROR: u16 = 1011;

/// Longest close reason: a control payload is at most 125 bytes, 2 of which are the code.
pub const MAX_REASON_LEN: usize = 123;

/// Whether a close frame carrying `code` is acceptable from the peer.
///
/// Valid: 1000-1003, 1007-1014 (IANA-registered), 3000-4999 (libraries/applications).
/// 1004 is reserved, 1005/1006/1015 must never appear on the wire, the rest of
/// 1016-2999 is reserved for future RFCs, and everything else is out of range.
pub fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Whether we may send `code`. Same set as for receiving: sending a code the peer
/// must reject would turn our clean close into its protocol error.
pub fn is_sendable_code(code: u16) -> bool {
    is_valid_received_code(code)
}

/// Check a close we are about to send (RFC 6455 §5.5.1, §7.4).
pub fn validate_outgoing(code: Option<u16>, reason: &str) -> Result<(), CloseError> {
    match code {
        None if !reason.is_empty() => Err(CloseError::ReasonWithoutCode),
        Some(code) if !is_sendable_code(code) => Err(CloseError::InvalidCode(code)),
        _ if reason.len() > MAX_REASON_LEN => Err(CloseError::ReasonTooLong(reason.len())),
        _ => Ok(()),
    }
}

/// Parse a received close payload. `Ok(None)` for an empty payload (status 1005).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_received_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| ProtocolError::InvalidCloseReason)?
                .to_owned();
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Append a close payload (code + reason, or nothing) to `out`. Does not validate.
pub fn encode_close_payload(out: &mut BytesMut, frame: Option<&CloseFrame>) {
    if let Some(frame) = frame {
        out.reserve(2 + frame.reason.len());
        out.put_u16(frame.code);
        out.put_slice(frame.reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_code_ranges() {
        let valid: Vec<u16> = (0..=u16::MAX)
            .filter(|&c| is_valid_received_code(c))
            .collect();
        let expected: Vec<u16> = (1000..=1003)
            .chain(1007..=1014)
            .chain(3000..=4999)
            .collect();
        assert_eq!(valid, expected);
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!is_valid_received_code(code) && !is_sendable_code(code));
        }
    }

    #[test]
    fn parse_payloads() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(
            parse_close_payload(b"\x03"),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8bye"),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            }))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn outgoing_validation() {
        assert_eq!(validate_outgoing(None, ""), Ok(()));
        assert_eq!(validate_outgoing(Some(1000), ""), Ok(()));
        assert_eq!(validate_outgoing(Some(4999), &"r".repeat(123)), Ok(()));
        assert_eq!(
            validate_outgoing(None, "why"),
            Err(CloseError::ReasonWithoutCode)
        );
        assert_eq!(
            validate_outgoing(Some(1006), ""),
            Err(CloseError::InvalidCode(1006))
        );
        assert_eq!(
            validate_outgoing(Some(1000), &"r".repeat(124)),
            Err(CloseError::ReasonTooLong(124))
        );
    }

    #[test]
    fn encode_payload() {
        let mut out = BytesMut::new();
        encode_close_payload(&mut out, None);
        assert!(out.is_empty());
        let frame = CloseFrame {
            code: 1001,
            reason: "away".into(),
        };
        encode_close_payload(&mut out, Some(&frame));
        assert_eq!(&out[..], b"\x03\xe9away");
        assert_eq!(parse_close_payload(&out), Ok(Some(frame)));
    }
}
