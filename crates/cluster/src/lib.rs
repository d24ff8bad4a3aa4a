//! Cluster mode's messaging. Every node can be asked about any
//! subscription; the one that serves its shard answers.
//!
//! **Usage** for a shard served elsewhere goes through the JetStream stream
//! `ROLLOVER_USAGE_{schema}` (work-queue retention, file storage, as many
//! replicas as NATS servers were named, up to 3): a message per record on
//! `rollover.{schema}.usage.{shard}`, its `Nats-Msg-Id` a digest of the
//! subscription and the record's idempotency key, its headers naming an
//! inbox for the result (one wildcard subscription per node receives every
//! result: a fresh subscription per call would race its own interest
//! across the routes of a NATS cluster, and lose the answer when the owner
//! is connected to another server). The owner pulls each shard's durable consumer
//! (`usage-{shard}`) while it serves the shard, rates a batch, commits it
//! (fenced), and only then acks the messages and sends each result to its
//! inbox. A copy the stream drops as a duplicate (within its two-minute
//! window) is asked of the owner directly, whose idempotency keys answer it.
//! While the stream cannot be reached, usage goes as a call, below.
//!
//! **Other calls** travel as
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

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use rollover_service::remote::Transport;
use rollover_service::{Service, ServiceError, UsageRecord, UsageResult};
use tokio::sync::{Semaphore, mpsc};

/// How long a node waits for the owner's answer to a call. It covers the
/// owner's group commit; past it the caller is told to retry.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Calls from other nodes this node runs at once; past it a call is
/// answered `busy` at once rather than queued without bound.
pub const MAX_CALLS_IN_FLIGHT: usize = 1024;

/// How long the owner has to commit a batch it pulled before the stream
/// hands its messages out again.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// How long a publish's acknowledgment from the stream may take before the
/// record goes as a call instead.
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(1);

/// How long other JetStream requests (creating the stream or a consumer)
/// may take: a NATS cluster creates many consumers slowly on a busy machine.
pub const JETSTREAM_API_TIMEOUT: Duration = Duration::from_secs(5);

/// After the stream could not be reached, how long usage goes as calls
/// before the stream is tried again.
pub const STREAM_RETRY: Duration = Duration::from_secs(2);

/// Messages the owner pulls from a shard's consumer at once.
pub const PULL_BATCH: usize = 500;

/// The longest a shard's usage goes as calls after its streamed usage went
/// unanswered (`STREAM_RETRY` the first time, twice that the second time in
/// a row, and so on).
pub const SLOW_SHARD_MAX: Duration = Duration::from_secs(16);

/// Streamed usage of this many shards unanswered within
/// [`STREAM_SICK_WINDOW`] means the stream is not reaching the owners (a
/// NATS cluster rebuilding the stream's state): then all usage goes as
/// calls for [`STREAM_SICK_CALLS`].
pub const STREAM_SICK_SHARDS: usize = 4;
pub const STREAM_SICK_WINDOW: Duration = Duration::from_secs(10);
pub const STREAM_SICK_CALLS: Duration = Duration::from_secs(10);
/// How long each pull request of an owner waits at the server, and how
/// often the server says it still holds one while no usage comes: a pull
/// that hears nothing for two heartbeats is made again.
pub const PULL_EXPIRES: Duration = Duration::from_secs(10);
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// A pull that got nothing for this long looks at the records the stream
/// held for its shard when last read (every [`LAG_EVERY`], one request per
/// node for all shards): records that were there and did not come within
/// [`PULL_STUCK`] mean the pull is stuck, and it pulls anew; stuck again
/// right after, it makes its consumer anew.
pub const PULL_CHECK: Duration = Duration::from_secs(2);
/// How long records the stream held for a shard may go undelivered to its
/// owner's pull before the pull counts as stuck.
pub const PULL_STUCK: Duration = Duration::from_secs(1);

/// How long the stream keeps a record nobody took (a shard no node serves).
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(86_400);

/// Streamed calls that went unanswered lately (when, and their shard), and
/// until when all usage goes as calls.
type Unanswered = (std::collections::VecDeque<(tokio::time::Instant, u32)>, Option<tokio::time::Instant>);

