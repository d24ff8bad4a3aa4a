//! RFC 9457 problem details: every error the API returns has a stable
//! `code` (one of [`Code::ALL`], listed in `docs/errors.md` and in the
//! OpenAPI document), names what was wrong and, where there is one, the
//! offending field. Store or engine internals never reach the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollover_service::ServiceError;
use serde::Serialize;

/// One exhaustive list of error codes: each with its HTTP status and what it
/// means, so that the code, the status and the documentation cannot drift.
macro_rules! codes {
    ($( $variant:ident = $code:literal, $status:ident, $meaning:literal; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $( $variant, )*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$( Code::$variant, )*];

            /// The snake_case code clients match on.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Code::$variant => $code, )*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $( Code::$variant => StatusCode::$status, )*
                }
            }

            /// What the code means, for `docs/errors.md`.
            pub fn meaning(self) -> &'static str {
                match self {
                    $( Code::$variant => $meaning, )*
                }
            }
        }
    };
}

codes! {
    InvalidJson = "invalid_json", BAD_REQUEST, "The body is not JSON, not UTF-8, not of the shape the endpoint takes (an object, an array where one is due), or names a key twice in one object.";
    UnknownField = "unknown_field", BAD_REQUEST, "The body has a field the endpoint does not take; `field` names it.";
    MissingField = "missing_field", BAD_REQUEST, "A required field is absent; `field` names it.";
    InvalidField = "invalid_field", BAD_REQUEST, "A value breaks a rule; `field` names it and `detail` says which rule.";

    InvalidQuery = "invalid_query", BAD_REQUEST, "A query parameter is unknown or its value is wrong; `field` names it.";
    InvalidPath = "invalid_path", BAD_REQUEST, "The path cannot be read: not UTF-8 once percent-decoded.";
    BadRequest = "bad_request", BAD_REQUEST, "The request cannot be read as HTTP the service takes.";
    MissingCredentials = "missing_credentials", UNAUTHORIZED, "No `Authorization: Bearer` credential where one is needed.";
    InvalidCredentials = "invalid_credentials", UNAUTHORIZED, "An unknown API key, or a customer token that is malformed or whose signature does not match.";
    TokenExpired = "token_expired", UNAUTHORIZED, "The customer token has expired.";
    ReadOnlyKey = "read_only_key", FORBIDDEN, "The API key may only read.";
    TokenScope = "token_scope", FORBIDDEN, "A customer token may only read its own subscription's balance and ledger.";
    HostNotAllowed = "host_not_allowed", FORBIDDEN, "With no API key configured, only requests to localhost, 127.0.0.1 or [::1] are served.";
    CrossSiteRefused = "cross_site_refused", FORBIDDEN, "With no API key configured, a request from a page of another origin is refused.";
    UnknownSubscription = "unknown_subscription", NOT_FOUND, "No subscription has this id.";
    UnknownPlan = "unknown_plan", NOT_FOUND, "No plan has this id.";
    UnknownProfile = "unknown_profile", NOT_FOUND, "No eSIM profile in the inventory has this ICCID (or the ICCID cannot exist: `detail` says why).";
    UnknownOrder = "unknown_order", NOT_FOUND, "No eSIM order has this id.";
    UnknownSession = "unknown_session", NOT_FOUND, "No session with this id was opened through this node, or it has ended.";
    NoSuchEndpoint = "no_such_endpoint", NOT_FOUND, "No endpoint has this path.";
    ClockNotSimulated = "clock_not_simulated", NOT_FOUND, "The clock can be moved only when serving with `--clock simulated`.";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, "The endpoint does not take this method; `Allow` lists those it takes.";
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT, "The request did not arrive and get its answer within `server.request_timeout_seconds`.";
    SubscriptionExists = "subscription_exists", CONFLICT, "A subscription with this id exists.";
    IdentifierTaken = "identifier_taken", CONFLICT, "Another subscription holds this ICCID, IMSI, MSISDN or external id.";
    SessionOpen = "session_open", CONFLICT, "A session with this id is open.";
    ProvisioningNotConfigured = "provisioning_not_configured", CONFLICT, "eSIM orders need the `[esim]` settings (the SM-DP+'s address and the TLS files); this server has none.";
    NoProfileAvailable = "no_profile_available", CONFLICT, "No eSIM profile is `available` in the inventory (of the plan's `profile_type`); add profiles with `POST /v1/esim/profiles`.";
    PurchaseConflict = "purchase_conflict", CONFLICT, "An add-on purchase with this id was made before, for another add-on.";
    OrderMismatch = "order_mismatch", CONFLICT, "An order with this id exists and asked for another plan, EID or identifiers; `field` names the first that differs.";
    ActivationPending = "no_activation_code", CONFLICT, "The order has not completed (it is pending, failed or cancelled), so it has no activation code or QR code to show.";
    OrderNotCancellable = "order_not_cancellable", CONFLICT, "The order is past the point where it can be cancelled (its profile was downloaded) or is already finished; `detail` says which. Cancel the subscription instead.";
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE, "The body is larger than `limits.max_body_bytes`.";
    TooManyRecords = "too_many_records", PAYLOAD_TOO_LARGE, "More usage records than `limits.max_records_per_request` in one request, or more than 10,000 subscriptions in one `POST /v1/subscriptions/batch`.";
    UriTooLong = "uri_too_long", URI_TOO_LONG, "The path and query are longer than 8,192 bytes.";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body's `Content-Type` is not one the endpoint reads (`application/json`; plans also `application/toml`).";
    UnknownReference = "unknown_reference", UNPROCESSABLE_ENTITY, "The body names a plan or subscription that does not exist; `field` says where (`plan`, `change_plan`, `subscription`).";
    InvalidPlan = "invalid_plan", UNPROCESSABLE_ENTITY, "A plan document does not read (TOML syntax) or breaks a rule of the plan terms; `field` names the plan and its field, `detail` the line.";
    InvalidUsageFile = "invalid_usage_file", UNPROCESSABLE_ENTITY, "A usage file (`date,bytes[,country]`) does not read, as a plan document that does not read is `invalid_plan`; `field` names the line and `detail` what is wrong there.";
    InvalidProfileFile = "invalid_profile_file", UNPROCESSABLE_ENTITY, "A profile inventory file (`iccid[,profile_type][,imsi][,msisdn]`) cannot be read at all (its header); bad lines are listed in the answer instead.";
    InstantOutOfRange = "instant_out_of_range", UNPROCESSABLE_ENTITY, "A well-formed instant lies further back or ahead than the service takes now (`service.max_backdate_seconds`, `service.max_age_seconds`, `service.future_skew_seconds`), before the subscription's purchase, or (moving the simulated clock) more than `service.max_backdate_seconds` ahead.";
    InvalidIdentifier = "invalid_identifier", UNPROCESSABLE_ENTITY, "A well-formed ICCID or EID (the right number of digits) whose check digits do not match: Luhn for an ICCID, ISO 7064 MOD 97-10 for an EID; `field` names it.";
    ValueOutOfRange = "value_out_of_range", UNPROCESSABLE_ENTITY, "A well-formed amount beyond a limit (more than 1 TiB in one record, a grant of zero bytes).";
    ClockBackwards = "clock_backwards", UNPROCESSABLE_ENTITY, "The simulated clock cannot move backwards.";
    CatalogFull = "catalog_full", UNPROCESSABLE_ENTITY, "The catalog holds 10,000 plan versions, the most it may.";
    RateLimited = "rate_limited", TOO_MANY_REQUESTS, "The API key, or this subscription's customer tokens, are over their rate; `Retry-After` says when to retry.";
    Internal = "internal", INTERNAL_SERVER_ERROR, "A bug: handling the request failed an internal check. The operator's log has the method, the path and the failure; please report it. Whatever the request wrote before the failure was committed whole or not at all.";
    Busy = "busy", SERVICE_UNAVAILABLE, "A shard worker's queue is full; retry shortly.";
    ShardMoving = "shard_moving", SERVICE_UNAVAILABLE, "Cluster mode: the subscription's shard is moving between nodes (a node stopped, joined or lost its lease); retry after `Retry-After` seconds, at this node or any other.";
    Unavailable = "unavailable", SERVICE_UNAVAILABLE, "A part of the service has stopped or the store failed; the operator's logs say which.";
}

