//! Cluster mode's messaging. Every node can be asked about any
//! subscription; the one that serves its shard answers. Calls travel as
//! NATS request-reply on `rollover.{schema}.shard.{n}` (the store's schema
//! names the cluster, so clusters sharing NATS servers never cross): a node
//! subscribes to a shard's subject while it serves the shard and only then
//! (the lease manager tells it, [`rollover_service::Service::on_shard_change`]),
//! and unsubscribes when it stops. A call nobody answers (no node serves the
//! shard yet: `no responders`), or that gets no answer in
//! [`CALL_TIMEOUT`], is [`ServiceError::ShardMoving`]: HTTP 503 with
//! `Retry-After`, Diameter 3004, no RADIUS answer, so the client sends it
//! again; idempotency keys make the second copy `duplicate` if the first was
//! committed after all.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rollover_service::remote::Transport;
use rollover_service::{Service, ServiceError};
use tokio::sync::{Semaphore, mpsc};

/// How long a node waits for the owner's answer to a call. It covers the
/// owner's group commit; past it the caller is told to retry.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Calls from other nodes this node runs at once; past it a call is
/// answered `busy` at once rather than queued without bound.
pub const MAX_CALLS_IN_FLIGHT: usize = 1024;

/// The NATS side of one node: it sends calls for shards served elsewhere
/// and answers calls for the shards it serves.
pub struct Nats {
    client: async_nats::Client,
    prefix: String,
}

impl Nats {
    fn subject(&self, shard: u32) -> String {
        format!("{}.shard.{shard}", self.prefix)
    }
}

impl Transport for Nats {
    fn request(&self, shard: u32, body: Vec<u8>) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, ServiceError>> + Send>> {
        let (client, subject) = (self.client.clone(), self.subject(shard));
        Box::pin(async move {
            match tokio::time::timeout(CALL_TIMEOUT, client.request(subject, body.into())).await {
                Ok(Ok(message)) => Ok(message.payload.to_vec()),
                Ok(Err(error)) => {
                    tracing::debug!(shard, %error, "a call to the shard's owner got no answer");
                    Err(ServiceError::ShardMoving { shard })
                }
                Err(_) => {
                    tracing::warn!(shard, "a call to the shard's owner timed out");
                    Err(ServiceError::ShardMoving { shard })
                }
            }
        })
    }
}

/// Connects this node to NATS (`urls`, one or more servers of a cluster;
/// it keeps reconnecting while they are away), makes the service send its
/// calls for other nodes' shards through it, and answers calls for the
/// shards the service serves, subscribing as it takes them.
pub async fn connect(urls: &[String], schema: &str, service: Service) -> Result<Arc<Nats>, String> {
    let node = service.node_id().ok_or("the service is not a node of a cluster")?.to_string();
    let client = async_nats::ConnectOptions::new()
        .name(format!("rollover {node}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(CALL_TIMEOUT))
        .connect(urls)
        .await
        .map_err(|e| format!("cluster.nats_url: cannot connect: {e}"))?;
    let nats = Arc::new(Nats { client, prefix: format!("rollover.{schema}") });
    let (changes_tx, changes) = mpsc::unbounded_channel();
    service.on_shard_change(Box::new(move |shard, serving| {
        let _ = changes_tx.send((shard, serving));
    }));
    tokio::spawn(follow_shards(nats.clone(), service.clone(), changes));
    service.set_transport(nats.clone());
    Ok(nats)
}

/// Subscribes to each shard's subject while the service serves the shard.
async fn follow_shards(nats: Arc<Nats>, service: Service, mut changes: mpsc::UnboundedReceiver<(u32, bool)>) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
    let mut answering: HashMap<u32, tokio::task::JoinHandle<()>> = HashMap::new();
    while let Some((shard, serving)) = changes.recv().await {
        if let Some(task) = answering.remove(&shard) {
            task.abort();
        }
        if !serving {
            continue;
        }
        // Subscribing waits for nothing but the client's queue; the server
        // has it once the client's next flush goes out.
        match nats.client.subscribe(nats.subject(shard)).await {
            Ok(subscriber) => {
                answering.insert(shard, tokio::spawn(answer(nats.client.clone(), service.clone(), subscriber, calls.clone())));
            }
            Err(error) => tracing::error!(shard, %error, "cannot subscribe to the shard's calls; other nodes get no answer for it"),
        }
    }
}

/// Answers the calls of one shard, each in a task of its own.
async fn answer(client: async_nats::Client, service: Service, mut subscriber: async_nats::Subscriber, calls: Arc<Semaphore>) {
    while let Some(message) = subscriber.next().await {
        let Some(reply) = message.reply else { continue };
        let Ok(permit) = calls.clone().try_acquire_owned() else {
            let busy = service.answer_busy();
            let _ = client.publish(reply, busy.into()).await;
            continue;
        };
        let (client, service) = (client.clone(), service.clone());
        tokio::spawn(async move {
            let answer = service.answer_remote(&message.payload).await;
            if let Err(error) = client.publish(reply, answer.into()).await {
                tracing::warn!(%error, "cannot send an answer to another node; it retries");
            }
            drop(permit);
        });
    }
}