/// The NATS side of one node: it sends calls for shards served elsewhere
/// and answers calls for the shards it serves.
pub struct Nats {
    client: async_nats::Client,
    prefix: String,
    jetstream: async_nats::jetstream::Context,
    stream_name: String,
    /// Replicas of the stream: the NATS servers named, up to 3.
    replicas: usize,
    /// The stream, once created or found.
    stream: std::sync::OnceLock<async_nats::jetstream::stream::Stream>,
    counters: Counters,
    /// This value itself, for the futures the transport hands out.
    me: std::sync::OnceLock<std::sync::Weak<Nats>>,
    /// When the stream last failed: until [`STREAM_RETRY`] after it, usage
    /// goes as calls without waiting on JetStream.
    failed_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Shards whose streamed usage their owner did not answer in time: until
    /// when their usage goes as calls, and how many times in a row.
    slow: std::sync::Mutex<HashMap<u32, (tokio::time::Instant, u32)>>,
    /// Shards whose streamed usage went unanswered lately, and when; and
    /// until when all usage goes as calls (see [`STREAM_SICK_SHARDS`]).
    unanswered: std::sync::Mutex<Unanswered>,
    /// Streamed usage waiting for its results.
    results: Arc<Results>,
    /// What the stream held for each shard when last read.
    held: std::sync::Mutex<Arc<Held>>,
}

/// The records the stream held, by shard, when it was read at `at`.
struct Held {
    at: tokio::time::Instant,
    by_shard: HashMap<u32, u64>,
}

/// The results owners send for streamed usage: all to `{inbox}.{token}`,
/// one subscription, handed to whichever call registered the token.
struct Results {
    inbox: String,
    next: AtomicU64,
    waiting: std::sync::Mutex<HashMap<u64, mpsc::UnboundedSender<async_nats::Message>>>,
}

/// One call's place in [`Results`]; dropping it (the call done, or
/// stopped at an await) frees the token.
struct Awaiting {
    results: Arc<Results>,
    token: u64,
    incoming: mpsc::UnboundedReceiver<async_nats::Message>,
}

impl Results {
    fn register(results: &Arc<Results>) -> (String, Awaiting) {
        let token = results.next.fetch_add(1, Ordering::Relaxed);
        let (tx, incoming) = mpsc::unbounded_channel();
        results.waiting.lock().expect("results lock").insert(token, tx);
        (format!("{}.{token}", results.inbox), Awaiting { results: results.clone(), token, incoming })
    }

    /// Hands each result to its call; one whose call is gone is dropped.
    async fn dispatch(results: Arc<Results>, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            let Some(token) = message.subject.rsplit('.').next().and_then(|t| t.parse::<u64>().ok()) else { continue };
            match results.waiting.lock().expect("results lock").get(&token) {
                Some(call) => {
                    let _ = call.send(message);
                }
                None => tracing::debug!(token, "a streamed usage result came after its call gave up"),
            }
        }
        tracing::warn!("the results subscription ended; streamed usage gets no results until the node restarts");
    }
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        self.results.waiting.lock().expect("results lock").remove(&self.token);
    }
}

/// What went which way, for `/metrics`.
#[derive(Default)]
struct Counters {
    streamed: AtomicU64,
    stream_duplicates: AtomicU64,
    /// Records sent as calls because the stream could not take them.
    as_calls: AtomicU64,
    pulled: AtomicU64,
    /// Shards whose usage this node is pulling now (consumer made).
    pulling: AtomicU64,
    /// Pulls made anew after the server's heartbeats stopped, or while
    /// records waited that the pull did not get.
    pull_restarts: AtomicU64,
    /// Times all usage went as calls for a while, the stream not reaching
    /// the owners.
    stream_sick: AtomicU64,
}

