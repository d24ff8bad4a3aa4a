//! eSIM orders: a profile from the inventory, ordered from the SM-DP+ over
//! ES2+ (`downloadOrder`, then `confirmOrder` with `releaseFlag: true`), and
//! the plan bought for a new subscription that holds the profile's ICCID.
//!
//! An order is a row in the store that records each step once it is done
//! (`allocated`, `ordered`, `confirmed`, `bought`), so a repeated request or
//! a restart goes on from the last step done and never does one twice. Each
//! ES2+ function of an order has one `functionCallIdentifier` for all its
//! attempts. An SM-DP+ that does not answer leaves the order `pending`, tried
//! again with a doubling wait (`OrderSettings`); one that answers `Failed`
//! ends it `failed`, with the codes, an `order_failed` webhook, and the
//! profile in `error` (or back in stock when only the EID was refused).
//! One order is driven by one task at a time (a lock per id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollover_es2::{Call, Es2Client, Es2Error};
use rollover_esim::{ActivationCode, Iccid, ProfileState};
use rollover_store::{Identifiers, OrderCreated, OrderRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{EventOutcome, LifecycleEvent, NewSubscription, Service, ServiceError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Completed,
    Failed,
    Cancelled,
}

impl OrderStatus {
    pub fn name(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Completed => "completed",
            OrderStatus::Failed => "failed",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

/// The last step an order has done; each is done once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStep {
    /// A profile is taken from the inventory for it.
    Allocated,
    /// `downloadOrder` succeeded.
    Ordered,
    /// `confirmOrder` succeeded: the activation code is known.
    Confirmed,
    /// The plan is bought for the subscription.
    Bought,
}

/// The SM-DP+'s refusal, as it gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub function: String,
    pub status: String,
    pub subject_code: String,
    pub reason_code: String,
    pub message: String,
}

/// One order, as stored (the row's document) and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub plan: String,
    pub eid: Option<String>,
    /// Identifiers asked for; the profile's IMSI and MSISDN fill those not given.
    pub external_id: Option<String>,
    pub imsi: Option<String>,
    pub msisdn: Option<String>,
    pub status: OrderStatus,
    pub step: OrderStep,
    pub iccid: String,
    pub profile_type: Option<String>,
    /// The subscription bought (its id is the order's).
    pub subscription: Option<String>,
    pub smdp_address: Option<String>,
    pub matching_id: Option<String>,
    /// The base of the `functionCallIdentifier`s: `{call_id}-{function}`.
    pub call_id: String,
    /// Calls that went unanswered, and when the next try is due (by the
    /// wall clock, whatever the service's clock: the SM-DP+ lives in real time).
    pub attempts: u32,
    pub next_attempt_micros: i64,
    pub last_error: Option<String>,
    pub failure: Option<Failure>,
    /// Fees paid back when it was cancelled.
    pub refunded_minor: Option<i64>,
    pub created_micros: i64,
    pub updated_micros: i64,
}

impl Order {
    /// The activation code, once the SM-DP+ confirmed the order.
    pub fn activation_code(&self) -> Option<ActivationCode> {
        ActivationCode::new(self.smdp_address.as_deref()?, self.matching_id.as_deref()?, false).ok()
    }

    fn row(&self) -> OrderRow {
        OrderRow {
            id: self.id.clone(),
            status: self.status.name().to_string(),
            iccid: Some(self.iccid.clone()),
            subscription: self.subscription.clone(),
            document: serde_json::to_string(self).expect("an order serializes"),
            created_at_micros: self.created_micros,
            updated_at_micros: self.updated_micros,
        }
    }

    fn from_row(row: &OrderRow) -> Result<Order, ServiceError> {
        serde_json::from_str(&row.document).map_err(|e| ServiceError::Corrupt { message: format!("order {:?} does not read back: {e}", row.id) })
    }

    fn call_id(&self, function: &str) -> String {
        format!("{}-{function}", self.call_id)
    }
}

