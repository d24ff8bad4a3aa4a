//! The `/v1` routes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rollover_core::explain::{Lang, explain_plan};
use rollover_core::ledger::{Change, Lifecycle, Source, ThrottleReason};
use rollover_core::{GrantExpiry, Instant};
use rollover_service::{
    EventOutcome, FinalAction, LifecycleEvent, NewSubscription, Service, SessionAnswer, SessionOp, SubscriptionIdentifiers, UsageRecord, UsageResult,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::json;
use crate::problem::{Code, Problem};

/// Most records in one `POST /v1/usage`, and the default.
pub const MAX_RECORDS: usize = 10_000;

/// Request limits an operator may lower.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most records in one `POST /v1/usage` (at most 10,000).
    pub max_records: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest one request may take to arrive and be answered.
    pub request_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_records: MAX_RECORDS, max_body_bytes: 4 << 20, request_timeout: std::time::Duration::from_secs(30) }
    }
}

pub fn router(service: Service, security: std::sync::Arc<crate::auth::Security>, limits: Limits) -> Router {
    let auth_state = (security.clone(), service.clone());
    Router::new()
        .route("/v1/plans", post(post_plans).get(get_plans))
        .route("/v1/plans/{id}", get(get_plan))
        .route("/v1/subscriptions", post(post_subscription))
        .route("/v1/subscriptions/{id}/events", post(post_event))
        .route("/v1/subscriptions/{id}/balance", get(get_balance))
        .route("/v1/subscriptions/{id}/ledger", get(get_ledger))
        .route("/v1/subscriptions/{id}/tokens", post(post_token))
        .route("/v1/usage", post(post_usage))
        .route("/v1/sessions", post(post_session))
        .route("/v1/sessions/{id}/update", post(update_session))
        .route("/v1/sessions/{id}", axum::routing::delete(end_session))
        .route("/v1/clock", post(post_clock).get(get_clock))
        .route("/metrics", get(get_metrics))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], crate::docs::OPENAPI) }))
        .route("/docs", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::docs::page()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .fallback(|| async { Problem::new(Code::NoSuchEndpoint, "no such endpoint", None) })
        .layer(axum::middleware::from_fn_with_state(auth_state, crate::auth::authorize))
        .layer(axum::middleware::from_fn_with_state(limits, crate::guard::check))
        .layer(axum::Extension(security))
        .layer(axum::Extension(limits))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(service)
}

type ApiResult = Result<Response, Problem>;

fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// JSON plan bodies have the plan file's structure (`{"plan": [...]}`); they
/// are written out as TOML so that one reader checks both.
fn plan_document(headers: &HeaderMap, body: &Bytes) -> Result<String, Problem> {
    // The guard has checked the type: application/toml or application/json.
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let text = std::str::from_utf8(body).map_err(|_| Problem::new(Code::InvalidJson, "the body is not UTF-8", None))?;
    if content_type.to_ascii_lowercase().starts_with("application/json") {
        let value = json::parse_value(body)?;
        if !value.is_object() {
            return Err(Problem::new(Code::InvalidJson, "the body must be an object with a \"plan\" array", None));
        }
        toml::to_string(&value).map_err(|e| Problem::new(Code::InvalidPlan, format!("the body cannot be read as plans: {e}"), None))
    } else {
        Ok(text.to_string())
    }
}

async fn post_plans(State(service): State<Service>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let document = plan_document(&headers, &body)?;
    let versions = service.add_plans(&document).await.map_err(|e| match e {
        rollover_service::ServiceError::InvalidPlan { field, message } => {
            // `message` is "body:LINE: FIELD: text"; the line only helps TOML.
            Problem::new(Code::InvalidPlan, message.strip_prefix("body:").map(|m| format!("line {m}")).unwrap_or(message), Some(field))
        }
        other => other.into(),
    })?;
    let plans: Vec<Value> = versions.into_iter().map(|(id, version)| json!({"id": id, "version": version})).collect();
    Ok(created(json!({ "plans": plans })))
}

async fn get_plans(State(service): State<Service>) -> ApiResult {
    let plans = service.plans();
    let list: Vec<Value> = plans
        .all_latest()
        .into_iter()
        .map(|p| {
            let plan = plans.catalog.get(p.ix);
            json!({"id": p.id, "version": p.version, "name": plan.name, "currency": plan.currency.code(), "price": plan.currency.format(plan.price_minor)})
        })
        .collect();
    Ok(ok(json!({ "plans": list })))
}