impl Counters {
    fn render(&self, out: &mut String) {
        out.push_str("# HELP rollover_cluster_usage_forwarded_total Usage records for shards other nodes serve, by the way they went: stream (JetStream), stream_duplicate (the stream had the copy already; asked of the owner), call (the stream was unreachable).\n# TYPE rollover_cluster_usage_forwarded_total counter\n");
        for (way, counter) in [("stream", &self.streamed), ("stream_duplicate", &self.stream_duplicates), ("call", &self.as_calls)] {
            out.push_str(&format!("rollover_cluster_usage_forwarded_total{{way=\"{way}\"}} {}\n", counter.load(Ordering::Relaxed)));
        }
        out.push_str(&format!(
            "# HELP rollover_cluster_usage_pulling Shards whose usage this node pulls from the stream now (their consumer made).\n# TYPE rollover_cluster_usage_pulling gauge\nrollover_cluster_usage_pulling {}\n",
            self.pulling.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP rollover_cluster_usage_pulled_total Usage records this node pulled from the stream for shards it serves, rated and committed.\n# TYPE rollover_cluster_usage_pulled_total counter\nrollover_cluster_usage_pulled_total {}\n",
            self.pulled.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP rollover_cluster_usage_pull_restarts_total Pulls made anew: the server's heartbeats stopped (it no longer held the pull request), or records waited that the pull did not get.\n# TYPE rollover_cluster_usage_pull_restarts_total counter\nrollover_cluster_usage_pull_restarts_total {}\n",
            self.pull_restarts.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP rollover_cluster_usage_stream_sick_total Times this node sent all usage as calls for a while: streamed usage of several shards went unanswered.\n# TYPE rollover_cluster_usage_stream_sick_total counter\nrollover_cluster_usage_stream_sick_total {}\n",
            self.stream_sick.load(Ordering::Relaxed)
        ));
    }
}

impl Nats {
    fn subject(&self, shard: u32) -> String {
        format!("{}.shard.{shard}", self.prefix)
    }

    fn usage_subject(&self, shard: u32) -> String {
        format!("{}.usage.{shard}", self.prefix)
    }

    /// The stream, once a background task has created or found it (see
    /// [`keep_stream`]); `None` until then.
    async fn stream(&self) -> Option<&async_nats::jetstream::stream::Stream> {
        self.stream.get()
    }

    /// Whether the stream takes records now: set by [`keep_stream`], cleared
    /// by a publish that failed.
    fn stream_ready(&self) -> bool {
        self.stream.get().is_some()
            && self.failed_at.lock().expect("stream failure lock").is_none_or(|t| t.elapsed() >= STREAM_RETRY)
            && self.unanswered.lock().expect("unanswered lock").1.is_none_or(|until| tokio::time::Instant::now() >= until)
    }

    /// Notes that `shard`'s streamed usage went unanswered; when enough
    /// shards' did lately, sends all usage as calls for a while.
    fn note_unanswered(&self, shard: u32) {
        let now = tokio::time::Instant::now();
        let mut unanswered = self.unanswered.lock().expect("unanswered lock");
        let (recent, sick_until) = &mut *unanswered;
        recent.retain(|(at, s)| now.duration_since(*at) < STREAM_SICK_WINDOW && *s != shard);
        recent.push_back((now, shard));
        if recent.len() >= STREAM_SICK_SHARDS {
            recent.clear();
            *sick_until = Some(now + STREAM_SICK_CALLS);
            self.counters.stream_sick.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(shards = STREAM_SICK_SHARDS, window_s = STREAM_SICK_WINDOW.as_secs(), calls_for_s = STREAM_SICK_CALLS.as_secs(), "streamed usage of several shards went unanswered: the stream is not reaching their owners; all usage goes as calls for a while");
        }
    }

    /// Publishes `records` to the shard's subject and waits for the owner's
    /// result of each; `None` when the stream cannot take them now (no
    /// request waits for JetStream to come back: they go as calls).
    async fn stream_usage(&self, shard: u32, records: Vec<UsageRecord>) -> Option<Result<Vec<Option<UsageResult>>, ServiceError>> {
        if !self.stream_ready() || self.slow.lock().expect("slow shards lock").get(&shard).is_some_and(|(until, _)| tokio::time::Instant::now() < *until) {
            return None;
        }
        let streamed = self.publish_usage(shard, records).await;
        if streamed.is_none() {
            tracing::debug!(shard, "a publish to the usage stream failed; usage goes as calls for a moment");
            *self.failed_at.lock().expect("stream failure lock") = Some(tokio::time::Instant::now());
        }
        streamed
    }

