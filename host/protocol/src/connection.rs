//! The sans-IO connection: feed it received bytes, take events and bytes to write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::close;
use crate::deflate::Negotiated;
use crate::deflate::codec::{InflateError, PerMessageDeflate};
use crate::frame::{self, FrameHeader, MAX_CONTROL_PAYLOAD, OpCode};
use crate::output::{Output, SHARE_MIN};
use crate::utf8::Utf8Validator;

/// Which side of the connection we are. Decides who masks (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Expects masked frames, sends unmasked ones.
    Server,
    /// Expects unmasked frames, masks every frame it sends with a fresh random key.
    Client,
}

/// Default for [`Config::max_message_size`]: 10 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;

/// Connection settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub role: Role,
    /// Largest message (sum of fragment payloads) accepted; larger → close 1009.
    /// Checked against frame headers, before any payload is buffered.
    /// Default 10 MiB; `usize::MAX` = unlimited.
    pub max_message_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self::new(Role::Server)
    }
}

impl Config {
    /// Defaults for `role`.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, already validated as UTF-8.
    Text(String),
    Binary(Bytes),
}

impl Message {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(text) => text.len(),
            Message::Binary(data) => data.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as bytes, whatever the type.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }
}

/// The status code and reason of a close frame that carried a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// What [`Connection::next_event`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Message(Message),
    /// The peer pinged; the engine has already queued the matching pong.
    Ping(Bytes),
    Pong(Bytes),
    /// The peer's close frame arrived (`None` = empty close payload, i.e. 1005 "no status").
    /// If we had not sent a close yet, the engine has queued the echo close frame (same
    /// code, no reason; empty if the peer's was empty). The connection is now Closed: the
    /// transport should be flushed and shut down (the server closes TCP first, RFC 6455 §7.1.1).
    Closed(Option<CloseFrame>),
    /// The peer broke the protocol. The engine has already queued a close frame with
    /// [`ProtocolError::close_code`] (unless we had sent one already) and ignores all
    /// further input. The host should flush output and close the transport (optionally
    /// waiting briefly for the peer's close).
    ProtocolError(ProtocolError),
}

/// Ways the peer can break RFC 6455. Each maps to the close code we fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame from client is not masked")]
    UnmaskedFrame,
    #[error("frame from server is masked")]
    MaskedFrame,
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame payload over 125 bytes")]
    ControlFrameTooLong,
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    #[error("new data message while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    #[error("close frame payload of 1 byte")]
    InvalidClosePayload,
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooBig { size: u64, max: usize },
    #[error("frame length has the most significant bit set")]
    FrameLengthInvalid,
    #[error("decompressed message exceeds the limit of {max} bytes")]
    InflatedTooBig { max: usize },
    #[error("compressed message is not valid deflate data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code to fail the connection with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::InvalidCompressedData => close::INVALID_PAYLOAD,
            ProtocolError::MessageTooBig { .. } | ProtocolError::InflatedTooBig { .. } => {
                close::MESSAGE_TOO_BIG
            }
            _ => close::PROTOCOL_ERROR,
        }
    }
}

/// Lifecycle of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Open,
    /// We sent a close frame and wait for the peer's. Until it comes, the peer's data
    /// frames, pings and pongs are ignored (and pings are not answered).
    Closing,
    /// Close handshake finished, protocol error, or EOF. Nothing more is sent or received.
    Closed,
}

/// Why a `send_*` call queued nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("connection is closing or closed")]
    Closed,
    #[error("control frame payload over 125 bytes")]
    PayloadTooLong,
}

/// Why [`Connection::close`] refused its arguments (nothing was sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    #[error("close code {0} may not be sent")]
    InvalidCode(u16),
    #[error("close reason of {0} bytes is over the 123 byte limit")]
    ReasonTooLong(usize),
    #[error("a close reason needs a close code")]
    ReasonWithoutCode,
}

/// Binary payloads at least this long are handed out without copying (split off the
/// input buffer). Smaller ones are copied so a long-lived small message does not pin
/// a large receive buffer, and so the buffer stays unshared and reusable.
const ZERO_COPY_MIN: usize = 4096;
/// At most this many messages are taken from one read without buffering: a
/// read full of tiny messages would otherwise queue thousands of events at
/// once (and keep the queue's capacity).
const TAKE_MAX_MESSAGES: usize = 64;
/// A message being filled reserves at most this much before its bytes come:
/// a header alone must not make the connection allocate up to the limit.
const FILL_RESERVE_MAX: usize = 1024 * 1024;

/// Buffers that grew beyond this are released as soon as they are empty, so a
/// connection does not keep the memory of its largest message. Smaller ones are kept
/// for the next messages (growing a buffer from nothing for each burst costs a copy
/// per doubling) until [`Connection::compact_idle`] frees them.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// A whole-message frame copied into its message as its bytes come: see
/// [`Connection::fill`].
#[derive(Debug)]
struct Filling {
    data: Vec<u8>,
    /// The payload's length.
    len: usize,
    mask: Option<[u8; 4]>,
    text: bool,
}