async fn get_plan(State(service): State<Service>, Path(id): Path<String>) -> ApiResult {
    let (version, plan) = {
        let plans = service.plans();
        let latest = plans.latest(&id).ok_or_else(|| Problem::new(Code::UnknownPlan, format!("unknown plan \"{id}\""), Some("id".into())))?;
        (latest.version, plans.catalog.get(latest.ix).clone())
    };
    let document = service.plan_document(&id, version);
    Ok(ok(json!({
        "id": plan.id,
        "version": version,
        "name": plan.name,
        "currency": plan.currency.code(),
        "price": plan.currency.format(plan.price_minor),
        "timezone": plan.zone.name(),
        "document": document,
        "explanation": { "en": explain_plan(&plan, Lang::En), "zh": explain_plan(&plan, Lang::Zh) },
    })))
}

async fn post_subscription(State(service): State<Service>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["id", "plan", "at", "identifiers"])?;
    let id = match json::id(&fields, "", "id")? {
        Some(id) => id,
        None => generated_id(),
    };
    let plan = json::required_string(&fields, "", "plan")?.to_string();
    let at = json::instant(&fields, "", "at")?;
    let mut identifiers = SubscriptionIdentifiers::default();
    match fields.get("identifiers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ids)) => {
            json::only(ids, "identifiers", &["iccid", "imsi", "msisdn", "external_id"])?;
            let digits = |key: &str, lengths: std::ops::RangeInclusive<usize>| -> Result<Option<String>, Problem> {
                match json::string(ids, "identifiers", key)? {
                    None => Ok(None),
                    Some(s) if lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(s.to_string())),
                    Some(_) => Err(Problem::invalid(
                        format!("identifiers.{key}"),
                        format!("must be {} to {} digits", lengths.start(), lengths.end()),
                    )),
                }
            };
            identifiers.iccid = digits("iccid", 18..=22)?;
            identifiers.imsi = digits("imsi", 6..=15)?;
            identifiers.msisdn = digits("msisdn", 5..=15)?;
            identifiers.external_id = json::id(ids, "identifiers", "external_id")?;
        }
        Some(_) => return Err(Problem::invalid("identifiers", "must be an object")),
    }
    let id = service.create_subscription(NewSubscription { id, plan, at, identifiers }).await?;
    Ok(created(json!({ "id": id })))
}

fn generated_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sub-{:x}-{n:x}", rollover_service::wall_micros())
}

async fn post_event(State(service): State<Service>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    let actions = ["install", "first_use", "grant", "change_plan", "suspend", "resume", "cancel"];
    let mut allowed = actions.to_vec();
    allowed.push("at");
    json::only(&fields, "", &allowed)?;
    let present: Vec<&str> = actions.iter().copied().filter(|a| fields.contains_key(*a)).collect();
    let action = match present.as_slice() {
        [one] => *one,
        [] => return Err(Problem::new(Code::MissingField, format!("give one of {}", actions.join(", ")), None)),
        many => return Err(Problem::new(Code::InvalidField, format!("one event per request; got {}", many.join(", ")), None)),
    };
    let at = json::instant(&fields, "", "at")?;
    let event = match action {
        "install" => json::must_be_true(&fields, "install").map(|_| LifecycleEvent::Install)?,
        "first_use" => json::must_be_true(&fields, "first_use").map(|_| LifecycleEvent::FirstUse)?,
        "suspend" => json::must_be_true(&fields, "suspend").map(|_| LifecycleEvent::Suspend)?,
        "resume" => json::must_be_true(&fields, "resume").map(|_| LifecycleEvent::Resume)?,
        "cancel" => json::must_be_true(&fields, "cancel").map(|_| LifecycleEvent::Cancel)?,
        "change_plan" => LifecycleEvent::ChangePlan(json::required_string(&fields, "", "change_plan")?.to_string()),
        _ => {
            let Some(Value::Object(grant)) = fields.get("grant") else {
                return Err(Problem::invalid("grant", "must be an object with kind, data and expires"));
            };
            json::only(grant, "grant", &["kind", "data", "expires"])?;
            let kind = json::kind(grant, "grant", "kind")?;
            let bytes = json::bytes(grant, "grant", "data")?;
            if bytes == 0 {
                return Err(Problem::about(Code::ValueOutOfRange, "grant.data", "must be more than zero"));
            }
            let expires = match json::required_string(grant, "grant", "expires")? {
                "period_end" => GrantExpiry::PeriodEnd,
                "never" => GrantExpiry::Never,
                text => GrantExpiry::At(Instant::parse_rfc3339(text).map_err(|e| Problem::invalid("grant.expires", format!("{e}, or \"period_end\" or \"never\"")))?),
            };
            LifecycleEvent::Grant { kind, bytes, expires }
        }
    };
    let outcome = service.apply_event(&id, event, at).await?;
    Ok(ok(match outcome {
        EventOutcome::Applied => json!({"outcome": "applied"}),
        EventOutcome::Refused(refusal) => json!({"outcome": "refused", "reason": refusal.code(), "detail": refusal.text()}),
    }))
}

