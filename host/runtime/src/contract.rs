//! Which contract a component was built against, and the calls into its
//! exports for each version. The rest of the host speaks 0.2.0's types;
//! a 0.1.0 component's calls are adapted here.

use crate::PackedRequest;
use anyhow::{Result, bail};
use wasmtime::Store;
use wasmtime::component::{Component, Instance, InstancePre, Resource};

use super::bindings::{
    self, CloseInfo, ConnectionResource, Message, MessageBatch, OpenInfo, UpgradeDecision,
    UpgradeRequest, batch_handler, handler, hibernation, v0_1,
};
use super::instance::HostState;

// Looked up with wasmtime's semver-compatible matching: these find a
// 0.2.0, 0.2.1 or 0.2.2 component's exports as well as a 0.2.3 one's.
const HANDLER_0_2: &str = "wsbox:websocket/handler@0.2.3";
const BATCH_HANDLER_0_2: &str = "wsbox:websocket/batch-handler@0.2.3";
const HIBERNATION_0_2: &str = "wsbox:websocket/hibernation@0.2.3";
const PUBSUB_PREFIX: &str = "wsbox:websocket/pubsub@";
const HANDLER_0_1: &str = "wsbox:websocket/handler@0.1.0";
/// The versions of the `wsbox:websocket` package this host links.
const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.2.1", "0.2.2", "0.2.3"];

/// The WASI 0.2 interfaces the host links (most of them with nothing
/// behind: no files, no sockets, no environment).
const GRANTED_WASI: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// The exports of a module found when it was loaded, looked up once.
pub(crate) enum Contract {
    /// `wsbox:websocket@0.1.0`: every handler exports `on-messages`.
    V0_1(v0_1::WebsocketHandlerIndices),
    /// `wsbox:websocket@0.2.x`, with or without the batch interface.
    V0_2 {
        handler: handler::GuestIndices,
        batch: Option<batch_handler::GuestIndices>,
        /// The optional `hibernation` export (0.2.3).
        hibernation: Option<hibernation::GuestIndices>,
        /// The version of the package the component was built against
        /// (`0.2.0` to `0.2.3`), from its handler export's name.
        version: String,
        /// Whether it imports `pubsub`.
        pubsub: bool,
    },
}

impl Contract {
    /// Names the imports no host version grants, before wasmtime's linker
    /// gets to answer with its own wording.
    /// Checks that every `wsbox:websocket` interface the component imports
    /// or exports is of a version this host speaks.
    pub(crate) fn check_versions(component: &Component, engine: &wasmtime::Engine) -> Result<()> {
        let ty = component.component_type();
        let names = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .chain(ty.exports(engine).map(|(name, _)| name.to_string()));
        let mut unsupported: Vec<String> = Vec::new();
        for name in names {
            let Some(rest) = name.strip_prefix("wsbox:websocket/") else {
                continue;
            };
            let version = rest.rsplit_once('@').map_or("", |(_, v)| v);
            if !SUPPORTED_VERSIONS.contains(&version) && !unsupported.iter().any(|v| v == version) {
                unsupported.push(version.to_string());
            }
        }
        if unsupported.is_empty() {
            return Ok(());
        }
        bail!(
            "it was built against wsbox:websocket@{}, which this wsbox does not support: it \
             supports {}; rebuild the handler against this wsbox's wit/websocket.wit \
             (package wsbox:websocket@0.2.3)",
            unsupported.join(", @"),
            SUPPORTED_VERSIONS.join(", ")
        )
    }

    pub(crate) fn check_imports(component: &Component, engine: &wasmtime::Engine) -> Result<()> {
        let refused: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .filter(|name| !is_granted(name))
            .collect();
        match refused.as_slice() {
            [] => Ok(()),
            [one] => bail!(
                "it imports {one}, which wsbox does not grant: a handler may import only \
                 wsbox:websocket and WASI 0.2 (cli, clocks, filesystem, io, random, sockets; \
                 with no files, sockets or environment behind them)"
            ),
            many => bail!(
                "it imports {}, which wsbox does not grant: a handler may import only \
                 wsbox:websocket and WASI 0.2 (cli, clocks, filesystem, io, random, sockets; \
                 with no files, sockets or environment behind them)",
                many.join(", ")
            ),
        }
    }

