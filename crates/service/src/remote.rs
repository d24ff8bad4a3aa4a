//! Cluster mode: calls for a subscription whose shard another node serves.
//! The service turns such a call into a [`Call`], hands its bytes to the
//! [`Transport`] (NATS request-reply to the shard's subject, in
//! `rollover-cluster`), and the owner runs it with [`Service::answer_remote`]
//! exactly as it would run it for a client of its own: the answer means what
//! it means on one node (`accepted` only after the owner's fenced commit).
//!
//! The bytes are JSON. Every node of a cluster runs the same version; an
//! answer that does not read is [`ServiceError::ShardMoving`], so the client
//! retries rather than trusts it.

use std::future::Future;
use std::pin::Pin;

use rollover_core::{Country, Instant};
use serde::{Deserialize, Serialize};

use crate::{Balance, EventOutcome, LifecycleEvent, NewSubscription, Service, ServiceError, SessionAnswer, SessionOp, SubscriptionIdentifiers, UsageRecord, UsageResult};

/// The most bytes a call may have (NATS servers take 1 MiB by default).
pub const MAX_REMOTE_BYTES: usize = 1 << 20;

/// Usage records forwarded in one call: well under [`MAX_REMOTE_BYTES`]
/// whatever their ids.
pub const RECORDS_PER_CALL: usize = 1000;

/// Moves a call's bytes to the node serving `shard` and brings its answer
/// back; any failure to get one (no node serves the shard now, a timeout,
/// NATS away) is [`ServiceError::ShardMoving`].
pub trait Transport: Send + Sync + 'static {
    fn request(&self, shard: u32, body: Vec<u8>) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, ServiceError>> + Send>>;

    /// Usage records for `shard` through a durable stream, when the
    /// transport has one: their results in order, each given only after the
    /// owner's commit; a `None` result (the stream dropped that copy as a
    /// duplicate) is asked of the owner by [`Transport::request`]. `None`
    /// altogether: no stream now, and every record goes by request.
    #[allow(clippy::type_complexity)]
    fn usage(&self, _shard: u32, _records: Vec<UsageRecord>) -> Pin<Box<dyn Future<Output = Option<Result<Vec<Option<UsageResult>>, ServiceError>>> + Send>> {
        Box::pin(async { None })
    }
}

/// The idempotency key the owner's worker files a usage record under (its
/// id, or a counter report's `#acct:` key): what makes two copies the same.
pub fn usage_key(record: &UsageRecord) -> String {
    match &record.counter {
        None => crate::keys::Key::Record(&record.id).encode(),
        Some(counter) => crate::keys::Key::Counter { session: &counter.session, total: counter.total, stop: counter.stop }.encode(),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Call {
    Usage(Vec<UsageRecord>),
    Session { session: String, subscription: Option<String>, op: SessionOp, at: Option<Instant>, country: Option<Country> },
    Event { subscription: String, event: LifecycleEvent, at: Option<Instant>, key: Option<String> },
    Balance(String),
    Projection { subscription: String, daily_bytes: u64 },
    Create { id: String, plan: String, at: Option<Instant>, identifiers: [Option<String>; 4] },
    Note { subscription: String, note: String, webhook: Option<(String, String, serde_json::Value)> },
    /// The subscriptions of `shards` that pass the filter (a status name, a
    /// plan id): the first `depth` by id, how many in all, and (when
    /// `depth` is 0) how many on each plan version.
    List { status: Option<String>, plan: Option<String>, shards: Vec<u32>, depth: usize },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    Usage(Vec<UsageResult>),
    Session(SessionAnswer),
    Event(EventOutcome),
    Balance(Balance),
    Projection(Option<rollover_core::Projection>),
    List(ListPart),
    Done,
    Error(WireError),
}

/// One node's part of a list of the cluster's subscriptions.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ListPart {
    /// The first `depth` that pass, by id: id, plan, version, status.
    pub(crate) found: Vec<(String, String, u32, String)>,
    /// How many pass.
    pub(crate) total: usize,
    /// How many pass on each plan version (asked with `depth` 0).
    pub(crate) by_version: Vec<(String, u32, usize)>,
    /// Shards asked for that the node does not serve now: its part lacks
    /// them.
    pub(crate) missing: Vec<u32>,
}

/// A [`ServiceError`] as it crosses between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireError {
    code: String,
    field: Option<String>,
    /// The id, owner or message the error carries.
    text: String,
    shard: Option<u32>,
}