/// The usage body as it almost always arrives: read without building a
/// JSON tree. Anything it does not take (a negative number, an amount
/// string, an unknown field) goes to the field-by-field reader, which names
/// what is wrong.
#[derive(Deserialize)]
struct FastUsage<'a> {
    #[serde(borrow)]
    records: Vec<FastRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastRecord<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    subscription: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    at: std::borrow::Cow<'a, str>,
    bytes: u64,
    #[serde(borrow, default)]
    country: Option<std::borrow::Cow<'a, str>>,
}

/// The records of a well-formed body, or `None` when any record needs the
/// careful reader (to reject it with its field named).
fn fast_records(body: &[u8], max_records: usize) -> Option<Vec<UsageRecord>> {
    let parsed: FastUsage = serde_json::from_slice(body).ok()?;
    if parsed.records.is_empty() || parsed.records.len() > max_records {
        return None;
    }
    let mut records = Vec::with_capacity(parsed.records.len());
    // Records of one batch usually share their instant: parse each text once.
    let mut last_at: Option<(String, rollover_core::Instant)> = None;
    for r in parsed.records {
        if !json::is_valid_id(&r.id) || r.bytes > json::MAX_RECORD_BYTES {
            return None;
        }
        let at = match &last_at {
            Some((text, at)) if *text == *r.at => *at,
            _ => {
                let at = Instant::parse_rfc3339(&r.at).ok()?;
                last_at = Some((r.at.to_string(), at));
                at
            }
        };
        let country = match r.country {
            Some(code) => Some(rollover_core::Country::parse(&code).ok()?),
            None => None,
        };
        records.push(UsageRecord { id: r.id.into_owned(), subscription: r.subscription.into_owned(), at, bytes: r.bytes, country, counter: None });
    }
    Some(records)
}

/// Every record checked field by field, so that the first bad one is named.
fn careful_records(body: &[u8], max_records: usize) -> Result<Vec<UsageRecord>, Problem> {
    let fields = json::parse_object(body)?;
    json::only(&fields, "", &["records"])?;
    let Some(Value::Array(list)) = fields.get("records") else {
        return Err(Problem::invalid("records", "is required: an array of usage records"));
    };
    if list.is_empty() {
        return Err(Problem::invalid("records", "is empty"));
    }
    if list.len() > max_records {
        return Err(Problem::new(
            Code::TooManyRecords,
            format!("records: {} records; at most {max_records} per request", list.len()),
            Some("records".into()),
        ));
    }
    let mut records = Vec::with_capacity(list.len());
    for (index, value) in list.iter().enumerate() {
        let path = format!("records[{index}]");
        let Value::Object(record) = value else {
            return Err(Problem::invalid(path, "must be an object"));
        };
        json::only(record, &path, &["id", "subscription", "at", "bytes", "country"])?;
        let id = json::id(record, &path, "id")?.ok_or_else(|| Problem::required(format!("{path}.id")))?;
        let subscription = json::required_string(record, &path, "subscription")?.to_string();
        let at = json::instant(record, &path, "at")?.ok_or_else(|| Problem::required(format!("{path}.at")))?;
        let bytes = json::bytes(record, &path, "bytes")?;
        let country = json::country(record, &path, "country")?;
        records.push(UsageRecord { id, subscription, at, bytes, country, counter: None });
    }
    Ok(records)
}

