//! The Redis broker: `SUBSCRIBE` on one connection, `PUBLISH` on another,
//! both made again after the server goes away.

use std::collections::HashSet;
use std::sync::Weak;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::mpsc;

use super::{Backoff, Cluster, Deliver, Outgoing};

/// Publishes sent to Redis in one pipeline at most.
const PIPELINE: usize = 256;

pub(super) async fn run(
    cluster: &Cluster,
    mut outgoing: mpsc::Receiver<Outgoing>,
    deliver: Weak<dyn Deliver>,
) {
    let client = match redis::Client::open(cluster.url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            // The config check already parsed it; this is a bug, not input.
            tracing::error!(url = %cluster.url, error = %e, "bad Redis URL: pub/sub stays on this node");
            return;
        }
    };
    let mut backoff = Backoff::new();
    let mut failures = 0u32;
    loop {
        let error = match connect(&client).await {
            Ok((sink, stream, publisher)) => {
                backoff.reset();
                failures = 0;
                serve(cluster, sink, stream, publisher, &mut outgoing, &deliver).await
            }
            Err(e) => e,
        };
        cluster.set_connected(false);
        cluster.drop_queued(&mut outgoing);
        // Say it once per outage, not once per attempt.
        if failures == 0 {
            tracing::warn!(
                url = %cluster.url,
                error = %error,
                "pub/sub broker unreachable: messages for other nodes fail until it is back; reconnecting"
            );
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn connect(
    client: &redis::Client,
) -> redis::RedisResult<(PubSubSink, redis::aio::PubSubStream, MultiplexedConnection)> {
    let (sink, stream) = client.get_async_pubsub().await?.split();
    let publisher = client.get_multiplexed_async_connection().await?;
    Ok((sink, stream, publisher))
}

/// Serves one connection to Redis until it breaks; returns why.
async fn serve(
    cluster: &Cluster,
    mut sink: PubSubSink,
    mut stream: redis::aio::PubSubStream,
    mut publisher: MultiplexedConnection,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    deliver: &Weak<dyn Deliver>,
) -> redis::RedisError {
    let mut subscribed: HashSet<String> = HashSet::new();
    if let Err(e) = follow(cluster, &mut sink, &mut subscribed).await {
        return e;
    }
    cluster.set_connected(true);
    tracing::info!(
        url = %cluster.url,
        node = cluster.node,
        channels = subscribed.len(),
        "connected to the pub/sub broker"
    );
    let mut batch = Vec::with_capacity(PIPELINE);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(m) => cluster.received(deliver, m.get_payload_bytes()),
                None => return redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the subscriber connection closed",
                )),
            },
            () = cluster.wanted_changed.notified() => {
                if let Err(e) = follow(cluster, &mut sink, &mut subscribed).await {
                    return e;
                }
            }
            n = outgoing.recv_many(&mut batch, PIPELINE) => {
                if n == 0 {
                    // The cluster is gone (the server stopped).
                    return redis::RedisError::from(std::io::Error::other("shutting down"));
                }
                let mut pipe = redis::pipe();
                for m in &batch {
                    pipe.publish(&m.channel, &m.payload[..]).ignore();
                }
                if let Err(e) = pipe.query_async::<()>(&mut publisher).await {
                    for m in &batch {
                        cluster.count_error(&m.tenant);
                    }
                    batch.clear();
                    return e;
                }
                batch.clear();
            }
        }
    }
}

/// Subscribes to what is wanted and not subscribed, unsubscribes from the
/// rest.
async fn follow(
    cluster: &Cluster,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<String>,
) -> redis::RedisResult<()> {
    let wanted = cluster.wanted();
    let add: Vec<&String> = wanted.difference(subscribed).collect();
    if !add.is_empty() {
        sink.subscribe(&add).await?;
    }
    let remove: Vec<&String> = subscribed.difference(&wanted).collect();
    if !remove.is_empty() {
        sink.unsubscribe(&remove).await?;
    }
    *subscribed = wanted;
    Ok(())
}