    /// Finds which contract the component exports; the newest wins.
    pub(crate) fn detect(pre: &InstancePre<HostState>) -> Result<Contract> {
        let component = pre.component();
        if component.get_export_index(None, HANDLER_0_2).is_some() {
            let handler = handler::GuestIndices::new(pre).map_err(anyhow::Error::from)?;
            let batch = match component.get_export_index(None, BATCH_HANDLER_0_2) {
                Some(_) => {
                    Some(batch_handler::GuestIndices::new(pre).map_err(anyhow::Error::from)?)
                }
                None => None,
            };
            let hibernation = match component.get_export_index(None, HIBERNATION_0_2) {
                Some(_) => Some(hibernation::GuestIndices::new(pre).map_err(anyhow::Error::from)?),
                None => None,
            };
            let version = component
                .component_type()
                .exports(pre.engine())
                .find_map(|(name, _)| {
                    name.strip_prefix("wsbox:websocket/handler@")
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "0.2".to_string());
            let pubsub = component
                .component_type()
                .imports(pre.engine())
                .any(|(name, _)| name.starts_with(PUBSUB_PREFIX));
            return Ok(Contract::V0_2 {
                handler,
                batch,
                hibernation,
                version,
                pubsub,
            });
        }
        if component.get_export_index(None, HANDLER_0_1).is_some() {
            let indices = v0_1::WebsocketHandlerIndices::new(pre).map_err(anyhow::Error::from)?;
            return Ok(Contract::V0_1(indices));
        }
        let exports: Vec<String> = component
            .component_type()
            .exports(pre.engine())
            .map(|(name, _)| name.to_string())
            .collect();
        bail!(
            "it exports no wsbox handler: it must export {HANDLER_0_2} (or {HANDLER_0_1}); \
             it exports {}",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        )
    }

    /// The world the component was found to implement, for logs, e.g.
    /// `wsbox:websocket/websocket-batch-handler@0.2.3 + pubsub + hibernation`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Contract::V0_1(_) => "wsbox:websocket/websocket-handler@0.1.0 (adapted)".to_string(),
            Contract::V0_2 {
                batch,
                hibernation,
                version,
                pubsub,
                ..
            } => format!(
                "wsbox:websocket/websocket-{}handler@{version}{}{}",
                if batch.is_some() { "batch-" } else { "" },
                if *pubsub { " + pubsub" } else { "" },
                if hibernation.is_some() {
                    " + hibernation"
                } else {
                    ""
                }
            ),
        }
    }

    /// Looks up the exports in a new instance.
    pub(crate) fn load(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> Result<Exports> {
        Ok(match self {
            Contract::V0_1(indices) => Exports::V0_1(
                indices
                    .load(&mut *store, instance)
                    .map_err(anyhow::Error::from)?,
            ),
            Contract::V0_2 {
                handler,
                batch,
                hibernation,
                ..
            } => Exports::V0_2 {
                handler: handler
                    .load(&mut *store, instance)
                    .map_err(anyhow::Error::from)?,
                batch: match batch {
                    Some(b) => Some(b.load(&mut *store, instance).map_err(anyhow::Error::from)?),
                    None => None,
                },
                hibernation: match hibernation {
                    Some(h) => Some(h.load(&mut *store, instance).map_err(anyhow::Error::from)?),
                    None => None,
                },
            },
        })
    }
}

fn is_granted(import: &str) -> bool {
    if import.starts_with("wsbox:websocket/") {
        return true;
    }
    GRANTED_WASI.iter().any(|prefix| import.starts_with(prefix))
        && import
            .rsplit_once('@')
            .is_some_and(|(_, version)| version.starts_with("0.2."))
}