    async fn publish_usage(&self, shard: u32, records: Vec<UsageRecord>) -> Option<Result<Vec<Option<UsageResult>>, ServiceError>> {
        self.stream().await?;
        let (inbox, mut results_in) = Results::register(&self.results);
        let mut acks = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let payload = serde_json::to_vec(record).ok()?;
            let message = async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(message_id(record))
                .header(REPLY_HEADER, inbox.as_str())
                .header(INDEX_HEADER, index.to_string().as_str());
            match self.jetstream.send_publish(self.usage_subject(shard), message).await {
                Ok(ack) => acks.push(ack),
                // Nothing of the call is in the stream: it may go as a call.
                Err(_) if index == 0 => return None,
                // Some records may be in the stream: a call now could answer
                // them `duplicate` though this is their first sending. The
                // client sends them again instead, a repeat indeed.
                Err(_) => return Some(Err(ServiceError::ShardMoving { shard })),
            }
        }
        let mut results: Vec<Option<UsageResult>> = vec![None; records.len()];
        let mut waiting = records.len();
        let mut streamed = vec![true; records.len()];
        let mut duplicates = Vec::new();
        // All at once: each acknowledgment has its own 1 s timeout, and
        // awaited one after another a slow stream would cost a second per
        // record before the wait for results even began.
        for (index, ack) in futures_util::future::join_all(acks.into_iter().map(|ack| ack.into_future())).await.into_iter().enumerate() {
            match ack {
                Ok(ack) if ack.duplicate => {
                    // The stream took this copy before: its result went to
                    // whoever sent it then. The owner's keys know.
                    duplicates.push(index);
                    streamed[index] = false;
                    waiting -= 1;
                }
                // Stored, or perhaps stored (its acknowledgment was lost or
                // late): either way its result comes to the inbox, or the
                // wait below runs out and the client sends it again.
                Ok(_) | Err(_) => {}
            }
        }
        self.counters.streamed.fetch_add((records.len() - duplicates.len()) as u64, Ordering::Relaxed);
        self.counters.stream_duplicates.fetch_add(duplicates.len() as u64, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        while waiting > 0 {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, results_in.incoming.recv()).await else {
                // The client sends them again: as calls for a while, as the
                // stream may not reach the owner now (its consumer is moving
                // between servers, or the stream's cluster state is being
                // rebuilt), each time longer, up to [`SLOW_SHARD_MAX`].
                let mut slow = self.slow.lock().expect("slow shards lock");
                let times = slow.get(&shard).map_or(0, |(_, times)| *times) + 1;
                let wait = (STREAM_RETRY * times).min(SLOW_SHARD_MAX);
                slow.insert(shard, (tokio::time::Instant::now() + wait, times));
                drop(slow);
                self.note_unanswered(shard);
                tracing::warn!(shard, waiting, calls_for_ms = wait.as_millis() as u64, "the owner did not answer streamed usage in time; the client retries, and the shard's usage goes as calls for a while");
                return Some(Err(ServiceError::ShardMoving { shard }));
            };
            let Ok(answered) = serde_json::from_slice::<Vec<(usize, UsageResult)>>(&message.payload) else { continue };
            for (index, result) in answered {
                if let Some(slot) = results.get_mut(index)
                    && slot.is_none()
                    && streamed[index]
                {
                    *slot = Some(result);
                    waiting -= 1;
                }
            }
        }
        self.slow.lock().expect("slow shards lock").remove(&shard);
        // The duplicates are left `None`: the service asks the owner.
        Some(Ok(results))
    }
}

const REPLY_HEADER: &str = "Rollover-Reply";
const INDEX_HEADER: &str = "Rollover-Index";