/// What `POST /v1/orders` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewOrder {
    pub id: String,
    pub plan: String,
    pub eid: Option<String>,
    pub external_id: Option<String>,
    pub imsi: Option<String>,
    pub msisdn: Option<String>,
}

/// How the order runner talks to the SM-DP+ and retries.
#[derive(Clone)]
pub struct OrderSettings {
    pub client: Es2Client,
    /// The first wait after a call went unanswered; it doubles per try.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl std::fmt::Debug for OrderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderSettings").field("retry_base", &self.retry_base).field("retry_max", &self.retry_max).finish_non_exhaustive()
    }
}

/// The order runner; cheap to clone.
#[derive(Clone)]
pub struct Orders {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    settings: Option<OrderSettings>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counts: Counts,
}

/// What `/metrics` counts of orders, since the start.
#[derive(Default)]
struct Counts {
    placed: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    unanswered: AtomicU64,
    cancelled: AtomicU64,
}

impl Counts {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP rollover_esim_orders_total eSIM orders by outcome: placed, completed, failed, cancelled, and ES2+ calls the SM-DP+ left unanswered (each retried).\n# TYPE rollover_esim_orders_total counter\n");
        for (name, value) in [("placed", &self.placed), ("completed", &self.completed), ("failed", &self.failed), ("cancelled", &self.cancelled), ("unanswered", &self.unanswered)] {
            out.push_str(&format!("rollover_esim_orders_total{{outcome=\"{name}\"}} {}\n", value.load(Ordering::Relaxed)));
        }
    }
}

/// What one ES2+ call came to.
enum Answer {
    Done(Value),
    Failed(Failure),
    Unanswered(String),
}

impl Orders {
    /// Without settings every order answers "provisioning is not configured".
    pub fn new(service: Service, settings: Option<OrderSettings>) -> Orders {
        let inner = Arc::new(Inner { service: service.clone(), settings, locks: Mutex::new(HashMap::new()), counts: Counts::default() });
        if inner.settings.is_some() {
            let source = Arc::downgrade(&inner);
            service.add_metrics(Box::new(move |out| {
                if let Some(inner) = source.upgrade() {
                    inner.counts.render(out);
                }
            }));
        }
        Orders { inner }
    }

    pub fn is_configured(&self) -> bool {
        self.inner.settings.is_some()
    }

    /// Places an order, or answers the one placed before with this id (and
    /// goes on with it if it is pending). `true` when this call created it.
    pub async fn place(&self, new: NewOrder) -> Result<(Order, bool), ServiceError> {
        if self.inner.settings.is_none() {
            return Err(ServiceError::ProvisioningNotConfigured);
        }
        let service = &self.inner.service;
        let plans = service.plans();
        let latest = plans.latest(&new.plan).ok_or_else(|| ServiceError::UnknownReference { field: "plan", message: format!("no plan \"{}\" in the catalog", new.plan) })?;
        let plan = plans.catalog.get(latest.ix);
        let _held = self.lock(&new.id).await;
        // A new order's subscription takes the order's id: it must be free.
        if matches!(self.get(&new.id).await, Err(ServiceError::UnknownOrder { .. })) && service.identifiers(&new.id).await.is_ok() {
            return Err(ServiceError::SubscriptionExists { id: new.id });
        }
        let now = service.now().micros();
        let mut order = Order {
            id: new.id.clone(),
            plan: new.plan.clone(),
            eid: new.eid.clone(),
            external_id: new.external_id.clone(),
            imsi: new.imsi.clone(),
            msisdn: new.msisdn.clone(),
            status: OrderStatus::Pending,
            step: OrderStep::Allocated,
            iccid: String::new(),
            profile_type: plan.profile_type.clone(),
            subscription: None,
            smdp_address: None,
            matching_id: None,
            call_id: call_id_base(),
            attempts: 0,
            next_attempt_micros: crate::wall_micros(),
            last_error: None,
            failure: None,
            refunded_minor: None,
            created_micros: now,
            updated_micros: now,
        };
        let row = order.row();
        let profile_type = plan.profile_type.clone();
        let created = service.write_store(move |store| store.create_order(&row, profile_type.as_deref())).await?;
        match created {
            OrderCreated::NoProfile => Err(ServiceError::NoProfileAvailable { profile_type: plan.profile_type.clone() }),
            OrderCreated::Exists(row) => {
                let mut existing = Order::from_row(&row)?;
                same_request(&existing, &new)?;
                if existing.status == OrderStatus::Pending {
                    self.drive(&mut existing).await?;
                }
                Ok((existing, false))
            }
            OrderCreated::Created(profile) => {
                order.iccid = profile.iccid.clone();
                order.imsi = order.imsi.or(profile.imsi.clone());
                order.msisdn = order.msisdn.or(profile.msisdn.clone());
                let wanted = Identifiers { iccid: Some(order.iccid.clone()), imsi: order.imsi.clone(), msisdn: order.msisdn.clone(), external_id: order.external_id.clone() };
                self.inner.service.forget_released(&crate::identifier_keys(&wanted), &order.id).await?;
                if let Some(taken) = self.taken_identifier(&order) {
                    let (field, owner) = taken;
                    self.fail(&mut order, None, &format!("{field} already belongs to subscription {owner}"), ProfileState::Available).await?;
                    return Err(ServiceError::IdentifierTaken { field, owner });
                }
                Counts::bump(&self.inner.counts.placed);
                self.save(&order).await?;
                self.drive(&mut order).await?;
                Ok((order, true))
            }
        }
    }