/// An instance's exports.
pub(crate) enum Exports {
    V0_1(v0_1::WebsocketHandler),
    V0_2 {
        handler: handler::Guest,
        batch: Option<batch_handler::Guest>,
        hibernation: Option<hibernation::Guest>,
    },
}

/// The connection a 0.2 handler's event is about: the instance's only one.
fn conn() -> Resource<ConnectionResource> {
    Resource::new_borrow(0)
}

impl Exports {
    /// Whether `on-messages` is there to take several messages at once.
    pub(crate) fn takes_batches(&self) -> bool {
        match self {
            Exports::V0_1(_) => true,
            Exports::V0_2 { batch, .. } => batch.is_some(),
        }
    }

    /// Whether the handler exports `hibernation` (0.2.3).
    pub(crate) fn hibernates(&self) -> bool {
        matches!(
            self,
            Exports::V0_2 {
                hibernation: Some(_),
                ..
            }
        )
    }

    /// `on-hibernate`: `Ok(None)` when the handler stays awake (or does not
    /// export the interface).
    pub(crate) async fn on_hibernate(
        &self,
        store: &mut Store<HostState>,
        max_attachment: u32,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        match self {
            Exports::V0_2 {
                hibernation: Some(h),
                ..
            } => {
                h.call_on_hibernate(&mut *store, conn(), max_attachment)
                    .await
            }
            _ => Ok(None),
        }
    }

    /// `on-hibernate-error`.
    pub(crate) async fn on_hibernate_error(
        &self,
        store: &mut Store<HostState>,
        error: hibernation::HibernateError,
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V0_2 {
                hibernation: Some(h),
                ..
            } => h.call_on_hibernate_error(&mut *store, conn(), error).await,
            _ => Ok(()),
        }
    }

    /// `on-wake`; nothing for a handler without the interface (a new
    /// version deployed meanwhile may not export it: it starts afresh).
    pub(crate) async fn on_wake(
        &self,
        store: &mut Store<HostState>,
        attachment: &[u8],
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V0_2 {
                hibernation: Some(h),
                ..
            } => h.call_on_wake(&mut *store, conn(), attachment).await,
            _ => Ok(()),
        }
    }

    pub(crate) async fn upgrade(
        &self,
        store: &mut Store<HostState>,
        request: UpgradeRequest,
    ) -> wasmtime::Result<UpgradeDecision> {
        let decision = match self {
            Exports::V0_1(b) => {
                let old = v0_1_adapt::request(&request);
                let d = b
                    .wsbox_websocket_handler()
                    .call_upgrade(&mut *store, &old)
                    .await?;
                v0_1_adapt::decision(d)
            }
            Exports::V0_2 { handler, .. } => handler.call_upgrade(&mut *store, &request).await?,
        };
        store.data_mut().conn.request = Some(PackedRequest::pack(&request));
        Ok(decision)
    }

    pub(crate) async fn on_open(
        &self,
        store: &mut Store<HostState>,
        info: &OpenInfo,
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V0_1(b) => {
                // 0.1 has no `connection.request`: the request goes here,
                // and the instance need not keep it.
                let request = store
                    .data_mut()
                    .conn
                    .request
                    .take()
                    .and_then(|packed| packed.unpack())
                    .map(|r| v0_1_adapt::request(&r))
                    .unwrap_or_else(|| v0_1_adapt::request(&super::host_imports::empty_request(0)));
                let info = v0_1::wsbox::websocket::types::ConnectionInfo {
                    request,
                    subprotocol: info.subprotocol.clone(),
                    extensions: info.extensions.clone(),
                };
                b.wsbox_websocket_handler()
                    .call_on_open(&mut *store, &info)
                    .await
            }
            Exports::V0_2 { handler, .. } => handler.call_on_open(&mut *store, conn(), info).await,
        }
    }

    pub(crate) async fn on_message(
        &self,
        store: &mut Store<HostState>,
        message: Message,
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V0_1(b) => {
                let message = v0_1_adapt::message(message);
                b.wsbox_websocket_handler()
                    .call_on_message(&mut *store, &message)
                    .await
            }
            Exports::V0_2 { handler, .. } => {
                handler.call_on_message(&mut *store, conn(), &message).await
            }
        }
    }

    /// Only when [`takes_batches`](Self::takes_batches).
    pub(crate) async fn on_messages(
        &self,
        store: &mut Store<HostState>,
        batch: &mut MessageBatch,
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V0_1(b) => {
                // The buffers move into the old type and back: no copy.
                let old = v0_1_adapt::batch(batch);
                let result = b
                    .wsbox_websocket_handler()
                    .call_on_messages(&mut *store, &old)
                    .await;
                v0_1_adapt::restore_batch(batch, old);
                result
            }
            Exports::V0_2 {
                batch: Some(batch_handler),
                ..
            } => {
                batch_handler
                    .call_on_messages(&mut *store, conn(), batch)
                    .await
            }
            Exports::V0_2 { batch: None, .. } => {
                wasmtime::bail!("on-messages called on a handler without the batch interface")
            }
        }
    }

    /// `on-ping` (or `on-pong` when `pong`).
    pub(crate) async fn on_ping_or_pong(
        &self,
        store: &mut Store<HostState>,
        pong: bool,
        data: &[u8],
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V0_1(b) if pong => {
                b.wsbox_websocket_handler()
                    .call_on_pong(&mut *store, data)
                    .await
            }
            Exports::V0_1(b) => {
                b.wsbox_websocket_handler()
                    .call_on_ping(&mut *store, data)
                    .await
            }
            Exports::V0_2 { handler, .. } if pong => {
                handler.call_on_pong(&mut *store, conn(), data).await
            }
            Exports::V0_2 { handler, .. } => handler.call_on_ping(&mut *store, conn(), data).await,
        }
    }

    pub(crate) async fn on_close(
        &self,
        store: &mut Store<HostState>,
        info: &CloseInfo,
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V0_1(b) => {
                let info = v0_1_adapt::close_info(info);
                b.wsbox_websocket_handler()
                    .call_on_close(&mut *store, &info)
                    .await
            }
            Exports::V0_2 { handler, .. } => handler.call_on_close(&mut *store, conn(), info).await,
        }
    }
}