async fn post_usage(State(service): State<Service>, axum::Extension(limits): axum::Extension<Limits>, body: Bytes) -> ApiResult {
    // Every record is checked before any is applied: a bad batch applies nothing.
    let records = match fast_records(&body, limits.max_records) {
        Some(records) => records,
        None => careful_records(&body, limits.max_records)?,
    };
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let results = service.record_usage(records).await?;
    // Written out directly: a thousand small JSON trees cost more than the rating.
    let mut out = String::with_capacity(ids.len() * 110 + 16);
    out.push_str(r#"{"results":["#);
    for (n, (id, result)) in ids.iter().zip(&results).enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_usage_result(&mut out, id, result);
    }
    out.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// One result of `POST /v1/usage`, the same JSON as [`usage_json`] gives,
/// written without building a tree: the common outcomes in place.
fn write_usage_result(out: &mut String, id: &str, result: &UsageResult) {
    use std::fmt::Write as _;
    let quoted = || serde_json::to_string(id).expect("strings serialize");
    match result {
        UsageResult::Accepted { drawn_bytes, throttled_bytes, rejected_bytes, late: false, rejected_reason: None } => {
            let id = quoted();
            let _ = write!(
                out,
                r#"{{"id":{id},"status":"accepted","drawn_bytes":{drawn_bytes},"throttled_bytes":{throttled_bytes},"rejected_bytes":{rejected_bytes}}}"#
            );
        }
        UsageResult::Duplicate => {
            let _ = write!(out, r#"{{"id":{},"status":"duplicate"}}"#, quoted());
        }
        other => out.push_str(&usage_json(id, other).to_string()),
    }
}

fn usage_json(id: &str, result: &UsageResult) -> Value {
    match result {
        UsageResult::Accepted { drawn_bytes, throttled_bytes, rejected_bytes, late, rejected_reason } => {
            let mut v = json!({"id": id, "status": "accepted", "drawn_bytes": drawn_bytes, "throttled_bytes": throttled_bytes, "rejected_bytes": rejected_bytes});
            if *late {
                v["late"] = json!(true);
            }
            if let Some(reason) = rejected_reason {
                v["rejected_reason"] = json!(reason.name());
            }
            v
        }
        UsageResult::Duplicate => json!({"id": id, "status": "duplicate"}),
        UsageResult::Conflict => json!({
            "id": id, "status": "conflict", "reason": "id_reused",
            "detail": "this id was accepted before with other bytes, another instant or another country; the record is not rated",
        }),
        UsageResult::Rejected(rejection) => json!({"id": id, "status": "rejected", "reason": rejection.code(), "detail": rejection.to_string()}),
    }
}

fn session_json(answer: &SessionAnswer) -> Value {
    let mut v = json!({
        "id": answer.session,
        "subscription": answer.subscription,
        "result": if answer.not_covered {
            "not_covered"
        } else if answer.credit_limit_reached {
            "credit_limit_reached"
        } else {
            "ok"
        },
        "granted_bytes": answer.granted_bytes,
        "validity_seconds": answer.validity_seconds,
        "status": answer.status.name(),
    });
    if let Some(action) = answer.final_unit {
        v["final_unit"] = match action {
            FinalAction::Terminate => json!({"action": "terminate"}),
            FinalAction::Throttle { throttle_kbps } => json!({"action": "throttle", "throttle_kbps": throttle_kbps}),
        };
    }
    if let Some(used) = &answer.used {
        let mut used = usage_json(&answer.session, used);
        if let Some(map) = used.as_object_mut() {
            map.remove("id");
        }
        v["used"] = used;
    }
    v
}

fn optional_bytes(fields: &json::Fields, key: &str) -> Result<Option<u64>, Problem> {
    if fields.get(key).is_none_or(Value::is_null) { Ok(None) } else { json::bytes(fields, "", key).map(Some) }
}

/// The report's number in its session: required, so that a repeated report
/// is told from a new one (a repeat gets the first answer, never a second
/// rating).
fn request_number(fields: &json::Fields) -> Result<u32, Problem> {
    match fields.get("request_number") {
        None | Some(Value::Null) => Err(Problem::invalid("request_number", "is required: number each report of a session, 1, 2, 3, ...")),
        Some(Value::Number(n)) => json::whole_number(n).filter(|n| *n <= u32::MAX as u64).map(|n| n as u32).ok_or_else(|| Problem::invalid("request_number", "must be 0 to 4294967295")),
        Some(_) => Err(Problem::invalid("request_number", "must be a number")),
    }
}

fn optional_request_number(fields: &json::Fields) -> Result<Option<u32>, Problem> {
    if fields.get("request_number").is_none_or(Value::is_null) { Ok(None) } else { request_number(fields).map(Some) }
}

/// Opens an online charging session: reserves
/// `min(requested, available, max_grant)` for the validity time.
async fn post_session(State(service): State<Service>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["id", "subscription", "requested_bytes", "at", "country"])?;
    let id = json::id(&fields, "", "id")?.unwrap_or_else(generated_id);
    let subscription = json::required_string(&fields, "", "subscription")?.to_string();
    let requested_bytes = optional_bytes(&fields, "requested_bytes")?;
    let at = json::instant(&fields, "", "at")?;
    let country = json::country(&fields, "", "country")?;
    let answer = service.session_in(&id, Some(&subscription), SessionOp::Start { requested_bytes }, at, country).await?;
    Ok(created(session_json(&answer)))
}

async fn update_session(State(service): State<Service>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["used_bytes", "requested_bytes", "request_number", "at", "country"])?;
    let used_bytes = json::bytes(&fields, "", "used_bytes")?;
    let requested_bytes = optional_bytes(&fields, "requested_bytes")?;
    let request_number = request_number(&fields)?;
    let at = json::instant(&fields, "", "at")?;
    let country = json::country(&fields, "", "country")?;
    let answer = service.session_in(&id, None, SessionOp::Update { used_bytes, requested_bytes, request_number }, at, country).await?;
    Ok(ok(session_json(&answer)))
}