/// The frame whose payload is being received. Its received payload bytes sit at the
/// front of `Connection::input`, already unmasked (unless the frame is discarded).
#[derive(Debug, Clone, Copy)]
struct IncomingFrame {
    opcode: OpCode,
    fin: bool,
    /// RSV1 on the first frame of a message: compressed by permessage-deflate.
    compressed: bool,
    mask: Option<[u8; 4]>,
    len: usize,
    /// Payload bytes already handled: unmasked and UTF-8 checked, or, when discarding,
    /// dropped from the input.
    done: usize,
    /// A data frame that arrived after we sent close: its payload is dropped on arrival.
    discard: bool,
    /// Part of a text message whose bytes are checked as they arrive.
    check_utf8: bool,
}

/// A fragmented data message being assembled.
#[derive(Debug)]
struct IncomingMessage {
    text: bool,
    /// Compressed: `data` holds the payload inflated so far, frame by frame.
    compressed: bool,
    /// Sum of the declared (wire) lengths of its frames so far, for the size limit.
    size: usize,
    data: Vec<u8>,
}

/// A sans-IO RFC 6455 endpoint. See the crate docs for the calling pattern.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    max_message_size: usize,
    state: State,
    /// permessage-deflate, when negotiated. Boxed: most connections have none.
    deflate: Option<Box<PerMessageDeflate>>,
    /// Received bytes not consumed yet.
    input: BytesMut,
    frame: Option<IncomingFrame>,
    message: Option<IncomingMessage>,
    /// A whole-message frame that arrives over several reads, copied
    /// straight into its message (see `take_plain_messages`).
    filling: Option<Box<Filling>>,
    /// Payloads of messages taken straight from reads, back to back
    /// (unmasked, text validated), from `taken_read` on: they come before
    /// everything in `events`.
    taken: Vec<u8>,
    /// Each one's (text, length), oldest first.
    taken_spans: VecDeque<(bool, usize)>,
    taken_read: usize,
    /// A message being filled held invalid UTF-8 while events before it
    /// were still queued: the connection fails once they are taken.
    invalid_utf8_after_events: bool,
    utf8: Utf8Validator,
    events: VecDeque<Event>,
    output: Output,
    /// Largest length `input` reached since it was last reallocated; a buffer's
    /// capacity cannot be read back once it was advanced.
    input_peak: usize,
    close_sent: Option<CloseFrame>,
    close_received: Option<CloseFrame>,
    /// The close handshake completed (both close frames exchanged).
    clean_close: bool,
}

impl Connection {
    /// A connection in state Open, right after a successful opening handshake.
    pub fn new(config: Config) -> Self {
        Self::with_deflate(config, None)
    }

    /// Like [`Self::new`], with permessage-deflate if the handshake negotiated it
    /// (see [`crate::deflate::negotiate_server`] and [`crate::deflate::negotiate_client`]).
    pub fn with_deflate(config: Config, deflate: Option<Negotiated>) -> Self {
        Self {
            role: config.role,
            max_message_size: config.max_message_size,
            state: State::Open,
            deflate: deflate.map(|n| Box::new(PerMessageDeflate::new(config.role, &n))),
            input: BytesMut::new(),
            frame: None,
            message: None,
            filling: None,
            taken: Vec::new(),
            taken_spans: VecDeque::new(),
            taken_read: 0,
            invalid_utf8_after_events: false,
            utf8: Utf8Validator::default(),
            events: VecDeque::new(),
            output: Output::default(),
            input_peak: 0,
            close_sent: None,
            close_received: None,
            clean_close: false,
        }
    }

    /// Our side of the connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in its lifecycle.
    pub fn state(&self) -> State {
        self.state
    }

    /// Feed bytes read from the transport. Never panics; errors become
    /// [`Event::ProtocolError`]. Ignored once the connection is Closed.
    pub fn receive(&mut self, data: &[u8]) {
        if self.state == State::Closed || self.invalid_utf8_after_events {
            return;
        }
        let mut rest = self.fill(data);
        if self.filling.is_none() {
            rest = self.take_plain_messages(rest);
        }
        if rest.is_empty() && self.input.is_empty() {
            return;
        }
        self.input.extend_from_slice(rest);
        self.input_peak = self.input_peak.max(self.input.len());
        self.parse();
    }