/// Conversions between 0.2.0's types and 0.1.0's.
pub(crate) mod v0_1_adapt {
    use super::bindings::{
        self, CloseCause, CloseInfo, Message, MessageBatch, MessageKind, MessageSpan,
        UpgradeDecision, UpgradeRequest,
    };
    use super::v0_1::wsbox::websocket::types as old;

    pub(crate) fn request(r: &UpgradeRequest) -> old::UpgradeRequest {
        old::UpgradeRequest {
            connection_id: r.connection_id,
            path: r.path.clone(),
            query: r.query.clone(),
            headers: r
                .headers
                .iter()
                .map(|h| old::Header {
                    name: h.name.clone(),
                    value: String::from_utf8_lossy(&h.value).into_owned(),
                })
                .collect(),
            positional_captures: r.positional_captures.clone(),
            named_captures: r
                .named_captures
                .iter()
                .map(|c| old::NamedCapture {
                    name: c.name.clone(),
                    value: c.value.clone(),
                })
                .collect(),
            remote_addr: bindings::from_socket_address(&r.remote_address).to_string(),
            subprotocols: r.subprotocols.clone(),
            origin: r.origin.clone(),
            origin_allowed: r.origin_allowed,
        }
    }

    fn headers(headers: Vec<old::Header>) -> Vec<bindings::Header> {
        headers
            .into_iter()
            .map(|h| bindings::Header {
                name: h.name,
                value: h.value.into_bytes(),
            })
            .collect()
    }