/// Field names errors carry, as `'static` strings again.
const FIELDS: &[&str] = &[
    "id",
    "at",
    "now",
    "plan",
    "change_plan",
    "subscription",
    "addon",
    "kind",
    "bytes",
    "expires",
    "identifiers.iccid",
    "identifiers.imsi",
    "identifiers.msisdn",
    "identifiers.external_id",
];

fn field(name: Option<&str>) -> &'static str {
    name.and_then(|n| FIELDS.iter().find(|f| **f == n).copied()).unwrap_or("body")
}

impl WireError {
    fn of(error: &ServiceError) -> WireError {
        let text = match error {
            ServiceError::UnknownSubscription { id } | ServiceError::UnknownSession { id } | ServiceError::SubscriptionExists { id } | ServiceError::SessionOpen { id } => id.clone(),
            ServiceError::IdentifierTaken { owner, .. } => owner.clone(),
            ServiceError::UnknownReference { message, .. } | ServiceError::InstantOutOfRange { message, .. } | ServiceError::Invalid { message, .. } => message.clone(),
            ServiceError::PurchaseConflict { id } => id.clone(),
            other => other.to_string(),
        };
        let shard = match error {
            ServiceError::ShardMoving { shard } => Some(*shard),
            _ => None,
        };
        WireError { code: error.code().to_string(), field: error.field().map(str::to_string), text, shard }
    }

    fn error(self) -> ServiceError {
        let field = field(self.field.as_deref());
        match self.code.as_str() {
            "unknown_subscription" => ServiceError::UnknownSubscription { id: self.text },
            "unknown_session" => ServiceError::UnknownSession { id: self.text },
            "subscription_exists" => ServiceError::SubscriptionExists { id: self.text },
            "session_open" => ServiceError::SessionOpen { id: self.text },
            "identifier_taken" => ServiceError::IdentifierTaken { field, owner: self.text },
            "unknown_reference" => ServiceError::UnknownReference { field, message: self.text },
            "instant_out_of_range" => ServiceError::InstantOutOfRange { field, message: self.text },
            "invalid_field" => ServiceError::Invalid { field, message: self.text },
            "purchase_conflict" => ServiceError::PurchaseConflict { id: self.text },
            "busy" => ServiceError::Busy,
            "shard_moving" => ServiceError::ShardMoving { shard: self.shard.unwrap_or(0) },
            _ => ServiceError::Stopped { what: "the node that owns the subscription" },
        }
    }
}

fn unexpected(shard: u32) -> ServiceError {
    ServiceError::ShardMoving { shard }
}

impl Service {
    /// The shard of `subscription` when another node serves it and there
    /// is a way to reach that node.
    pub(crate) fn remote_shard(&self, subscription: &str) -> Option<u32> {
        let membership = self.inner.membership.as_ref()?;
        let shard = crate::shard_of(subscription);
        (!membership.ownership.serving(shard) && self.inner.transport.get().is_some()).then_some(shard)
    }

    /// Sends `call` to the node serving `shard` and reads its answer.
    pub(crate) async fn forward(&self, shard: u32, call: Call) -> Result<Answer, ServiceError> {
        let transport = self.inner.transport.get().ok_or(ServiceError::ShardMoving { shard })?;
        let body = serde_json::to_vec(&call).map_err(|_| unexpected(shard))?;
        let reply = transport.request(shard, body).await?;
        match serde_json::from_slice::<Answer>(&reply) {
            Ok(Answer::Error(error)) => Err(error.error()),
            Ok(answer) => Ok(answer),
            Err(error) => {
                tracing::warn!(shard, %error, "an answer from another node does not read");
                Err(unexpected(shard))
            }
        }
    }

    /// Sets how calls reach other nodes (once; `rollover-cluster` does this
    /// when it connects to NATS).
    pub fn set_transport(&self, transport: std::sync::Arc<dyn Transport>) {
        let _ = self.inner.transport.set(transport);
    }