/// The message id the stream dedupes by: a digest of the subscription and
/// the record's idempotency key (ids may hold any character a header may
/// not).
fn message_id(record: &UsageRecord) -> String {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    digest.update(record.subscription.as_bytes());
    digest.update([0]);
    digest.update(rollover_service::remote::usage_key(record).as_bytes());
    digest.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl Transport for Nats {
    fn usage(&self, shard: u32, records: Vec<UsageRecord>) -> Pin<Box<dyn Future<Output = Option<Result<Vec<Option<UsageResult>>, ServiceError>>> + Send>> {
        let nats = self.me.get().and_then(std::sync::Weak::upgrade);
        Box::pin(async move {
            let nats = nats?;
            let count = records.len() as u64;
            let streamed = nats.stream_usage(shard, records).await;
            if streamed.is_none() {
                nats.counters.as_calls.fetch_add(count, Ordering::Relaxed);
            }
            streamed
        })
    }

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
    let options = match credentials(urls)? {
        Some(Credentials::UserPassword(user, password)) => async_nats::ConnectOptions::with_user_and_password(user, password),
        Some(Credentials::Token(token)) => async_nats::ConnectOptions::with_token(token),
        None => async_nats::ConnectOptions::new(),
    };
    let client = options
        .name(format!("rollover {node}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(CALL_TIMEOUT))
        .connect(urls)
        .await
        .map_err(|e| format!("cluster.nats_url: cannot connect: {e}"))?;
    let jetstream = async_nats::jetstream::context::ContextBuilder::new().timeout(JETSTREAM_API_TIMEOUT).ack_timeout(JETSTREAM_TIMEOUT).build(client.clone());
    // One subscription for every result of this node's streamed usage,
    // made before any usage is sent: its interest reaches every server of
    // the NATS cluster long before the first result does.
    let inbox = client.new_inbox();
    let results = Arc::new(Results { inbox: inbox.clone(), next: AtomicU64::new(0), waiting: std::sync::Mutex::new(HashMap::new()) });
    let subscriber = client.subscribe(format!("{inbox}.*")).await.map_err(|e| format!("cluster.nats_url: cannot subscribe for results: {e}"))?;
    tokio::spawn(Results::dispatch(results.clone(), subscriber));
    let nats = Arc::new(Nats {
        client,
        prefix: format!("rollover.{schema}"),
        jetstream,
        stream_name: format!("ROLLOVER_USAGE_{schema}"),
        replicas: urls.len().clamp(1, 3),
        stream: std::sync::OnceLock::new(),
        counters: Counters::default(),
        me: std::sync::OnceLock::new(),
        failed_at: std::sync::Mutex::new(None),
        slow: std::sync::Mutex::new(HashMap::new()),
        unanswered: std::sync::Mutex::new((std::collections::VecDeque::new(), None)),
        results,
        held: std::sync::Mutex::new(Arc::new(Held { at: tokio::time::Instant::now(), by_shard: HashMap::new() })),
    });
    let _ = nats.me.set(Arc::downgrade(&nats));
    let rendered = nats.clone();
    service.add_metrics(Box::new(move |out| rendered.counters.render(out)));
    tokio::spawn(keep_stream(nats.clone(), service.clone()));
    let (changes_tx, changes) = mpsc::unbounded_channel();
    service.on_shard_change(Box::new(move |shard, serving| {
        let _ = changes_tx.send((shard, serving));
    }));
    tokio::spawn(follow_shards(nats.clone(), service.clone(), changes));
    service.set_transport(nats.clone());
    Ok(nats)
}

/// What a NATS server is told to let a node in.
#[derive(Debug, PartialEq)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// The credentials `nats_url` carries (`nats://USER:PASSWORD@HOST:PORT`, or
/// `nats://TOKEN@HOST:PORT`), which async-nats does not take from the URL
/// itself: every URL that carries some must carry the same.
fn credentials(urls: &[String]) -> Result<Option<Credentials>, String> {
    let mut found: Option<Credentials> = None;
    for url in urls {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        let Some((userinfo, _)) = authority.rsplit_once('@') else { continue };
        let these = match userinfo.split_once(':') {
            Some((user, password)) => Credentials::UserPassword(user.to_string(), password.to_string()),
            None => Credentials::Token(userinfo.to_string()),
        };
        match &found {
            Some(earlier) if *earlier != these => return Err("cluster.nats_url: the URLs carry different credentials; give every URL the same, or only the first".into()),
            _ => found = Some(these),
        }
    }
    Ok(found)
}

/// Creates the usage stream (or finds it), trying again every second while
/// JetStream cannot be reached; until it exists usage goes as calls.
async fn keep_stream(nats: Arc<Nats>, service: Service) {
    let config = async_nats::jetstream::stream::Config {
        name: nats.stream_name.clone(),
        subjects: vec![format!("{}.usage.*", nats.prefix)],
        retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: nats.replicas,
        duplicate_window: Duration::from_secs(120),
        max_age: STREAM_MAX_AGE,
        ..Default::default()
    };
    let mut warned = false;
    loop {
        match nats.jetstream.get_or_create_stream(config.clone()).await {
            Ok(stream) => {
                let _ = nats.stream.set(stream);
                tracing::info!(stream = %nats.stream_name, replicas = nats.replicas, "the usage stream is ready");
                break;
            }
            Err(error) if !warned => {
                tracing::warn!(%error, "the JetStream usage stream cannot be created yet; usage for other nodes' shards goes as calls until it can");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The stream's lag: what waits in it (a work queue keeps only what no
    // owner has acked), read every few seconds for /v1/cluster and /metrics,
    // and by shard for the pulls' check (one request for every shard).
    let filter = format!("{}.usage.*", nats.prefix);
    while let Some(stream) = nats.stream.get() {
        let at = tokio::time::Instant::now();
        if let Some((total, by_shard)) = held_by_shard(stream, &filter).await {
            service.report_stream_lag(total, by_shard.clone());
            *nats.held.lock().expect("held lock") = Arc::new(Held { at, by_shard });
        }
        tokio::time::sleep(LAG_EVERY).await;
    }
}

/// The records the stream holds, in all and by shard; `None` when it
/// cannot be read now.
async fn held_by_shard(stream: &async_nats::jetstream::stream::Stream, filter: &str) -> Option<(u64, HashMap<u32, u64>)> {
    let mut subjects = stream.info_with_subjects(filter).await.ok()?;
    let total = subjects.info.state.messages;
    let mut by_shard = HashMap::new();
    let mut counted = 0u64;
    // Only as many pages as hold the records: the stream would otherwise
    // ask once more for a page past the last.
    while counted < total {
        let (subject, count) = subjects.next().await?.ok()?;
        counted += count as u64;
        if let Some(shard) = subject.rsplit('.').next().and_then(|s| s.parse::<u32>().ok()) {
            by_shard.insert(shard, count as u64);
        }
    }
    Some((total, by_shard))
}

/// How often the stream's lag is read.
pub const LAG_EVERY: Duration = Duration::from_secs(2);

/// Subscribes to each shard's subject while the service serves the shard.
async fn follow_shards(nats: Arc<Nats>, service: Service, mut changes: mpsc::UnboundedReceiver<(u32, bool)>) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
    let mut answering: HashMap<u32, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut pulling: HashMap<u32, tokio::task::JoinHandle<()>> = HashMap::new();
    while let Some((shard, serving)) = changes.recv().await {
        if let Some(task) = answering.remove(&shard) {
            task.abort();
        }
        if let Some(task) = pulling.remove(&shard) {
            task.abort();
        }
        if !serving {
            continue;
        }
        pulling.insert(shard, tokio::spawn(pull(nats.clone(), service.clone(), shard)));
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

/// Pulls the shard's usage from the stream while this node serves it:
/// rates each batch, and once it is committed acks it and sends each result
/// to the inbox its sender named. Runs until the task is stopped (the shard
/// given up or lost).
async fn pull(nats: Arc<Nats>, service: Service, shard: u32) {
    use async_nats::jetstream::AckKind;
    use async_nats::jetstream::consumer::{AckPolicy, pull::Config};
    let name = format!("usage-{shard}");
    let mut remake = false;
    // Checks in a row that found the pull stuck, and heartbeats missed in a
    // row.
    let mut stuck = 0u32;
    let mut misses = 0u32;
    'pulling: loop {
        let consumer = loop {
            if let Some(stream) = nats.stream().await {
                let config = Config {
                    durable_name: Some(name.clone()),
                    filter_subject: nats.usage_subject(shard),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: (PULL_BATCH * 4) as i64,
                    // As many replicas as the stream: a work queue removes
                    // a message when its consumer acks it, and a consumer
                    // with fewer replicas than its stream (nats-server 2.9
                    // allows it) acks without removing (seen here: acked
                    // messages stayed in the stream).
                    num_replicas: nats.replicas,
                    ..Default::default()
                };
                // Each new owner takes the shard's consumer as it is: the
                // pulls of an owner that died or gave the shard up go with
                // its connection or its subscription (the server drops a
                // pull nobody listens to), and what a paused owner was
                // handed comes again after `ack_wait`. Deleting and making
                // it anew on each takeover cost two cluster-wide JetStream
                // changes per shard moved, slow enough on a busy NATS
                // cluster (seen here: over 5 s) to leave records waiting.
                // A consumer is made anew only when its pull is stuck
                // (below); work-queue retention keeps every message not
                // acked, and the new consumer starts from them.
                if remake {
                    let _ = stream.delete_consumer(&name).await;
                    remake = false;
                }
                match stream.get_or_create_consumer::<Config>(&name, config).await {
                    Ok(consumer) => break consumer,
                    Err(error) => tracing::debug!(shard, %error, "the shard's usage consumer is not ready yet"),
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let _pulling = Pulling::new(&nats.counters.pulling);
        'streaming: loop {
            // Since when this pull has had nothing: records the stream held
            // before it say nothing about it.
            let mut quiet_since = tokio::time::Instant::now();
            let mut incoming = loop {
                match consumer.stream().max_messages_per_batch(PULL_BATCH).expires(PULL_EXPIRES).heartbeat(PULL_HEARTBEAT).messages().await {
                    Ok(incoming) => break incoming,
                    Err(error) => {
                        tracing::debug!(shard, %error, "pulling the shard's usage failed; again shortly");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            loop {
                // Waits for the first message, then takes what else is there now.
                let mut messages = Vec::new();
                let Ok(next) = tokio::time::timeout(PULL_CHECK, incoming.next()).await else {
                    // Nothing came for a while: do records wait that this
                    // pull does not get (its consumer deleted and made
                    // again, a request the server dropped)? Seen after a
                    // NATS server restarted: records waited a minute.
                    let held = nats.held.lock().expect("held lock").clone();
                    if held.at > quiet_since && held.at.elapsed() >= PULL_STUCK && held.by_shard.get(&shard).is_some_and(|&n| n > 0) {
                        stuck += 1;
                        nats.counters.pull_restarts.fetch_add(1, Ordering::Relaxed);
                        if stuck == 1 {
                            tracing::debug!(shard, held = held.by_shard[&shard], "records wait and none come: pulling anew");
                            continue 'streaming;
                        }
                        tracing::debug!(shard, held = held.by_shard[&shard], "records still wait after pulling anew: making the consumer anew");
                        remake = true;
                        continue 'pulling;
                    }
                    continue;
                };
                match next {
                    Some(Ok(message)) => {
                        messages.push(message);
                        stuck = 0;
                        misses = 0;
                    }
                    Some(Err(error)) if error.kind() == async_nats::jetstream::consumer::pull::MessagesErrorKind::MissingHeartbeat => {
                        // The server holds no pull request of ours any more,
                        // though the client counts one outstanding (seen here:
                        // records waited 5 s for their owner). Pull anew.
                        // Misses in a row wait longer each time before
                        // pulling again: a NATS cluster too busy to send
                        // heartbeats in time is not sent more pulls at once.
                        misses += 1;
                        let pause = PULL_HEARTBEAT * (misses - 1).min(2);
                        tracing::debug!(shard, misses, pause_ms = pause.as_millis() as u64, "no heartbeat from the shard's pull: pulling anew");
                        nats.counters.pull_restarts.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(pause).await;
                        continue 'streaming;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(shard, %error, "pulling the shard's usage: an error; going on");
                        continue;
                    }
                    None => {
                        tracing::warn!(shard, "the shard's usage pull ended; pulling again from a new consumer");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        remake = true;
                        continue 'pulling;
                    }
                }
                while messages.len() < PULL_BATCH {
                    match futures_util::FutureExt::now_or_never(incoming.next()) {
                        Some(Some(Ok(message))) => messages.push(message),
                        _ => break,
                    }
                }
                let mut records = Vec::with_capacity(messages.len());
                let mut rated = Vec::with_capacity(messages.len());
                let redelivered = messages.iter().filter(|m| m.info().is_ok_and(|info| info.delivered > 1)).count();
                if redelivered > 0 {
                    tracing::debug!(shard, redelivered, of = messages.len(), "usage records handed out again (not acked in time, or refused)");
                }
                for message in messages {
                    match serde_json::from_slice::<UsageRecord>(&message.payload) {
                        Ok(record) if rollover_service::shard_of(&record.subscription) == shard => {
                            records.push(record);
                            rated.push(message);
                        }
                        _ => {
                            // Not a record of this shard: nothing could ever rate it.
                            tracing::warn!(shard, "a message on the shard's usage subject is not one of its usage records; dropped");
                            let _ = message.ack_with(AckKind::Term).await;
                        }
                    }
                }
                match service.record_usage_here(records).await {
                    Ok(results) => {
                        nats.counters.pulled.fetch_add(results.len() as u64, Ordering::Relaxed);
                        let mut replies: HashMap<String, Vec<(usize, UsageResult)>> = HashMap::new();
                        for (message, result) in rated.iter().zip(results) {
                            let _ = message.ack().await;
                            let headers = message.headers.as_ref();
                            let reply = headers.and_then(|h| h.get(REPLY_HEADER)).map(|v| v.to_string());
                            let index = headers.and_then(|h| h.get(INDEX_HEADER)).and_then(|v| v.as_str().parse::<usize>().ok());
                            if let (Some(reply), Some(index)) = (reply, index) {
                                replies.entry(reply).or_default().push((index, result));
                            }
                        }
                        for (reply, answered) in replies {
                            if let Ok(body) = serde_json::to_vec(&answered) {
                                let _ = nats.client.publish(reply, body.into()).await;
                            }
                        }
                    }
                    Err(error) => {
                        // Handed out again at once (to whichever node serves the
                        // shard by then); nothing of the batch was acknowledged.
                        for message in &rated {
                            let _ = message.ack_with(AckKind::Nak(Some(Duration::from_millis(200)))).await;
                        }
                        // Given up or lost: the task is stopped, or a new one
                        // starts when the shard is taken again. Still served
                        // (a reload under way): pull on.
                        if matches!(error, ServiceError::ShardMoving { .. }) && !service.ownership().is_some_and(|o| o.serving(shard)) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                quiet_since = tokio::time::Instant::now();
            }
        }
    }
}

/// Counts a shard as pulled while it lives (the task may be stopped at any
/// await).
struct Pulling<'a>(&'a AtomicU64);

impl<'a> Pulling<'a> {
    fn new(counter: &'a AtomicU64) -> Pulling<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Pulling(counter)
    }
}

impl Drop for Pulling<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{Credentials, credentials};

    #[test]
    fn credentials_come_from_the_urls() {
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert_eq!(credentials(&urls(&["nats://127.0.0.1:4222"])), Ok(None));
        assert_eq!(credentials(&urls(&["nats://a:b@h1:4222", "nats://h2:4222"])), Ok(Some(Credentials::UserPassword("a".into(), "b".into()))));
        assert_eq!(credentials(&urls(&["tls://s3cret@h1:4222"])), Ok(Some(Credentials::Token("s3cret".into()))));
        assert!(credentials(&urls(&["nats://a:b@h1:4222", "nats://a:c@h2:4222"])).is_err(), "two different ones are refused");
    }
}
