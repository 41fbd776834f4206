//! The NATS broker: one subject per channel. `async-nats` reconnects by
//! itself (with our backoff) and subscribes again to every subject it had.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_nats::{ConnectOptions, Event};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{Backoff, Cluster, Deliver, Outgoing};

pub(super) async fn run(
    cluster: &Arc<Cluster>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    deliver: Weak<dyn Deliver>,
) {
    let events = Arc::clone(cluster);
    let options = ConnectOptions::new()
        .name(format!("wsbox node {}", cluster.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let exp = u32::try_from(attempts.min(16)).unwrap_or(16);
            (Backoff::FIRST * 2u32.pow(exp)).min(Backoff::MAX)
        })
        .event_callback(move |event| {
            let cluster = Arc::clone(&events);
            async move { on_event(&cluster, &event) }
        });
    let client = match options.connect(cluster.url.as_str()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %cluster.url, error = %e, "cannot use the NATS broker: pub/sub stays on this node");
            return;
        }
    };
    if client.connection_state() == async_nats::connection::State::Connected {
        on_event(cluster, &Event::Connected);
    }
    let mut subscriptions: HashMap<String, AbortHandle> = HashMap::new();
    follow(cluster, &client, &mut subscriptions, &deliver).await;
    loop {
        tokio::select! {
            () = cluster.wanted_changed.notified() => {
                follow(cluster, &client, &mut subscriptions, &deliver).await;
            }
            message = outgoing.recv() => {
                let Some(m) = message else { break };
                if let Err(e) = client.publish(m.channel, m.payload).await {
                    cluster.count_error(&m.tenant);
                    tracing::debug!(error = %e, "publish to NATS failed");
                }
            }
        }
    }
    for handle in subscriptions.values() {
        handle.abort();
    }
}

fn on_event(cluster: &Cluster, event: &Event) {
    match event {
        Event::Connected => {
            if !cluster.is_connected() {
                cluster.set_connected(true);
                tracing::info!(url = %cluster.url, node = cluster.node, "connected to the pub/sub broker");
            }
        }
        Event::Disconnected | Event::Closed => {
            if cluster.is_connected() {
                cluster.set_connected(false);
                tracing::warn!(
                    url = %cluster.url,
                    "pub/sub broker unreachable: messages for other nodes fail until it is back; reconnecting"
                );
            }
        }
        other => tracing::debug!(event = %other, "NATS event"),
    }
}

/// Subscribes to what is wanted and not subscribed, unsubscribes from the
/// rest (dropping a subscriber unsubscribes it).
async fn follow(
    cluster: &Arc<Cluster>,
    client: &async_nats::Client,
    subscriptions: &mut HashMap<String, AbortHandle>,
    deliver: &Weak<dyn Deliver>,
) {
    let wanted = cluster.wanted();
    subscriptions.retain(|subject, handle| {
        let keep = wanted.contains(subject);
        if !keep {
            handle.abort();
        }
        keep
    });
    for subject in wanted {
        if subscriptions.contains_key(&subject) {
            continue;
        }
        let mut subscriber = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                // The client is closed; nothing will be delivered.
                tracing::warn!(subject, error = %e, "NATS subscribe failed");
                continue;
            }
        };
        let cluster = Arc::clone(cluster);
        let deliver = deliver.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                cluster.received(&deliver, &message.payload);
            }
        });
        subscriptions.insert(subject, task.abort_handle());
    }
}