    /// The answer to a call this node has no room to run now.
    pub fn answer_busy(&self) -> Vec<u8> {
        serde_json::to_vec(&Answer::Error(WireError::of(&ServiceError::Busy))).unwrap_or_default()
    }

    /// Runs a call another node forwarded, here and never further, and
    /// answers its bytes.
    pub async fn answer_remote(&self, body: &[u8]) -> Vec<u8> {
        if body.len() > MAX_REMOTE_BYTES {
            let error = ServiceError::Invalid { field: "body", message: format!("a call of {} bytes; at most {MAX_REMOTE_BYTES}", body.len()) };
            return serde_json::to_vec(&Answer::Error(WireError::of(&error))).unwrap_or_default();
        }
        let answer = match serde_json::from_slice::<Call>(body) {
            Ok(call) => self.run_call(call).await.unwrap_or_else(|e| Answer::Error(WireError::of(&e))),
            Err(error) => Answer::Error(WireError::of(&ServiceError::Invalid { field: "body", message: format!("a call from another node does not read: {error}") })),
        };
        serde_json::to_vec(&answer).unwrap_or_default()
    }

    async fn run_call(&self, call: Call) -> Result<Answer, ServiceError> {
        Ok(match call {
            Call::Usage(records) => Answer::Usage(self.record_usage_here(records).await?),
            Call::Session { session, subscription, op, at, country } => Answer::Session(self.session_here(&session, subscription.as_deref(), op, at, country).await?),
            Call::Event { subscription, event, at, key } => Answer::Event(self.apply_keyed_here(&subscription, event, at, key).await?),
            Call::Balance(id) => Answer::Balance(self.balance_here(&id).await?),
            Call::Projection { subscription, daily_bytes } => Answer::Projection(self.projection_here(&subscription, daily_bytes).await?),
            Call::Create { id, plan, at, identifiers: [iccid, imsi, msisdn, external_id] } => {
                let identifiers = SubscriptionIdentifiers { iccid, imsi, msisdn, external_id };
                self.create_here(NewSubscription { id, plan, at, identifiers }).await?;
                Answer::Done
            }
            Call::Note { subscription, note, webhook } => {
                let webhook = match webhook {
                    Some((kind, key, data)) => {
                        let kind = NOTE_KINDS.iter().find(|k| **k == kind).copied().ok_or(ServiceError::Invalid { field: "kind", message: format!("no webhook type {kind:?}") })?;
                        Some((kind, key, data))
                    }
                    None => None,
                };
                self.note_here(&subscription, note, webhook).await?;
                Answer::Done
            }
            Call::List { status, plan, shards, depth } => {
                let status = match status {
                    Some(name) => Some(rollover_core::Status::parse(&name).ok_or(ServiceError::Invalid { field: "body", message: format!("no status {name:?}") })?),
                    None => None,
                };
                Answer::List(self.list_part(crate::SubscriptionFilter { status, plan }, &shards, depth.min(crate::CLUSTER_LIST_DEPTH)).await?)
            }
        })
    }

    /// This node's part of a cluster-wide list: the subscriptions of those
    /// of `shards` it serves, before and after asking its workers under the
    /// same epoch (a shard that moved meanwhile is missing, not half there).
    pub(crate) async fn list_part(&self, filter: crate::SubscriptionFilter, shards: &[u32], depth: usize) -> Result<ListPart, ServiceError> {
        let ownership = self.ownership().ok_or(ServiceError::Stopped { what: "the cluster membership" })?;
        let before: std::collections::HashMap<u32, i64> = ownership.served().into_iter().filter(|(shard, _)| shards.contains(shard)).collect();
        let lists = self.ask_every_worker(|reply| crate::worker::Command::List { filter: filter.clone(), reply }).await?;
        let after: std::collections::HashMap<u32, i64> = ownership.served().into_iter().collect();
        let held = |shard: u32| before.get(&shard).is_some_and(|epoch| after.get(&shard) == Some(epoch));
        let mut part = ListPart { missing: shards.iter().copied().filter(|&s| !held(s)).collect(), ..ListPart::default() };
        let mut found: Vec<crate::SubscriptionSummary> = lists.into_iter().flatten().filter(|s| held(crate::shard_of(&s.id))).collect();
        part.total = found.len();
        if depth == 0 {
            part.by_version = crate::count_by_version(&found).into_iter().map(|((plan, version), n)| (plan, version, n)).collect();
        }
        found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        found.truncate(depth);
        part.found = found.into_iter().map(|s| (s.id, s.plan.id, s.plan.version, s.status.name().to_string())).collect();
        Ok(part)
    }