    /// An order as it stands.
    pub async fn get(&self, id: &str) -> Result<Order, ServiceError> {
        let key = id.to_string();
        let row = self.inner.service.read_store(move |store| Ok(store.order(&key)?)).await?;
        Order::from_row(&row.ok_or_else(|| ServiceError::UnknownOrder { id: id.to_string() })?)
    }

    /// The newest order of a profile, if an order took it.
    pub async fn for_iccid(&self, iccid: &Iccid) -> Result<Option<Order>, ServiceError> {
        let iccid = iccid.as_str().to_string();
        let row = self.inner.service.read_store(move |store| Ok(store.order_for_iccid(&iccid)?)).await?;
        row.as_ref().map(Order::from_row).transpose()
    }

    /// Tries every pending order whose next try is due; what a restart and
    /// the retry timer call.
    pub async fn resume_due(&self) -> Result<usize, ServiceError> {
        let rows = self.inner.service.read_store(|store| Ok(store.pending_orders()?)).await?;
        let mut tried = 0;
        for row in rows {
            let order = Order::from_row(&row)?;
            if order.next_attempt_micros > crate::wall_micros() {
                continue;
            }
            let _held = self.lock(&order.id).await;
            // Read again under the lock: a request may have moved it on.
            let mut order = self.get(&order.id).await?;
            if order.status == OrderStatus::Pending {
                tried += 1;
                self.drive(&mut order).await?;
            }
        }
        Ok(tried)
    }