    pub(crate) fn decision(d: old::UpgradeDecision) -> UpgradeDecision {
        match d {
            old::UpgradeDecision::Accept(a) => UpgradeDecision::Accept(bindings::Accept {
                subprotocol: a.subprotocol,
                headers: headers(a.headers),
                origin: match a.origin {
                    old::OriginDecision::HostVerdict => bindings::OriginDecision::HostVerdict,
                    old::OriginDecision::Allow => bindings::OriginDecision::Allow,
                    old::OriginDecision::Deny => bindings::OriginDecision::Deny,
                },
            }),
            old::UpgradeDecision::Reject(r) => UpgradeDecision::Reject(bindings::Reject {
                status: r.status,
                reason: r.reason,
                headers: headers(r.headers),
            }),
        }
    }

    pub(crate) fn message(m: Message) -> old::Message {
        match m {
            Message::Text(t) => old::Message::Text(t),
            Message::Binary(b) => old::Message::Binary(b),
        }
    }

    pub(crate) fn message_from_old(m: old::Message) -> Message {
        match m {
            old::Message::Text(t) => Message::Text(t),
            old::Message::Binary(b) => Message::Binary(b),
        }
    }

    fn kind_to_old(k: MessageKind) -> old::MessageKind {
        match k {
            MessageKind::Text => old::MessageKind::Text,
            MessageKind::Binary => old::MessageKind::Binary,
        }
    }

    fn kind_from_old(k: old::MessageKind) -> MessageKind {
        match k {
            old::MessageKind::Text => MessageKind::Text,
            old::MessageKind::Binary => MessageKind::Binary,
        }
    }

    /// Moves the batch's data into a 0.1 batch (the spans are rebuilt).
    pub(crate) fn batch(b: &mut MessageBatch) -> old::MessageBatch {
        old::MessageBatch {
            data: std::mem::take(&mut b.data),
            spans: b
                .spans
                .iter()
                .map(|s| old::MessageSpan {
                    kind: kind_to_old(s.kind),
                    len: s.len,
                })
                .collect(),
        }
    }

    /// Gives the data back after the call.
    pub(crate) fn restore_batch(b: &mut MessageBatch, old: old::MessageBatch) {
        b.data = old.data;
    }

    pub(crate) fn batch_from_old(b: old::MessageBatch) -> MessageBatch {
        MessageBatch {
            data: b.data,
            spans: b
                .spans
                .into_iter()
                .map(|s| MessageSpan {
                    kind: kind_from_old(s.kind),
                    len: s.len,
                })
                .collect(),
        }
    }

    pub(crate) fn close_info(info: &CloseInfo) -> old::CloseInfo {
        old::CloseInfo {
            code: info.code,
            reason: info.reason.clone(),
            cause: match info.cause {
                CloseCause::PeerClosed => old::CloseCause::PeerClosed,
                CloseCause::HandlerClosed => old::CloseCause::HandlerClosed,
                CloseCause::ProtocolError => old::CloseCause::ProtocolError,
                CloseCause::MessageTooBig => old::CloseCause::MessageTooBig,
                CloseCause::PingTimeout => old::CloseCause::PingTimeout,
                CloseCause::GoingAway => old::CloseCause::GoingAway,
                CloseCause::ConnectionLost => old::CloseCause::ConnectionLost,
                // 0.1 has no word for these; it named them so.
                CloseCause::OutputLimit => old::CloseCause::HandlerClosed,
                CloseCause::ClosedByServer => old::CloseCause::GoingAway,
            },
        }
    }

    pub(crate) fn log_level(l: old::LogLevel) -> bindings::LogLevel {
        match l {
            old::LogLevel::Trace => bindings::LogLevel::Trace,
            old::LogLevel::Debug => bindings::LogLevel::Debug,
            old::LogLevel::Info => bindings::LogLevel::Info,
            old::LogLevel::Warn => bindings::LogLevel::Warn,
            old::LogLevel::Error => bindings::LogLevel::Error,
        }
    }
}