    /// The subscriptions of the whole cluster that pass `filter`: each node
    /// asked at once for the shards its lease holds (this one asks its own
    /// workers). A shard without a live lease, or not served by the node
    /// holding it (taking it over), makes the answer
    /// [`ServiceError::ShardMoving`]: retry, rather than a list that
    /// quietly lacks it.
    pub(crate) async fn list_cluster(&self, filter: &crate::SubscriptionFilter, depth: usize) -> Result<(Vec<crate::SubscriptionSummary>, ListPart), ServiceError> {
        let status = self.cluster_status().await?.ok_or(ServiceError::Stopped { what: "the cluster membership" })?;
        let mut groups: std::collections::BTreeMap<String, Vec<u32>> = std::collections::BTreeMap::new();
        for lease in &status.leases {
            match &lease.owner {
                Some(owner) if lease.remaining_ms > 0 => groups.entry(owner.clone()).or_default().push(lease.shard),
                _ => return Err(ServiceError::ShardMoving { shard: lease.shard }),
            }
        }
        let mut asks = tokio::task::JoinSet::new();
        for (owner, shards) in groups {
            let (service, filter) = (self.clone(), filter.clone());
            let here = owner == status.node;
            asks.spawn(async move {
                if here {
                    return service.list_part(filter, &shards, depth).await;
                }
                let call = Call::List { status: filter.status.map(|s| s.name().to_string()), plan: filter.plan, shards: shards.clone(), depth };
                match service.forward(shards[0], call).await? {
                    Answer::List(part) => Ok(part),
                    _ => Err(unexpected(shards[0])),
                }
            });
        }
        let mut whole = ListPart::default();
        let mut by_version: std::collections::BTreeMap<(String, u32), usize> = std::collections::BTreeMap::new();
        while let Some(part) = asks.join_next().await {
            let part = part.map_err(|_| ServiceError::Stopped { what: "a list of the cluster" })??;
            if let Some(&shard) = part.missing.first() {
                return Err(ServiceError::ShardMoving { shard });
            }
            whole.total += part.total;
            whole.found.extend(part.found);
            for (plan, version, n) in part.by_version {
                *by_version.entry((plan, version)).or_insert(0) += n;
            }
        }
        whole.by_version = by_version.into_iter().map(|((plan, version), n)| (plan, version, n)).collect();
        whole.found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        whole.found.truncate(depth);
        let plans = self.plans();
        let mut summaries = Vec::with_capacity(whole.found.len());
        for (id, plan, version, status) in std::mem::take(&mut whole.found) {
            // A plan uploaded at another node a moment ago: not known here yet.
            let shard = crate::shard_of(&id);
            let ix = plans.get(&plan, version).ok_or(ServiceError::ShardMoving { shard })?;
            let status = rollover_core::Status::parse(&status).ok_or_else(|| unexpected(shard))?;
            summaries.push(crate::SubscriptionSummary { id, plan: crate::PlanVersion { id: plan, version, ix }, status });
        }
        Ok((summaries, whole))
    }

    /// A balance from another node: its plan's index is this node's.
    pub(crate) fn local_balance(&self, mut balance: Balance) -> Result<Balance, ServiceError> {
        let plans = self.plans();
        balance.plan.ix = plans.get(&balance.plan.id, balance.plan.version).ok_or(ServiceError::ShardMoving { shard: crate::shard_of(&balance.id) })?;
        Ok(balance)
    }
}

/// The webhook types a note may carry (`Service::note_and_tell`), as
/// `'static` strings again.
const NOTE_KINDS: &[&str] = &["esim_downloaded", "esim_installed", "esim_deleted"];