impl Code {
    /// The code a service error has on the wire.
    fn of(error: &ServiceError) -> Code {
        match error {
            ServiceError::UnknownSubscription { .. } => Code::UnknownSubscription,
            ServiceError::UnknownReference { .. } => Code::UnknownReference,
            ServiceError::UnknownSession { .. } => Code::UnknownSession,
            ServiceError::UnknownOrder { .. } => Code::UnknownOrder,
            ServiceError::ProvisioningNotConfigured => Code::ProvisioningNotConfigured,
            ServiceError::NoProfileAvailable { .. } => Code::NoProfileAvailable,
            ServiceError::OrderMismatch { .. } => Code::OrderMismatch,
            ServiceError::PurchaseConflict { .. } => Code::PurchaseConflict,
            ServiceError::NotCancellable { .. } => Code::OrderNotCancellable,
            ServiceError::SubscriptionExists { .. } => Code::SubscriptionExists,
            ServiceError::IdentifierTaken { .. } => Code::IdentifierTaken,
            ServiceError::SessionOpen { .. } => Code::SessionOpen,
            ServiceError::InvalidPlan { .. } => Code::InvalidPlan,
            ServiceError::InstantOutOfRange { .. } => Code::InstantOutOfRange,
            ServiceError::Invalid { .. } => Code::InvalidField,
            ServiceError::CatalogFull => Code::CatalogFull,
            ServiceError::ClockNotSimulated => Code::ClockNotSimulated,
            ServiceError::ClockBackwards { .. } => Code::ClockBackwards,
            ServiceError::Busy => Code::Busy,
            ServiceError::ShardMoving { .. } => Code::ShardMoving,
            ServiceError::Stopped { .. } | ServiceError::Store(_) | ServiceError::Corrupt { .. } => Code::Unavailable,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>, field: Option<String>) -> Problem {
        let status = code.status();
        Problem { kind: "about:blank", title: status.canonical_reason().unwrap_or("Error"), status: status.as_u16(), code: code.as_str(), detail: detail.into(), field }
    }

    /// A problem about one field: the detail starts with the field's name.
    pub fn about(code: Code, field: impl Into<String>, detail: impl Into<String>) -> Problem {
        let field = field.into();
        let detail = detail.into();
        let detail = if field.is_empty() || detail.starts_with(&field) { detail } else { format!("{field}: {detail}") };
        Problem::new(code, detail, (!field.is_empty()).then_some(field))
    }

    /// A value that breaks a rule.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem::about(Code::InvalidField, field, detail)
    }

