//! The broadcast benchmark handler (`wsbox bench broadcast`): every
//! connection subscribes to one topic when it opens, and every message it
//! sends is published, unchanged and with its type, to every other
//! connection of the topic (the sender is excluded). The host encodes each
//! published message once and queues the same bytes on every subscriber;
//! this handler never loops over connections.
//!
//! This is the wire protocol every peer of `bench/run.sh`'s broadcast
//! scenarios implements at `/broadcast`.
//!
//! With `subscribe=0` in the query (`/broadcast?subscribe=0`) the
//! connection does not subscribe: the same handler, idle, with and without
//! a subscription, is how the memory a subscription costs is measured
//! (`wsbox bench idle -s 0`).

use wsbox_guest::{Message, WebSocketHandler, Ws, log};

/// The one topic every connection of the route shares.
pub const TOPIC: &str = "broadcast";

#[derive(Default)]
struct Broadcast {
    /// Publishes the host refused (rate limit), logged once at close.
    refused: u64,
}

impl WebSocketHandler for Broadcast {
    fn open(&mut self, ws: &Ws) {
        // Deliveries are small and latency is measured: no Nagle delay (as
        // Node's ws and Python's asyncio do by default, and the other
        // broadcast peers are told to).
        ws.set_nodelay(true);
        if ws.request().query.split('&').any(|kv| kv == "subscribe=0") {
            return;
        }
        if let Err(e) = ws.subscribe(TOPIC) {
            log::warn(format!("broadcast: subscribe failed: {e:?}"));
            let _ = ws.close(Some(1011), Some("cannot subscribe"));
        }
    }

    fn on_message(&mut self, ws: &Ws, message: Message) {
        if ws.publish_to_others(TOPIC, message).is_err() {
            self.refused += 1;
        }
    }

    fn on_close(&mut self, _ws: &Ws, _info: &wsbox_guest::CloseInfo) {
        if self.refused > 0 {
            log::warn(format!(
                "broadcast: {} publishes refused by the host",
                self.refused
            ));
        }
    }
}

wsbox_guest::export_handler!(Broadcast);

#[cfg(test)]
mod tests {
    use super::{Broadcast, TOPIC};
    use wsbox_guest::testing::{Sent, TestConnection, TestHub};
    use wsbox_guest::{Message, UpgradeRequest};

    fn join(hub: &TestHub, id: u64) -> TestConnection<Broadcast> {
        let request = UpgradeRequest {
            connection_id: id,
            path: "/broadcast".into(),
            ..UpgradeRequest::default()
        };
        TestConnection::connect_in(hub, request).unwrap()
    }

    #[test]
    fn every_message_goes_to_every_other_connection_unchanged() {
        let hub = TestHub::new();
        let mut a = join(&hub, 1);
        let mut b = join(&hub, 2);
        let mut c = join(&hub, 3);
        assert_eq!(hub.subscriber_count(TOPIC), 3);
        for conn in [&mut a, &mut b, &mut c] {
            assert_eq!(conn.take_sent(), [Sent::Nodelay(true)]);
        }
        a.receive(Message::Binary(vec![0, 1, 2]));
        a.receive("text too");
        assert!(a.take_sent().is_empty(), "the sender is excluded");
        for conn in [&mut b, &mut c] {
            assert_eq!(
                conn.take_sent(),
                [Sent::Binary(vec![0, 1, 2]), Sent::Text("text too".into())]
            );
        }
        b.close_from_peer(Some(1000), "");
        assert_eq!(hub.subscriber_count(TOPIC), 2);
    }

    #[test]
    fn subscribe_0_stays_out_of_the_topic() {
        let hub = TestHub::new();
        let request = UpgradeRequest {
            connection_id: 7,
            path: "/broadcast".into(),
            query: "subscribe=0".into(),
            ..UpgradeRequest::default()
        };
        let _idle = TestConnection::<Broadcast>::connect_in(&hub, request).unwrap();
        assert_eq!(hub.subscriber_count(TOPIC), 0);
    }
}