    /// Takes the whole plain messages at the front of `data` straight from it,
    /// without copying them into the input buffer first, and returns the rest.
    ///
    /// Only when nothing is buffered, and only frames whose parsing can have no
    /// other effect (up to [`TAKE_MAX_MESSAGES`]): a whole single-frame,
    /// uncompressed text or binary message that passes the header checks and,
    /// for text, holds valid UTF-8. Such a frame cut off by the end of `data`
    /// is copied into its message as its bytes come (`fill`). The first frame
    /// that is anything else (a control frame, a fragment, a bad frame) and
    /// all that follows go through the input buffer and are parsed one event
    /// at a time as before, so a reply or an error close still follows the
    /// messages before it.
    fn take_plain_messages<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        if !self.input.is_empty()
            || self.state != State::Open
            || self.frame.is_some()
            || self.message.is_some()
            || self.filling.is_some()
        {
            return data;
        }
        let mut taken = 0;
        while taken < TAKE_MAX_MESSAGES {
            let Ok(Some((h, header_len))) = frame::parse_header(data) else {
                break;
            };
            // Compressed messages are inflated from the buffer.
            if h.rsv1 {
                break;
            }
            let Some(len) = self.plain_message_len(&h) else {
                break;
            };
            let text = h.opcode == OpCode::Text as u8;
            let Some(payload) = data.get(header_len..).and_then(|rest| rest.get(..len)) else {
                // Cut off: the rest of it comes in later reads.
                self.utf8.reset();
                self.filling = Some(Box::new(Filling {
                    data: Vec::with_capacity(len.min(FILL_RESERVE_MAX)),
                    len,
                    mask: h.mask,
                    text,
                }));
                return self.fill(data.get(header_len..).unwrap_or_default());
            };
            // Into the taken buffer while nothing else is queued (so that
            // they all come before the events), as events otherwise.
            let into_buffer = self.events.is_empty();
            let mut bytes = if into_buffer {
                if self.taken.capacity() == 0 {
                    self.taken.reserve(data.len());
                }
                std::mem::take(&mut self.taken)
            } else {
                Vec::new()
            };
            let start = bytes.len();
            match h.mask {
                Some(key) => frame::extend_unmasked(&mut bytes, payload, key),
                None => bytes.extend_from_slice(payload),
            }
            if text && simdutf8::basic::from_utf8(&bytes[start..]).is_err() {
                // Parsed again from the buffer, where it fails.
                bytes.truncate(start);
                if into_buffer {
                    self.taken = bytes;
                }
                break;
            }
            if into_buffer {
                self.taken = bytes;
                self.taken_spans.push_back((text, len));
            } else {
                self.events
                    .push_back(Event::Message(validated_message(text, bytes)));
            }
            taken += 1;
            data = &data[header_len + len..];
        }
        data
    }

    /// Copies the next bytes of the message being filled (if any) into it,
    /// unmasked and (text) validated as they come, and queues the message
    /// once whole. Returns what follows it in `data`.
    fn fill<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let Some(filling) = self.filling.as_mut() else {
            return data;
        };
        let (chunk, rest) = data.split_at((filling.len - filling.data.len()).min(data.len()));
        let start = filling.data.len();
        filling.data.extend_from_slice(chunk);
        let new = &mut filling.data[start..];
        if let Some(key) = filling.mask {
            frame::apply_mask(new, key, start);
        }
        // Fail fast on invalid UTF-8, as for a frame parsed from the buffer,
        // but after the messages queued before this one.
        if filling.text && self.utf8.feed(new).is_err() {
            self.filling = None;
            self.fail_on_invalid_utf8_in_order();
            return &[];
        }
        if filling.data.len() < filling.len {
            return rest;
        }
        let Some(filling) = self.filling.take() else {
            return rest;
        };
        let message = if filling.text {
            match self.finish_text(filling.data) {
                Ok(message) => message,
                Err(_) => {
                    self.fail_on_invalid_utf8_in_order();
                    return &[];
                }
            }
        } else {
            Message::Binary(Bytes::from(filling.data))
        };
        self.events.push_back(Event::Message(message));
        rest
    }

    /// Fails the connection for invalid UTF-8 in the message being filled:
    /// at once when nothing is queued before it, otherwise once the queued
    /// messages are taken.
    fn fail_on_invalid_utf8_in_order(&mut self) {
        if self.events.is_empty() && self.taken_spans.is_empty() {
            self.fail(ProtocolError::InvalidUtf8);
        } else {
            self.invalid_utf8_after_events = true;
        }
    }

    /// Parses input up to the next event. Parsing stops at each event so that
    /// the host reacts to it (say, queues an echo) before a later frame is
    /// judged: a protocol error then closes *after* the replies to the valid
    /// messages before it, as a peer expects.
    fn parse(&mut self) {
        if let Err(error) = self.process_input() {
            self.fail(error);
        }
        if self.input.is_empty() && self.input_peak > KEEP_CAPACITY {
            self.input = BytesMut::new();
            self.input_peak = 0;
        }
    }

    /// The transport reached EOF. If the connection was not Closed yet this marks it
    /// Closed (abnormal closure, 1006) without an event. Returns whether the close
    /// handshake had completed, i.e. whether the closure was clean.
    pub fn receive_eof(&mut self) -> bool {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.clean_close = false;
            self.drop_input();
        }
        self.clean_close
    }

    /// Next parsed event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        if let Some((text, len)) = self.taken_spans.pop_front() {
            let end = self.taken_read + len;
            let bytes = self
                .taken
                .get(self.taken_read..end)
                .unwrap_or_default()
                .to_vec();
            self.taken_read = end;
            if self.taken_spans.is_empty() {
                self.taken.clear();
                self.taken_read = 0;
            }
            return Some(Event::Message(validated_message(text, bytes)));
        }
        if self.events.is_empty() && std::mem::take(&mut self.invalid_utf8_after_events) {
            self.fail(ProtocolError::InvalidUtf8);
        }
        if self.events.is_empty() && self.state != State::Closed && !self.input.is_empty() {
            self.parse();
        }
        self.events.pop_front()
    }

    /// How many messages taken straight from reads come next (see
    /// [`Self::drain_taken`]).
    pub fn taken_messages(&self) -> usize {
        self.taken_spans.len()
    }

    /// Hands over the messages taken straight from reads, which are the next
    /// events: their payloads are appended to `data` back to back (when
    /// `data` is empty, the engine's buffer becomes it, without a copy), and
    /// `span(text, length)` is called for each, oldest first. A caller that
    /// gathers messages into one buffer (the wsbox host's batches) saves an
    /// allocation and a copy per message over [`Self::next_event`].
    pub fn drain_taken(&mut self, data: &mut Vec<u8>, mut span: impl FnMut(bool, usize)) {
        if self.taken_spans.is_empty() {
            return;
        }
        if data.is_empty() && self.taken_read == 0 {
            *data = std::mem::take(&mut self.taken);
        } else {
            data.extend_from_slice(self.taken.get(self.taken_read..).unwrap_or_default());
            self.taken = Vec::new();
        }
        self.taken_read = 0;
        for (text, len) in self.taken_spans.drain(..) {
            span(text, len);
        }
    }

    /// Whether the next event is a message whose parsing has no other effect:
    /// the next buffered frame is a whole single-frame text or binary message
    /// that passes the header checks (opcode, reserved bits, masking, size).
    ///
    /// A caller that gathers messages before reacting to them (the wsbox host
    /// hands several to the handler in one call) keeps gathering while this
    /// holds and reacts to what it has first otherwise: parsing a ping, a
    /// close or a bad frame queues a pong, a close reply or an error close,
    /// and replies to the earlier messages must go out before those. Invalid
    /// UTF-8 in such a message is still only found while parsing it.
    pub fn next_is_plain_message(&self) -> bool {
        if self.state != State::Open || self.frame.is_some() || self.message.is_some() {
            return false;
        }
        if !self.taken_spans.is_empty() {
            return true;
        }
        if let Some(event) = self.events.front() {
            return matches!(event, Event::Message(_));
        }
        if self.filling.is_some() || self.invalid_utf8_after_events {
            return false;
        }
        let Ok(Some((h, _))) = frame::parse_header(&self.input) else {
            return false;
        };
        self.plain_message_len(&h).is_some()
    }

    /// The payload length of a frame with header `h` if it is a whole
    /// single-frame text or binary message that passes the header checks
    /// (opcode, reserved bits, masking, size): one whose parsing can have no
    /// effect but the message.
    fn plain_message_len(&self, h: &frame::FrameHeader) -> Option<usize> {
        let masked_as_required = match self.role {
            Role::Server => h.mask.is_some(),
            Role::Client => h.mask.is_none(),
        };
        let plain = h.fin
            && matches!(
                OpCode::from_u8(h.opcode),
                Some(OpCode::Text | OpCode::Binary)
            )
            && !h.rsv2
            && !h.rsv3
            && (!h.rsv1 || self.deflate.is_some())
            && masked_as_required;
        plain
            .then(|| self.checked_size(0, h.payload_len, h.rsv1).ok())
            .flatten()
    }

    /// Send a complete message as a single frame.
    pub fn send_message(&mut self, message: &Message) -> Result<(), SendError> {
        match message {
            Message::Text(text) => self.send_text(text),
            Message::Binary(data) => self.send_binary(data),
        }
    }

    /// Send a message split into frames of at most `fragment_size` payload bytes (at
    /// least 1). With permessage-deflate the compressed payload is what is split.
    pub fn send_fragmented(
        &mut self,
        message: &Message,
        fragment_size: usize,
    ) -> Result<(), SendError> {
        self.check_open()?;
        let opcode = match message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        };
        self.write_message(opcode, message.as_bytes(), None, fragment_size.max(1));
        Ok(())
    }

    /// Whether permessage-deflate is in use.
    pub fn is_deflate_enabled(&self) -> bool {
        self.deflate.is_some()
    }

    /// Approximate bytes of permessage-deflate state this connection holds right now:
    /// zlib streams plus the windows kept for context takeover (0 without
    /// permessage-deflate, or between messages when neither side keeps its context).
    pub fn deflate_memory_estimate(&self) -> usize {
        self.deflate.as_ref().map_or(0, |d| d.memory_estimate())
    }

    /// Make an idle connection cheap: with permessage-deflate context takeover, drop the
    /// zlib streams (~430 KiB at the default settings) and keep only the last
    /// `2^window_bits` bytes each side needs (at most 64 KiB in all). The next message
    /// re-creates a stream from them, which costs some microseconds; what goes on the
    /// wire stays valid for a peer that kept its context. Empty input and output
    /// buffers are freed too.
    ///
    /// Meant to be called by the host once the connection has been idle for a while.
    /// Safe at any time: a side in the middle of a message is left alone. Once the
    /// connection is closing or closed, all deflate state is freed.
    pub fn compact_idle(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
            self.input_peak = 0;
        }
        self.output.compact();
        if self.taken_spans.is_empty() {
            self.taken = Vec::new();
        }
        if self.events.is_empty() {
            // Its buffer outlives the events: a few small allocations that
            // an idle (or hibernated) connection need not keep.
            self.events = VecDeque::new();
        }
        let Some(deflate) = self.deflate.as_mut() else {
            return;
        };
        if self.state == State::Open {
            deflate.compact_idle();
        } else {
            // No more sending, and received data frames are skipped unread.
            deflate.release();
        }
    }

    /// Send a text message as a single frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(OpCode::Text, text.as_bytes())
    }

    /// Send a binary message as a single frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(OpCode::Binary, data)
    }

    /// Send a ping; its payload must be at most 125 bytes.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// An unsolicited pong (a heartbeat); pings are answered automatically.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    /// Like [`Self::send_message`], taking the payload by value: a server queues a
    /// large payload (or its compressed form) as it is, and writes it after the frame
    /// header without copying it into the output.
    pub fn send_owned(&mut self, message: Message) -> Result<(), SendError> {
        match message {
            Message::Text(text) => self.send_payload(true, Bytes::from(text)),
            Message::Binary(data) => self.send_payload(false, data),
        }
    }

    /// Like [`Self::send_owned`], for a payload already in a `Bytes` (a slice of a
    /// larger buffer, say): a text message when `text`, whose payload the caller
    /// vouches is valid UTF-8, else a binary one.
    pub fn send_payload(&mut self, text: bool, payload: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        self.write_message(opcode, &payload, Some(&payload), usize::MAX);
        Ok(())
    }

    /// Queue a frame that was encoded beforehand with [`frame::encode_frame`], e.g. once
    /// for many subscribers: a large one is queued by reference, not copied. The caller
    /// vouches that `encoded` is exactly one complete, valid, non-close frame, masked
    /// according to our role (servers: unmasked).
    pub fn send_encoded(&mut self, encoded: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        if encoded.len() >= SHARE_MIN {
            self.output.share(encoded);
        } else {
            self.output.copy_with(|out| out.extend_from_slice(&encoded));
        }
        Ok(())
    }

    /// Start the closing handshake (state → Closing). Validates per RFC 6455 §7.4:
    /// sendable codes are 1000-1003, 1007-1014 and 3000-4999, the reason is at most
    /// 123 bytes and needs a code. When already Closing/Closed: `Ok(())`, sends nothing.
    pub fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), CloseError> {
        if self.state != State::Open {
            return Ok(());
        }
        close::validate_outgoing(code, reason)?;
        let frame = code.map(|code| CloseFrame {
            code,
            reason: reason.to_owned(),
        });
        self.write_close(frame.as_ref());
        self.close_sent = frame;
        self.state = State::Closing;
        // Data from the peer is ignored from now on: drop a partly assembled message and
        // discard the rest of a data frame in progress instead of buffering it.
        self.message = None;
        self.utf8.reset();
        if let Some(f) = &mut self.frame
            && f.opcode.is_data()
            && !f.discard
        {
            self.input.advance(f.done.min(self.input.len()));
            f.discard = true;
        }
        Ok(())
    }

    /// The next contiguous bytes waiting to be written to the transport: the front of
    /// the output queue, which may hold more after them (see
    /// [`Self::pending_output_len`]). Writers that can write several buffers at once
    /// use [`Self::pending_output_vectored`] instead.
    pub fn pending_output(&self) -> &[u8] {
        self.output.front()
    }

    /// Fills `dst` with the buffers waiting to be written, in order, for a vectored
    /// write; returns how many it filled (0 when nothing is queued). Large payloads
    /// and shared frames are among them as they are, never copied into one buffer.
    pub fn pending_output_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.output.chunks_vectored(dst)
    }

    /// How many bytes wait to be written to the transport, in all.
    pub fn pending_output_len(&self) -> usize {
        self.output.len()
    }

    /// Mark the first `n` bytes of the pending output as written.
    pub fn consume_output(&mut self, n: usize) {
        self.output.advance(n);
    }

    /// Take all pending output at once, as one buffer (for writers that want owned
    /// buffers): without copying when it is one buffer already.
    pub fn take_output(&mut self) -> Bytes {
        self.output.take()
    }

    /// Whether anything waits to be written to the transport.
    pub fn has_pending_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The close frame we sent, if any (`None` also when ours had no status code).
    pub fn close_sent(&self) -> Option<&CloseFrame> {
        self.close_sent.as_ref()
    }

    /// The close frame we received, if any (`None` also when the peer's had no status code).
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.close_received.as_ref()
    }

    // ----- receiving -----

    /// Parse as many frames from `input` as possible, emitting events.
    fn process_input(&mut self) -> Result<(), ProtocolError> {
        loop {
            if self.state == State::Closed {
                self.drop_input();
                return Ok(());
            }
            if !self.events.is_empty() || !self.taken_spans.is_empty() {
                return Ok(());
            }
            let mut f = match self.frame.take() {
                Some(f) => f,
                None => {
                    let Some((header, header_len)) = frame::parse_header(&self.input)? else {
                        return Ok(());
                    };
                    let f = self.begin_frame(&header)?;
                    self.input.advance(header_len);
                    f
                }
            };
            if f.discard {
                let n = (f.len - f.done).min(self.input.len());
                self.input.advance(n);
                f.done += n;
            } else {
                let available = f.len.min(self.input.len());
                if available > f.done {
                    let chunk = &mut self.input[f.done..available];
                    if let Some(key) = f.mask {
                        frame::apply_mask(chunk, key, f.done);
                    }
                    // Fail fast on invalid UTF-8 in a message that is not complete
                    // yet; finish_text checks only that nothing is left cut off.
                    if f.check_utf8 {
                        self.utf8
                            .feed(chunk)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    f.done = available;
                }
            }
            if f.done < f.len {
                self.frame = Some(f);
                return Ok(());
            }
            self.end_frame(f)?;
        }
    }

    /// Apply the per-frame rules to a new header and set up its reception.
    fn begin_frame(&mut self, h: &FrameHeader) -> Result<IncomingFrame, ProtocolError> {
        let opcode = OpCode::from_u8(h.opcode).ok_or(ProtocolError::ReservedOpcode(h.opcode))?;
        // RSV1 means "compressed" under permessage-deflate, and only on the first frame
        // of a data message. RSV2/RSV3 have no extension defining them.
        let rsv1_allowed =
            self.deflate.is_some() && matches!(opcode, OpCode::Text | OpCode::Binary);
        if h.rsv2 || h.rsv3 || (h.rsv1 && !rsv1_allowed) {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.role, h.mask) {
            (Role::Server, None) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, Some(_)) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let mut f = IncomingFrame {
            opcode,
            fin: h.fin,
            compressed: h.rsv1,
            mask: h.mask,
            len: 0,
            done: 0,
            discard: false,
            check_utf8: false,
        };
        if opcode.is_control() {
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            f.len = h.payload_len as usize;
            return Ok(f);
        }
        if self.state != State::Open {
            // We sent close: data frames are skipped without further checks.
            f.len = usize::try_from(h.payload_len).map_err(|_| self.too_big(h.payload_len))?;
            f.discard = true;
            return Ok(f);
        }
        match opcode {
            OpCode::Continuation => {
                let size_before = match &self.message {
                    Some(message) => message.size,
                    None => return Err(ProtocolError::UnexpectedContinuation),
                };
                let compressed = self.message.as_ref().is_some_and(|m| m.compressed);
                let size = self.checked_size(size_before, h.payload_len, compressed)?;
                if let Some(message) = &mut self.message {
                    message.size = size;
                    f.check_utf8 = message.text && !message.compressed;
                }
                f.len = size - size_before;
            }
            _ => {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                f.len = self.checked_size(0, h.payload_len, f.compressed)?;
                let text = opcode == OpCode::Text;
                // Compressed text is validated after inflating, not on the wire bytes.
                f.check_utf8 = text && !f.compressed;
                self.utf8.reset();
                if !h.fin {
                    self.message = Some(IncomingMessage {
                        text,
                        compressed: f.compressed,
                        size: f.len,
                        data: Vec::new(),
                    });
                }
            }
        }
        Ok(f)
    }

    /// The message size after adding a frame of `len` bytes, if within the limit.
    /// Compressed data may be slightly larger than what it inflates to (incompressible
    /// data in stored blocks), so it gets zlib's `deflateBound` margin; its inflated
    /// size is checked against the limit itself while inflating.
    fn checked_size(
        &self,
        before: usize,
        len: u64,
        compressed: bool,
    ) -> Result<usize, ProtocolError> {
        let total = (before as u64).saturating_add(len);
        let mut max = u64::try_from(self.max_message_size).unwrap_or(u64::MAX);
        if compressed {
            max = max.saturating_add((max >> 12) + (max >> 14) + 64);
        }
        if total > max {
            return Err(self.too_big(total));
        }
        usize::try_from(total).map_err(|_| self.too_big(total))
    }

    fn too_big(&self, size: u64) -> ProtocolError {
        ProtocolError::MessageTooBig {
            size,
            max: self.max_message_size,
        }
    }

    /// The whole payload of `f` is at the front of `input` (unless discarded).
    fn end_frame(&mut self, f: IncomingFrame) -> Result<(), ProtocolError> {
        if f.discard {
            return Ok(());
        }
        match f.opcode {
            OpCode::Close => {
                let frame = close::parse_close_payload(&self.input[..f.len])?;
                self.input.advance(f.len);
                self.on_close_received(frame);
            }
            OpCode::Ping | OpCode::Pong => {
                let payload = Bytes::copy_from_slice(&self.input[..f.len]);
                self.input.advance(f.len);
                // After we sent close nothing may follow it, so pings go unanswered;
                // pongs are dropped alike to keep the two symmetric.
                if self.state == State::Open {
                    if f.opcode == OpCode::Ping {
                        self.write_frame(OpCode::Pong, &payload);
                        self.events.push_back(Event::Ping(payload));
                    } else {
                        self.events.push_back(Event::Pong(payload));
                    }
                }
            }
            OpCode::Text | OpCode::Binary if f.fin && f.compressed => {
                let mut data = Vec::new();
                self.inflate_frame(f.len, &mut data, true)?;
                let message = if f.opcode == OpCode::Text {
                    self.utf8
                        .feed(&data)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                    self.finish_text(data)?
                } else {
                    Message::Binary(Bytes::from(data))
                };
                self.events.push_back(Event::Message(message));
            }
            OpCode::Text | OpCode::Binary if f.fin => {
                // Unfragmented: build the message straight from the input buffer.
                let message = if f.opcode == OpCode::Text {
                    let data = self.input[..f.len].to_vec();
                    self.input.advance(f.len);
                    self.finish_text(data)?
                } else {
                    let data = if f.len < ZERO_COPY_MIN {
                        let data = Bytes::copy_from_slice(&self.input[..f.len]);
                        self.input.advance(f.len);
                        data
                    } else {
                        self.input.split_to(f.len).freeze()
                    };
                    Message::Binary(data)
                };
                self.events.push_back(Event::Message(message));
            }
            _ => {
                // begin_frame guarantees a message for continuation frames.
                let Some(mut message) = self.message.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                if message.compressed {
                    let before = message.data.len();
                    self.inflate_frame(f.len, &mut message.data, f.fin)?;
                    // Fail fast on invalid UTF-8, as for uncompressed text.
                    if message.text {
                        self.utf8
                            .feed(message.data.get(before..).unwrap_or_default())
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                } else {
                    message.data.extend_from_slice(&self.input[..f.len]);
                    self.input.advance(f.len);
                }
                if !f.fin {
                    self.message = Some(message);
                    return Ok(());
                }
                let message = if message.text {
                    self.finish_text(message.data)?
                } else {
                    Message::Binary(Bytes::from(message.data))
                };
                self.events.push_back(Event::Message(message));
            }
        }
        Ok(())
    }

    /// Inflate the `len` payload bytes at the front of `input` into `out` (and the
    /// message's stripped tail if `last`). The inflated size counts against
    /// `max_message_size` as it grows, so a small bomb never allocates past the limit.
    fn inflate_frame(
        &mut self,
        len: usize,
        out: &mut Vec<u8>,
        last: bool,
    ) -> Result<(), ProtocolError> {
        let max = self.max_message_size;
        // begin_frame allows RSV1 only with permessage-deflate.
        let Some(deflate) = self.deflate.as_mut() else {
            return Err(ProtocolError::ReservedBits);
        };
        let decompressor = &mut deflate.decompressor;
        let mut result = decompressor.inflate(&self.input[..len], out, max);
        if result.is_ok() && last {
            result = decompressor.finish(out, max);
        }
        self.input.advance(len);
        result.map_err(|e| match e {
            InflateError::TooBig => ProtocolError::InflatedTooBig { max },
            InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        })
    }

    /// The text message `data`, every byte of which went through `self.utf8` (as
    /// it arrived, or as it was inflated).
    fn finish_text(&mut self, data: Vec<u8>) -> Result<Message, ProtocolError> {
        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        debug_assert!(std::str::from_utf8(&data).is_ok());
        // SAFETY: the validator accepted every byte of `data`, in order, and no
        // sequence is left cut off at its end: it is valid UTF-8.
        Ok(Message::Text(unsafe { String::from_utf8_unchecked(data) }))
    }

    fn on_close_received(&mut self, frame: Option<CloseFrame>) {
        if self.state == State::Open {
            // Echo the peer's close frame, code and reason, as Python's
            // `websockets` and tungstenite do (RFC 6455 §5.5.1 asks for the code).
            let echo = frame.clone();
            self.write_close(echo.as_ref());
            self.close_sent = echo;
        }
        self.close_received.clone_from(&frame);
        self.state = State::Closed;
        self.clean_close = true;
        self.message = None;
        self.events.push_back(Event::Closed(frame));
    }

    /// Fail the connection (RFC 6455 §7.1.7): send a close with the error's code unless
    /// we already sent one, report the error, and ignore everything after it.
    fn fail(&mut self, error: ProtocolError) {
        if self.state == State::Open {
            let frame = CloseFrame {
                code: error.close_code(),
                reason: short_reason(&error),
            };
            self.write_close(Some(&frame));
            self.close_sent = Some(frame);
        }
        self.state = State::Closed;
        self.clean_close = false;
        self.drop_input();
        self.events.push_back(Event::ProtocolError(error));
    }

    fn drop_input(&mut self) {
        self.input = BytesMut::new();
        self.input_peak = 0;
        self.frame = None;
        self.message = None;
        self.filling = None;
        self.invalid_utf8_after_events = false;
        self.utf8.reset();
    }

    // ----- sending -----

    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::Closing | State::Closed => Err(SendError::Closed),
        }
    }

    fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        self.write_message(opcode, payload, None, usize::MAX);
        Ok(())
    }

    /// Write a data message in frames of at most `fragment_size` payload bytes,
    /// compressed if permessage-deflate is on and the message is not too small.
    /// `owner`, when given, holds `payload`, which may then be queued by reference.
    fn write_message(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        owner: Option<&Bytes>,
        fragment_size: usize,
    ) {
        let compressed = match self.deflate.as_mut() {
            Some(deflate) if payload.len() >= deflate.min_compress_size => {
                deflate.compressor.compress(payload).map(Bytes::from)
            }
            _ => None,
        };
        let (rsv1, body, owner) = match &compressed {
            Some(data) => (true, &data[..], Some(data)),
            None => (false, payload, owner),
        };
        let mut chunks = body.chunks(fragment_size).peekable();
        if chunks.peek().is_none() {
            self.write_frame_parts(true, rsv1, opcode, &[], None);
            return;
        }
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let fin = chunks.peek().is_none();
            let (rsv1, opcode) = if first {
                (rsv1, opcode)
            } else {
                (false, OpCode::Continuation)
            };
            self.write_frame_parts(fin, rsv1, opcode, chunk, owner);
            first = false;
        }
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::PayloadTooLong);
        }
        self.write_frame(opcode, payload);
        Ok(())
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = BytesMut::new();
        close::encode_close_payload(&mut payload, frame);
        self.write_frame(OpCode::Close, &payload);
    }

    fn write_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        self.write_frame_parts(true, false, opcode, payload, None);
    }

    /// `owner`, when given, is a buffer that holds `payload`: a server queues a large
    /// payload from it by reference, after the header.
    fn write_frame_parts(
        &mut self,
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        payload: &[u8],
        owner: Option<&Bytes>,
    ) {
        // Clients mask every frame with a fresh key from a CSPRNG (RFC 6455 §5.3),
        // which needs a copy of the payload anyway.
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(rand::random::<[u8; 4]>()),
        };
        match owner {
            Some(owner) if mask.is_none() && payload.len() >= SHARE_MIN => {
                let len = payload.len() as u64;
                self.output
                    .copy_with(|out| frame::encode_header(out, fin, rsv1, opcode, len, None));
                self.output.share(owner.slice_ref(payload));
            }
            _ => self.output.copy_with(|out| {
                frame::encode_frame(out, fin, rsv1, opcode, payload, mask);
            }),
        }
    }
}

/// The error's message, cut to fit a close frame.
fn short_reason(error: &ProtocolError) -> String {
    let mut reason = error.to_string();
    if reason.len() > close::MAX_REASON_LEN {
        let mut end = close::MAX_REASON_LEN;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests;

/// A received message from payload bytes already checked: text was validated
/// as UTF-8 when it was taken.
fn validated_message(text: bool, bytes: Vec<u8>) -> Message {
    if text {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        // SAFETY: the caller validated `bytes` as UTF-8.
        Message::Text(unsafe { String::from_utf8_unchecked(bytes) })
    } else {
        Message::Binary(Bytes::from(bytes))
    }
}