async fn end_session(State(service): State<Service>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let fields = if body.is_empty() { json::Fields::new() } else { json::parse_object(&body)? };
    json::only(&fields, "", &["used_bytes", "request_number", "at", "country"])?;
    let used_bytes = optional_bytes(&fields, "used_bytes")?;
    // Ending without a report needs no number; a report does.
    let request_number = match used_bytes {
        Some(_) => request_number(&fields)?,
        None => optional_request_number(&fields)?.unwrap_or(u32::MAX),
    };
    let used_bytes = used_bytes.unwrap_or(0);
    let at = json::instant(&fields, "", "at")?;
    let country = json::country(&fields, "", "country")?;
    let answer = service.session_in(&id, None, SessionOp::End { used_bytes, request_number }, at, country).await?;
    Ok(ok(session_json(&answer)))
}

#[derive(Serialize)]
struct BucketOut {
    kind: String,
    remaining_bytes: u64,
    expires_at: Option<String>,
    rolls_over: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    carry_expires_at: Option<String>,
}

async fn get_balance(State(service): State<Service>, Path(id): Path<String>) -> ApiResult {
    let balance = service.balance(&id).await?;
    let plans = service.plans();
    let plan = plans.catalog.get(balance.plan.ix);
    let zone = &plan.zone;
    let buckets: Vec<BucketOut> = balance
        .buckets
        .iter()
        .map(|b| BucketOut {
            kind: b.kind.clone(),
            remaining_bytes: b.remaining_bytes,
            expires_at: b.expires_at.and_then(|e| json::show(e, zone)),
            rolls_over: b.rolls_over,
            carry_expires_at: b.carry_expires_at.and_then(|e| json::show(e, zone)),
        })
        .collect();
    let mut out = json!({
        "id": balance.id,
        "plan": {"id": balance.plan.id, "version": balance.plan.version},
        "as_of": balance.at.to_rfc3339(zone),
        "status": balance.status.name(),
        "total_bytes": balance.total_bytes,
        "buckets": buckets,
        "currency": plan.currency.code(),
        "charges": plan.currency.format(balance.charges_minor),
        "fees": plan.currency.format(balance.fees_minor),
        "throttled_bytes": balance.throttled_bytes,
        "rejected_bytes": balance.rejected_bytes,
    });
    if let Some(daily) = balance.daily_remaining_bytes {
        out["daily_remaining_bytes"] = json!(daily);
    }
    if let Some(expires) = balance.expires_at {
        out["expires_at"] = json!(expires.to_rfc3339(zone));
    }
    Ok(ok(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    cause: Option<String>,
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "type")]
    entry_type: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

const LEDGER_PAGE_MAX: usize = 1000;

/// Largest ledger offset: far past any ledger, and small enough that
/// `offset + limit` cannot wrap.
const LEDGER_OFFSET_MAX: usize = 1 << 40;

/// The `type` of every ledger entry, as `?type=` takes it.
const ENTRY_TYPES: [&str; 11] =
    ["granted", "drawn", "carried_out", "forfeited", "fee", "charged", "accepted_unmetered", "throttled", "rejected", "lifecycle", "network"];

async fn get_ledger(State(service): State<Service>, Path(id): Path<String>, query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>) -> ApiResult {
    let Query(query) = query.map_err(|e| Problem::new(Code::InvalidQuery, format!("bad query: {e}"), None))?;
    let cause = query
        .cause
        .as_deref()
        .map(|c| rollover_core::Cause::parse(c).ok_or_else(|| Problem::about(Code::InvalidQuery, "cause", format!("\"{c}\" is not a cause: expired, cap, plan_change, cancelled"))))
        .transpose()?;
    let from = query.from.as_deref().map(|t| Instant::parse_rfc3339(t).map_err(|e| Problem::about(Code::InvalidQuery, "from", e))).transpose()?;
    let to = query.to.as_deref().map(|t| Instant::parse_rfc3339(t).map_err(|e| Problem::about(Code::InvalidQuery, "to", e))).transpose()?;
    if let Some(entry_type) = query.entry_type.as_deref()
        && !ENTRY_TYPES.contains(&entry_type)
    {
        return Err(Problem::about(Code::InvalidQuery, "type", format!("\"{entry_type}\" is not an entry type: {}", ENTRY_TYPES.join(", "))));
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > LEDGER_PAGE_MAX {
        return Err(Problem::about(Code::InvalidQuery, "limit", format!("must be 1 to {LEDGER_PAGE_MAX}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > LEDGER_OFFSET_MAX {
        return Err(Problem::about(Code::InvalidQuery, "offset", format!("must be 0 to {LEDGER_OFFSET_MAX}")));
    }
    let ledger = service.ledger(&id).await?;
    let (entries, late) = (ledger.entries, ledger.late);
    let plans = service.plans();
    let plan = plans.catalog.get(ledger.plan);
    let zone = &plan.zone;
    let money = |minor: i64| plan.currency.format(minor);
    // Network notes go after the entries of their instant.
    let mut notes = ledger.notes.into_iter().peekable();
    let mut merged: Vec<(Instant, Value)> = Vec::with_capacity(entries.len());
    for (e, late) in entries.iter().zip(late) {
        while let Some((at, _)) = notes.peek()
            && *at < e.at
        {
            let (at, note) = notes.next().expect("peeked");
            merged.push((at, json!({"type": "network", "note": note})));
        }
        if cause.is_some_and(|c| !matches!(e.change, Change::Forfeited { cause, .. } if cause == c)) {
            continue;
        }
        merged.push((e.at, entry_json(e, late, zone, &money)));
    }
    merged.extend(notes.map(|(at, note)| (at, json!({"type": "network", "note": note}))));
    let selected: Vec<Value> = merged
        .into_iter()
        .filter(|(at, v)| from.is_none_or(|f| *at >= f) && to.is_none_or(|t| *at < t) && (cause.is_none() || v["type"] != "network"))
        .map(|(at, mut v)| {
            v["at"] = json!(at.to_rfc3339(zone));
            v
        })
        .filter(|v| query.entry_type.as_deref().is_none_or(|t| v["type"] == t))
        .collect();
    let total = selected.len();
    let page: Vec<Value> = selected.into_iter().skip(offset).take(limit).collect();
    let mut out = json!({"entries": page, "total": total});
    if offset + limit < total {
        out["next_offset"] = json!(offset + limit);
    }
    Ok(ok(out))
}

fn entry_json(e: &rollover_core::ledger::Entry, late: bool, zone: &rollover_core::Zone, money: &dyn Fn(i64) -> String) -> Value {
    let mut v = match e.change {
        Change::Granted { bytes, expires, source } => json!({
            "type": "granted", "bytes": bytes, "expires_at": json::show(expires, zone),
            "source": match source { Source::Period(_) => "period", Source::Grant => "grant", Source::ExtraBlock => "extra_block", Source::Carry => "carry" },
        }),
        Change::Drawn { bytes } => json!({"type": "drawn", "bytes": bytes}),
        Change::CarriedOut { bytes, into } => json!({"type": "carried_out", "bytes": bytes, "into_bucket": into}),
        Change::Forfeited { bytes, cause } => json!({"type": "forfeited", "bytes": bytes, "cause": cause.name()}),
        Change::Fee { minor, period } => json!({"type": "fee", "amount": money(minor), "period": period}),
        Change::Charged { minor, bytes } => json!({"type": "charged", "amount": money(minor), "bytes": bytes}),
        Change::Unmetered { bytes } => json!({"type": "accepted_unmetered", "bytes": bytes}),
        Change::Throttled { bytes, reason } => json!({"type": "throttled", "bytes": bytes, "reason": match reason { ThrottleReason::DailyCap => "daily_cap", ThrottleReason::Exhausted => "exhausted" }}),
        Change::Rejected { bytes, reason } => json!({"type": "rejected", "bytes": bytes, "reason": reason.name()}),
        Change::Lifecycle(event) => json!({"type": "lifecycle", "event": lifecycle_name(event)}),
    };
    if late {
        v["late"] = json!(true);
    }
    if let Some(kind) = e.kind {
        v["bucket"] = json!(e.bucket);
        v["kind"] = json!(kind.name());
    }
    v
}

fn lifecycle_name(event: Lifecycle) -> &'static str {
    match event {
        Lifecycle::Purchased(_) => "purchased",
        Lifecycle::Installed => "installed",
        Lifecycle::FirstUse => "first_use",
        Lifecycle::Started => "started",
        Lifecycle::Lapsed => "lapsed",
        Lifecycle::Expired => "expired",
        Lifecycle::Suspended => "suspended",
        Lifecycle::Resumed => "resumed",
        Lifecycle::Cancelled => "cancelled",
        Lifecycle::PlanChangeScheduled(_) => "plan_change_scheduled",
        Lifecycle::PlanChanged { .. } => "plan_changed",
        Lifecycle::Refused(_) => "refused",
    }
}

async fn post_clock(State(service): State<Service>, body: Bytes) -> ApiResult {
    if !service.clock_is_simulated() {
        return Err(Problem::new(Code::ClockNotSimulated, "the clock can be moved only when serving with --clock simulated", None));
    }
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["now"])?;
    let now = json::instant(&fields, "", "now")?.ok_or_else(|| Problem::required("now"))?;
    let now = service.set_clock(now).await?;
    Ok(ok(json!({ "now": now.to_rfc3339(&rollover_core::Zone::utc()) })))
}

async fn get_metrics(State(service): State<Service>) -> ApiResult {
    let text = service.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Longest a customer token may live.
const MAX_TOKEN_SECONDS: u64 = 366 * 86_400;

/// Mints a customer token: read access to this subscription's balance and
/// ledger only, until it expires.
async fn post_token(
    State(service): State<Service>,
    axum::Extension(security): axum::Extension<std::sync::Arc<crate::auth::Security>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let fields = if body.is_empty() { json::Fields::new() } else { json::parse_object(&body)? };
    json::only(&fields, "", &["expires_in_seconds"])?;
    let seconds = match fields.get("expires_in_seconds") {
        None | Some(Value::Null) => 30 * 86_400,
        Some(Value::Number(n)) => json::whole_number(n)
            .filter(|s| (1..=MAX_TOKEN_SECONDS).contains(s))
            .ok_or_else(|| Problem::invalid("expires_in_seconds", format!("must be 1 to {MAX_TOKEN_SECONDS}")))?,
        Some(_) => return Err(Problem::invalid("expires_in_seconds", "must be a number")),
    };
    service.balance(&id).await?;
    let expires = service.now().plus_micros(seconds as i64 * 1_000_000);
    let token = security.customer_token(&id, expires);
    Ok(created(json!({"token": token, "subscription": id, "expires_at": expires.to_rfc3339(&rollover_core::Zone::utc())})))
}

async fn get_clock(State(service): State<Service>) -> ApiResult {
    Ok(ok(json!({ "now": service.now().to_rfc3339(&rollover_core::Zone::utc()), "simulated": service.clock_is_simulated() })))
}