    /// A required field that is absent.
    pub fn required(field: impl Into<String>) -> Problem {
        Problem::about(Code::MissingField, field, "is required")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.code == Code::ShardMoving.as_str() || self.code == Code::Busy.as_str() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Problem {
        let code = Code::of(&error);
        if code == Code::Unavailable {
            // The operator's log gets the cause; the client a plain sentence.
            tracing::error!(%error, "service unavailable");
            return Problem::new(code, "the service is not available", None);
        }
        // The sentence already names the field where it helps.
        Problem::new(code, error.to_string(), error.field().map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollover_core::ledger::{Refusal, RejectReason};
    use rollover_service::UsageRejection;

    fn docs() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md")).expect("docs/errors.md")
    }

    fn openapi() -> serde_json::Value {
        serde_json::from_str(crate::OPENAPI).expect("the OpenAPI document is JSON")
    }

    fn strings(value: &serde_json::Value) -> Vec<&str> {
        value.as_array().expect("an enum").iter().map(|v| v.as_str().expect("a string")).collect()
    }

    /// The rows of the table under `heading` in docs/errors.md: first cells.
    fn documented(docs: &str, heading: &str, first: &str) -> Vec<String> {
        let table = docs.split(heading).nth(1).unwrap_or_else(|| panic!("no {heading}"));
        let table = table.split(&format!("| {first} |")).nth(1).unwrap_or_else(|| panic!("no table under {heading}"));
        table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("| `"))
            .map(|l| l.split('`').nth(1).unwrap().to_string())
            .collect()
    }

    #[test]
    fn every_code_is_documented_and_in_the_openapi_document() {
        let docs = docs();
        let all: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented(&docs, "## Problem codes", "code"), all, "docs/errors.md lists every code in order");
        for code in Code::ALL {
            let row = format!("| `{}` | {} | {} |", code.as_str(), code.status().as_u16(), code.meaning());
            assert!(docs.contains(&row), "docs/errors.md: {row}");
        }
        let openapi = openapi();
        assert_eq!(strings(&openapi["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]), all);
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "no code twice");
        assert!(all.iter().all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')), "snake_case");
    }

    #[test]
    fn usage_reasons_and_refusals_are_documented() {
        let docs = docs();
        let openapi = openapi();
        let schemas = &openapi["components"]["schemas"];
        let usage = UsageRejection::CODES.to_vec();
        assert_eq!(documented(&docs, "## Usage records", "reason"), usage);
        assert_eq!(strings(&schemas["UsageResult"]["properties"]["reason"]["enum"]), usage);
        let engine: Vec<&str> = RejectReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(documented(&docs, "## Usage records", "rejected_reason"), engine);
        assert_eq!(strings(&schemas["UsageResult"]["properties"]["rejected_reason"]["enum"]), engine);
        let refusals: Vec<&str> = Refusal::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(documented(&docs, "## Lifecycle events", "reason"), refusals);
        assert_eq!(strings(&schemas["EventOutcome"]["properties"]["reason"]["enum"]), refusals);
    }

    #[test]
    fn service_errors_keep_their_codes() {
        let cases = [
            (ServiceError::UnknownSubscription { id: "s".into() }, 404, "unknown_subscription", Some("id")),
            (ServiceError::IdentifierTaken { field: "identifiers.imsi", owner: "s".into() }, 409, "identifier_taken", Some("identifiers.imsi")),
            (ServiceError::InstantOutOfRange { field: "at", message: "is in the future".into() }, 422, "instant_out_of_range", Some("at")),
            (ServiceError::CatalogFull, 422, "catalog_full", Some("plan")),
            (ServiceError::Busy, 503, "busy", None),
            (ServiceError::ShardMoving { shard: 7 }, 503, "shard_moving", None),
            (ServiceError::Stopped { what: "the store writer" }, 503, "unavailable", None),
        ];
        for (error, status, code, field) in cases {
            let problem = Problem::from(error);
            assert_eq!((problem.status, problem.code, problem.field.as_deref()), (status, code, field));
        }
        let hidden = Problem::from(ServiceError::Store(rollover_store::StoreError("disk I/O error at /var/lib/x".into())));
        assert!(!hidden.detail.contains("disk"), "store text never reaches the client: {}", hidden.detail);
    }
}
