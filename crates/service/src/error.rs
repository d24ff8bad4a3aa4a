//! The service's one error type. Each kind has a stable code clients can
//! branch on ([`ServiceError::code`]), the input field it is about, where
//! there is one ([`ServiceError::field`]), and a sentence (`Display`).

use std::fmt;

use rollover_store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    UnknownSubscription { id: String },
    /// A request body names a plan or subscription that does not exist:
    /// `field` is where (`plan`, `change_plan`, `subscription`).
    UnknownReference { field: &'static str, message: String },
    UnknownSession { id: String },
    SubscriptionExists { id: String },
    /// An identifier (ICCID, IMSI, ...) another subscription holds.
    IdentifierTaken { field: &'static str, owner: String },
    SessionOpen { id: String },
    /// A plan document that breaks a rule: `field` names the plan and its
    /// field, `message` says what is wrong and on which line.
    InvalidPlan { field: String, message: String },
    /// An instant before or after what the service accepts.
    InstantOutOfRange { field: &'static str, message: String },
    /// Another value the service does not take.
    Invalid { field: &'static str, message: String },
    /// The catalog holds [`crate::MAX_PLAN_VERSIONS`] plan versions.
    CatalogFull,
    /// `set_clock` on the wall clock.
    ClockNotSimulated,
    /// `set_clock` to an instant before the clock.
    ClockBackwards { now_micros: i64 },
    /// A worker's queue is full: retry shortly.
    Busy,
    /// Cluster mode: the subscription's shard is not served here now (it
    /// is being taken over, or this node lost it): retry shortly.
    ShardMoving { shard: u32 },
    /// A part of the service has stopped; only a restart brings it back.
    Stopped { what: &'static str },
    /// The store failed.
    Store(StoreError),
    /// The store holds something that no longer reads (at start-up).
    Corrupt { message: String },
    /// An eSIM order without `[esim]` settings.
    ProvisioningNotConfigured,
    /// No profile is available for an order (of the plan's profile type).
    NoProfileAvailable { profile_type: Option<String> },
    UnknownOrder { id: String },
    /// An order with this id exists and asked for something else.
    OrderMismatch { id: String, field: &'static str },
    /// An add-on purchase id used before for another add-on.
    PurchaseConflict { id: String },
    /// An order that can no longer be cancelled, and why.
    NotCancellable { id: String, reason: String },
}

impl ServiceError {
    /// The stable code of this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::UnknownSubscription { .. } => "unknown_subscription",
            ServiceError::UnknownReference { .. } => "unknown_reference",
            ServiceError::UnknownSession { .. } => "unknown_session",
            ServiceError::SubscriptionExists { .. } => "subscription_exists",
            ServiceError::IdentifierTaken { .. } => "identifier_taken",
            ServiceError::SessionOpen { .. } => "session_open",
            ServiceError::InvalidPlan { .. } => "invalid_plan",
            ServiceError::InstantOutOfRange { .. } => "instant_out_of_range",
            ServiceError::Invalid { .. } => "invalid_field",
            ServiceError::CatalogFull => "catalog_full",
            ServiceError::ClockNotSimulated => "clock_not_simulated",
            ServiceError::ClockBackwards { .. } => "clock_backwards",
            ServiceError::Busy => "busy",
            ServiceError::ShardMoving { .. } => "shard_moving",
            ServiceError::Stopped { .. } | ServiceError::Store(_) | ServiceError::Corrupt { .. } => "unavailable",
            ServiceError::ProvisioningNotConfigured => "provisioning_not_configured",
            ServiceError::NoProfileAvailable { .. } => "no_profile_available",
            ServiceError::UnknownOrder { .. } => "unknown_order",
            ServiceError::PurchaseConflict { .. } => "purchase_conflict",
            ServiceError::OrderMismatch { .. } => "order_mismatch",
            ServiceError::NotCancellable { .. } => "order_not_cancellable",
        }
    }

    /// The input field the error is about.
    pub fn field(&self) -> Option<&str> {
        Some(match self {
            ServiceError::UnknownSubscription { .. } | ServiceError::UnknownSession { .. } | ServiceError::SubscriptionExists { .. } | ServiceError::SessionOpen { .. } => "id",
            ServiceError::UnknownReference { field, .. } | ServiceError::IdentifierTaken { field, .. } => field,
            ServiceError::InstantOutOfRange { field, .. } | ServiceError::Invalid { field, .. } => field,
            ServiceError::InvalidPlan { field, .. } => field,
            ServiceError::CatalogFull => "plan",
            ServiceError::ClockNotSimulated | ServiceError::ClockBackwards { .. } => "now",
            ServiceError::Busy | ServiceError::ShardMoving { .. } | ServiceError::Stopped { .. } | ServiceError::Store(_) | ServiceError::Corrupt { .. } => return None,
            ServiceError::ProvisioningNotConfigured | ServiceError::NoProfileAvailable { .. } => "plan",
            ServiceError::UnknownOrder { .. } | ServiceError::NotCancellable { .. } | ServiceError::PurchaseConflict { .. } => "id",
            ServiceError::OrderMismatch { field, .. } => field,
        })
    }

    pub(crate) fn worker_stopped() -> ServiceError {
        ServiceError::Stopped { what: "a shard worker" }
    }

    pub(crate) fn writer_stopped() -> ServiceError {
        ServiceError::Stopped { what: "the store writer" }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::UnknownSubscription { id } => write!(f, "unknown subscription \"{id}\""),
            ServiceError::UnknownReference { field, message } => write!(f, "{field}: {message}"),
            ServiceError::UnknownSession { id } => write!(f, "no open session \"{id}\" known to this node"),
            ServiceError::SubscriptionExists { id } => write!(f, "subscription \"{id}\" already exists"),
            ServiceError::IdentifierTaken { field, owner } => write!(f, "{field}: already belongs to subscription \"{owner}\""),
            ServiceError::SessionOpen { id } => write!(f, "session \"{id}\" is already open"),
            ServiceError::InvalidPlan { message, .. } => write!(f, "{message}"),
            ServiceError::InstantOutOfRange { field, message } | ServiceError::Invalid { field, message } => write!(f, "{field}: {message}"),
            ServiceError::CatalogFull => write!(f, "the catalog holds {} plan versions, the most it may", crate::MAX_PLAN_VERSIONS),
            ServiceError::ClockNotSimulated => write!(f, "the clock is the wall clock; start with --clock simulated to move it"),
            ServiceError::ClockBackwards { now_micros } => write!(f, "the clock cannot move backwards (it is at {now_micros} µs)"),
            ServiceError::Busy => write!(f, "the service is busy; retry shortly"),
            ServiceError::ShardMoving { shard } => write!(f, "shard {shard} is moving between nodes of the cluster; retry shortly"),
            ServiceError::Stopped { what } => write!(f, "{what} has stopped"),
            ServiceError::Store(error) => write!(f, "the store failed: {error}"),
            ServiceError::Corrupt { message } => write!(f, "the store does not read back: {message}"),
            ServiceError::ProvisioningNotConfigured => write!(f, "eSIM provisioning is not configured: set [esim] smdp_url, requester_id, client_cert, client_key and ca_cert"),
            ServiceError::NoProfileAvailable { profile_type: Some(kind) } => write!(f, "no eSIM profile of type \"{kind}\" is available in the inventory"),
            ServiceError::NoProfileAvailable { profile_type: None } => write!(f, "no eSIM profile is available in the inventory"),
            ServiceError::UnknownOrder { id } => write!(f, "no order \"{id}\""),
            ServiceError::PurchaseConflict { id } => write!(f, "purchase \"{id}\" was made before for another add-on; use a new id for a new purchase"),
            ServiceError::OrderMismatch { id, field } => write!(f, "{field}: order \"{id}\" exists and asked for something else; use a new id for a new order"),
            ServiceError::NotCancellable { id, reason } => write!(f, "order \"{id}\" cannot be cancelled: {reason}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        ServiceError::Store(error)
    }
}