    /// Retries pending orders until the task is dropped.
    pub async fn run(self) {
        loop {
            if let Err(error) = self.resume_due().await {
                tracing::warn!(%error, "esim orders: resuming pending orders failed");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Cancels an order whose profile has not been downloaded: the SM-DP+
    /// puts the profile back (`cancelOrder`, `Available`), the subscription
    /// is cancelled and its fees refunded.
    pub async fn cancel(&self, id: &str) -> Result<Order, ServiceError> {
        let _held = self.lock(id).await;
        let mut order = self.get(id).await?;
        match order.status {
            OrderStatus::Cancelled => return Ok(order),
            OrderStatus::Failed => return Err(ServiceError::NotCancellable { id: id.to_string(), reason: "it failed; nothing was bought".into() }),
            OrderStatus::Pending | OrderStatus::Completed => {}
        }
        let service = &self.inner.service;
        let iccid = Iccid::parse(&order.iccid).map_err(|e| ServiceError::Corrupt { message: format!("order {id}: ICCID {e}") })?;
        let state = service.profile(&iccid).await?.and_then(|p| ProfileState::parse(&p.state));
        if let Some(state) = state.filter(|s| s.is_downloaded() || *s == ProfileState::Downloaded) {
            let reason = format!("its profile is {} on the phone; cancel the subscription instead", state.name());
            return Err(ServiceError::NotCancellable { id: id.to_string(), reason });
        }
        // An unanswered downloadOrder may have been done: cancel it too.
        let reached = order.step >= OrderStep::Ordered || order.attempts > 0;
        if reached {
            let mut body = json!({"iccid": order.iccid, "finalProfileStatusIndicator": "Available"});
            if let Some(eid) = &order.eid {
                body["eid"] = json!(eid);
            }
            if let Some(matching_id) = &order.matching_id {
                body["matchingId"] = json!(matching_id);
            }
            match self.call(&order, "cancelOrder", body).await {
                Answer::Done(_) => {}
                // The SM-DP+ never did the unanswered downloadOrder: the
                // profile is still available there.
                Answer::Failed(failure) if order.step == OrderStep::Allocated && (failure.subject_code.as_str(), failure.reason_code.as_str()) == ("8.2.1", "3.5") => {}
                Answer::Failed(failure) => {
                    let reason = format!("the SM-DP+ refused cancelOrder ({} / {}: {})", failure.subject_code, failure.reason_code, failure.message);
                    return Err(ServiceError::NotCancellable { id: id.to_string(), reason });
                }
                Answer::Unanswered(why) => return Err(ServiceError::NotCancellable { id: id.to_string(), reason: format!("the SM-DP+ did not answer cancelOrder ({why}); try again") }),
            }
        }
        if let Some(subscription) = order.subscription.clone() {
            let fees = service.balance(&subscription).await?.fees_minor;
            if fees > 0 {
                let refund = LifecycleEvent::Refund { minor: fees, reason: format!("order {id} cancelled before download") };
                if service.apply_event(&subscription, refund, None).await? == EventOutcome::Applied {
                    order.refunded_minor = Some(fees);
                }
            }
            service.apply_event(&subscription, LifecycleEvent::Cancel, None).await?;
            let _ = service.note(&subscription, format!("esim: order {id} cancelled before download; profile {} returned to the inventory and taken off this subscription", order.iccid)).await;
            service.release_iccid(&subscription).await?;
        }
        service.set_profile_state(&iccid, ProfileState::Available, None).await?;
        order.status = OrderStatus::Cancelled;
        self.save(&order).await?;
        Counts::bump(&self.inner.counts.cancelled);
        Ok(order)
    }

    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.inner.locks.lock().expect("order locks");
            // Forget the locks nobody holds, so the map stays small.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            locks.entry(id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    fn taken_identifier(&self, order: &Order) -> Option<(&'static str, String)> {
        let service = &self.inner.service;
        let wanted = [("identifiers.iccid", "iccid", Some(&order.iccid)), ("identifiers.imsi", "imsi", order.imsi.as_ref()), ("identifiers.msisdn", "msisdn", order.msisdn.as_ref()), ("identifiers.external_id", "external_id", order.external_id.as_ref())];
        wanted.into_iter().find_map(|(field, name, value)| service.subscription_by(name, value?).filter(|owner| *owner != order.id).map(|owner| (field, owner)))
    }

    async fn save(&self, order: &Order) -> Result<(), ServiceError> {
        let row = order.row();
        self.inner.service.write_store(move |store| store.update_order(&row)).await
    }

    /// Takes the order as far as it goes now: to `completed`, to `failed`,
    /// or (no answer) pending with its next try set.
    async fn drive(&self, order: &mut Order) -> Result<(), ServiceError> {
        while order.status == OrderStatus::Pending {
            let answer = match order.step {
                OrderStep::Allocated => {
                    let mut body = json!({"iccid": order.iccid});
                    if let Some(eid) = &order.eid {
                        body["eid"] = json!(eid);
                    }
                    if let Some(kind) = &order.profile_type {
                        body["profileType"] = json!(kind);
                    }
                    self.call(order, "downloadOrder", body).await
                }
                OrderStep::Ordered => {
                    let mut body = json!({"iccid": order.iccid, "releaseFlag": true});
                    if let Some(eid) = &order.eid {
                        body["eid"] = json!(eid);
                    }
                    self.call(order, "confirmOrder", body).await
                }
                OrderStep::Confirmed => return self.buy(order).await,
                OrderStep::Bought => {
                    order.status = OrderStatus::Completed;
                    return self.save(order).await;
                }
            };
            if !self.take(order, answer).await? {
                break;
            }
        }
        Ok(())
    }

    /// Moves the order on by one ES2+ answer; false when it must wait.
    async fn take(&self, order: &mut Order, answer: Answer) -> Result<bool, ServiceError> {
        let service = &self.inner.service;
        let iccid = Iccid::parse(&order.iccid).map_err(|e| ServiceError::Corrupt { message: format!("order {}: ICCID {e}", order.id) })?;
        order.updated_micros = service.now().micros();
        match answer {
            Answer::Done(body) => {
                order.attempts = 0;
                order.last_error = None;
                if order.step == OrderStep::Allocated {
                    order.step = OrderStep::Ordered;
                    let state = if order.eid.is_some() { ProfileState::Linked } else { ProfileState::Allocated };
                    service.set_profile_state(&iccid, state, order.eid.as_deref()).await?;
                } else {
                    let text = |name: &str| body[name].as_str().map(str::to_string);
                    let (Some(address), Some(matching_id)) = (text("smdpAddress"), text("matchingId")) else {
                        return self.fail(order, None, "the SM-DP+'s confirmOrder answer has no smdpAddress or matchingId", ProfileState::Error).await.map(|()| true);
                    };
                    if let Err(error) = ActivationCode::new(&address, &matching_id, false) {
                        return self.fail(order, None, &format!("the SM-DP+'s confirmOrder answer: {error}"), ProfileState::Error).await.map(|()| true);
                    }
                    (order.smdp_address, order.matching_id, order.step) = (Some(address), Some(matching_id), OrderStep::Confirmed);
                    service.set_profile_state(&iccid, ProfileState::Released, None).await?;
                }
                self.save(order).await.map(|()| true)
            }
            Answer::Failed(failure) => {
                // A refused EID leaves the profile as good as it was.
                let back = if failure.subject_code == "8.1.1" && order.step == OrderStep::Allocated { ProfileState::Available } else { ProfileState::Error };
                let why = format!("the SM-DP+ answered {} to {} ({} / {}: {})", failure.status, failure.function, failure.subject_code, failure.reason_code, failure.message);
                self.fail(order, Some(failure), &why, back).await.map(|()| true)
            }
            Answer::Unanswered(why) => {
                Counts::bump(&self.inner.counts.unanswered);
                order.attempts += 1;
                let settings = self.inner.settings.as_ref().expect("orders are driven only when configured");
                let wait = settings.retry_base.saturating_mul(1 << order.attempts.saturating_sub(1).min(20)).min(settings.retry_max);
                order.next_attempt_micros = crate::wall_micros().saturating_add(wait.as_micros() as i64);
                tracing::info!(order = %order.id, attempts = order.attempts, %why, "esim order: the SM-DP+ did not answer; trying again later");
                order.last_error = Some(why);
                self.save(order).await?;
                // The caller stops here; the retry timer goes on.
                Ok(false)
            }
        }
    }

    /// Ends an order `failed`: the profile goes to `back`, the failure is
    /// stored and told (`order_failed`).
    async fn fail(&self, order: &mut Order, failure: Option<Failure>, why: &str, back: ProfileState) -> Result<(), ServiceError> {
        let service = &self.inner.service;
        order.status = OrderStatus::Failed;
        order.failure = failure.clone();
        order.last_error = Some(why.to_string());
        order.updated_micros = service.now().micros();
        if let Ok(iccid) = Iccid::parse(&order.iccid) {
            service.set_profile_state(&iccid, back, None).await?;
        }
        self.save(order).await?;
        Counts::bump(&self.inner.counts.failed);
        tracing::warn!(order = %order.id, %why, "esim order failed");
        let data = json!({"order": order.id, "plan": order.plan, "iccid": order.iccid, "reason": why, "failure": failure});
        service.tell("order_failed", &order.id, None, data).await
    }

    /// Buys the plan for the order's subscription; a purchase already made
    /// (a restart between the purchase and the order's row) is taken as done.
    async fn buy(&self, order: &mut Order) -> Result<(), ServiceError> {
        let service = &self.inner.service;
        let identifiers = Identifiers { iccid: Some(order.iccid.clone()), imsi: order.imsi.clone(), msisdn: order.msisdn.clone(), external_id: order.external_id.clone() };
        let new = NewSubscription { id: order.id.clone(), plan: order.plan.clone(), at: None, identifiers };
        match service.create_subscription(new).await {
            Ok(_) => {}
            Err(ServiceError::SubscriptionExists { id }) if service.subscription_by("iccid", &order.iccid).as_deref() == Some(id.as_str()) => {}
            Err(ServiceError::IdentifierTaken { field: "identifiers.iccid", owner }) if owner == order.id => {}
            Err(error @ (ServiceError::SubscriptionExists { .. } | ServiceError::IdentifierTaken { .. } | ServiceError::UnknownReference { .. })) => {
                return self.fail(order, None, &format!("the plan could not be bought: {error}"), ProfileState::Error).await;
            }
            Err(error) => return Err(error),
        }
        order.subscription = Some(order.id.clone());
        order.step = OrderStep::Bought;
        order.status = OrderStatus::Completed;
        order.updated_micros = service.now().micros();
        self.save(order).await?;
        Counts::bump(&self.inner.counts.completed);
        let code = order.activation_code().map(|c| c.to_string()).unwrap_or_default();
        let _ = service.note(&order.id, format!("esim: order {} completed; profile {} released for download ({code})", order.id, order.iccid)).await;
        Ok(())
    }

    async fn call(&self, order: &Order, function: &str, body: Value) -> Answer {
        let settings = self.inner.settings.as_ref().expect("orders are driven only when configured");
        let call_id = order.call_id(function);
        match settings.client.call(Call { function, call_id: &call_id, body }).await {
            Ok(answer) => Answer::Done(answer),
            Err(Es2Error::Failed { status, subject_code, reason_code, message }) => Answer::Failed(Failure { function: function.to_string(), status, subject_code, reason_code, message }),
            Err(error @ (Es2Error::Unreachable(_) | Es2Error::BadAnswer(_))) => Answer::Unanswered(format!("{function}: {error}")),
        }
    }
}

/// Whether a repeated request asks for what the stored order asked for.
fn same_request(order: &Order, new: &NewOrder) -> Result<(), ServiceError> {
    let differs = |field: &'static str| Err(ServiceError::OrderMismatch { id: order.id.clone(), field });
    if order.plan != new.plan {
        return differs("plan");
    }
    if order.eid != new.eid {
        return differs("eid");
    }
    let given = [("identifiers.external_id", &new.external_id, &order.external_id), ("identifiers.imsi", &new.imsi, &order.imsi), ("identifiers.msisdn", &new.msisdn, &order.msisdn)];
    for (field, asked, held) in given {
        if asked.is_some() && asked != held {
            return differs(field);
        }
    }
    Ok(())
}

/// A fresh base for an order's `functionCallIdentifier`s: 16 random hex
/// digits, so that two orders never share one, across restarts.
fn call_id_base() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("the kernel gives random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
