//! `POST /v1/subscriptions` (the purchase), `POST .../events`, `GET
//! .../balance` and `POST .../tokens`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use rollover_service::Service;
use serde_json::Value;

use super::{ApiResult, created, ok};
use crate::{json, wire};
use crate::problem::{Code, Problem};
use rollover_core::{GrantExpiry, Instant};
use rollover_service::{LifecycleEvent, NewSubscription, SubscriptionIdentifiers};

use super::generated_id;

pub(super) async fn post_subscription(State(service): State<Service>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    let mut new = new_subscription(&fields, "")?;
    if new.id.is_empty() {
        new.id = generated_id();
    }
    let id = service.create_subscription(new).await?;
    Ok(created(wire::Created { id: &id }))
}

/// Most subscriptions in one `POST /v1/subscriptions/batch`.
pub const MAX_BATCH: usize = 10_000;

/// `POST /v1/subscriptions/batch` `{"subscriptions": [...]}`: up to
/// [`MAX_BATCH`] purchases, each shaped as `POST /v1/subscriptions` takes one
/// but with its `id` required (the import's idempotency key); a result each,
/// in order: `created`, `unchanged` (there already, the same), or `rejected`
/// with the problem's code, field and detail. A bad line rejects itself only.
pub(super) async fn post_batch(State(service): State<Service>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["subscriptions"])?;
    let Some(Value::Array(items)) = fields.get("subscriptions") else {
        return Err(Problem::about(Code::MissingField, "subscriptions", "is required: an array of subscriptions"));
    };
    if items.len() > MAX_BATCH {
        return Err(Problem::about(Code::TooManyRecords, "subscriptions", format!("{} subscriptions; at most {MAX_BATCH} in one request", items.len())));
    }
    let mut results: Vec<Option<wire::ImportResult>> = Vec::with_capacity(items.len());
    let mut wanted = Vec::new();
    let mut places = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("subscriptions[{index}]");
        let parsed = match item {
            Value::Object(one) => new_subscription(one, &path).and_then(|new| {
                if new.id.is_empty() { Err(Problem::about(Code::MissingField, format!("{path}.id"), "is required in a batch: it makes the import idempotent")) } else { Ok(new) }
            }),
            _ => Err(Problem::invalid(path.clone(), "must be an object")),
        };
        match parsed {
            Ok(new) => {
                places.push(index);
                results.push(None);
                wanted.push(new);
            }
            Err(problem) => results.push(Some(wire::ImportResult::rejected(item["id"].as_str(), &problem))),
        }
    }
    let ids: Vec<String> = wanted.iter().map(|n| n.id.clone()).collect();
    for ((index, id), outcome) in places.into_iter().zip(ids).zip(service.import_subscriptions(wanted).await) {
        results[index] = Some(match outcome {
            Ok(rollover_service::Imported::Created) => wire::ImportResult::done(id, "created"),
            Ok(rollover_service::Imported::Unchanged) => wire::ImportResult::done(id, "unchanged"),
            Err(error) => wire::ImportResult::rejected(Some(&id), &Problem::from(error)),
        });
    }
    let results: Vec<wire::ImportResult> = results.into_iter().flatten().collect();
    Ok(ok(wire::ImportOut { created: results.iter().filter(|r| r.status == "created").count(), results }))
}

/// One purchase as `POST /v1/subscriptions` takes it; `path` prefixes the
/// fields named in errors. An absent `id` is left empty.
fn new_subscription(fields: &json::Fields, path: &str) -> Result<NewSubscription, Problem> {
    json::only(fields, path, &["id", "plan", "at", "identifiers"])?;
    let id = json::id(fields, path, "id")?.unwrap_or_default();
    let plan = json::required_string(fields, path, "plan")?.to_string();
    let at = json::instant(fields, path, "at")?;
    let mut identifiers = SubscriptionIdentifiers::default();
    let ids_path = json::join(path, "identifiers");
    match fields.get("identifiers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ids)) => {
            json::only(ids, &ids_path, &["iccid", "imsi", "msisdn", "external_id"])?;
            let digits = |key: &str, lengths: std::ops::RangeInclusive<usize>| -> Result<Option<String>, Problem> {
                match json::string(ids, &ids_path, key)? {
                    None => Ok(None),
                    Some(s) if lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(s.to_string())),
                    Some(_) => Err(Problem::invalid(
                        json::join(&ids_path, key),
                        format!("must be {} to {} digits", lengths.start(), lengths.end()),
                    )),
                }
            };
            identifiers.iccid = digits("iccid", 18..=22)?;
            identifiers.imsi = digits("imsi", 6..=15)?;
            identifiers.msisdn = digits("msisdn", 5..=15)?;
            identifiers.external_id = json::id(ids, &ids_path, "external_id")?;
        }
        Some(_) => return Err(Problem::invalid(ids_path, "must be an object")),
    }
    Ok(NewSubscription { id, plan, at, identifiers })
}

pub(super) async fn post_event(State(service): State<Service>, Path(id): Path<String>, body: Bytes) -> ApiResult {
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
    Ok(ok(wire::EventOutcomeOut::from(outcome)))
}

/// `POST /v1/subscriptions/{id}/addons` `{"id", "addon"}`: buys an add-on
/// of the catalog, its grant and its fee, once per `id`: `201`, or `200`
/// for a purchase made before.
pub(super) async fn post_addon(State(service): State<Service>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["id", "addon"])?;
    let purchase = json::id(&fields, "", "id")?.ok_or_else(|| Problem::about(Code::MissingField, "id", "is required: the purchase's idempotency key"))?;
    let addon = json::required_string(&fields, "", "addon")?.to_string();
    let bought = service.buy_addon(&id, &purchase, &addon).await?;
    let plans = service.plans();
    let balance = service.balance(&id).await?;
    let plan = plans.catalog.get(balance.plan.ix);
    let outcome = wire::EventOutcomeOut::from(bought.outcome);
    let out = wire::AddonPurchaseOut { id: purchase, addon: bought.addon.id.clone(), data_bytes: bought.addon.bytes, fee: plan.currency.format(bought.addon.price_minor), outcome };
    let status = if bought.repeated { axum::http::StatusCode::OK } else { axum::http::StatusCode::CREATED };
    Ok(axum::response::IntoResponse::into_response((status, axum::Json(out))))
}

pub(super) async fn get_balance(State(service): State<Service>, Path(id): Path<String>) -> ApiResult {
    let balance = service.balance(&id).await?;
    let plans = service.plans();
    let plan = plans.catalog.get(balance.plan.ix);
    Ok(ok(wire::BalanceOut::of(balance, plan)))
}

/// Longest a customer token may live.
const MAX_TOKEN_SECONDS: u64 = 366 * 86_400;

/// Mints a customer token: read access to this subscription's balance and
/// ledger only, until it expires.
pub(super) async fn post_token(
    State(service): State<Service>,
    axum::Extension(security): axum::Extension<std::sync::Arc<crate::auth::Security>>,
    axum::Extension(site): axum::Extension<std::sync::Arc<super::Site>>,
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
    let url = format!("{}/my/{token}", site.public_url);
    Ok(created(wire::TokenOut { token, url, subscription: &id, expires_at: expires.to_rfc3339(&rollover_core::Zone::utc()) }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    iccid: Option<String>,
    imsi: Option<String>,
    msisdn: Option<String>,
    external_id: Option<String>,
    status: Option<String>,
    plan: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// Most subscriptions on one page of `GET /v1/subscriptions`.
pub const LIST_PAGE_MAX: usize = 1000;

/// `GET /v1/subscriptions`: the subscription holding the identifiers given
/// (`iccid`, `imsi`, `msisdn`, `external_id`), or a page of all of them;
/// filtered by `status` and `plan`, sorted by id.
pub(super) async fn list_subscriptions(State(service): State<Service>, query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>) -> ApiResult {
    let axum::extract::Query(query) = query.map_err(|e| Problem::new(Code::InvalidQuery, format!("bad query: {e}"), None))?;
    let (limit, offset) = super::page(query.limit, query.offset, LIST_PAGE_MAX)?;
    if service.lists_cluster() && offset.saturating_add(limit) > rollover_service::CLUSTER_LIST_DEPTH {
        let depth = rollover_service::CLUSTER_LIST_DEPTH;
        return Err(Problem::about(Code::InvalidQuery, "offset", format!("offset + limit must be at most {depth} in cluster mode; narrow the list by status or plan")));
    }
    let identifiers = [("iccid", &query.iccid), ("imsi", &query.imsi), ("msisdn", &query.msisdn), ("external_id", &query.external_id)];
    for (field, value) in identifiers.iter().copied().chain([("plan", &query.plan)]) {
        if let Some(value) = value
            && !(1..=128).contains(&value.chars().count())
        {
            return Err(Problem::about(Code::InvalidQuery, field, "must be 1 to 128 characters"));
        }
    }
    let asked: Vec<(&str, &String)> = identifiers.iter().filter_map(|(field, value)| value.as_ref().map(|v| (*field, v))).collect();
    let status = query
        .status
        .as_deref()
        .map(|s| rollover_core::Status::parse(s).ok_or_else(|| Problem::about(Code::InvalidQuery, "status", format!("\"{s}\" is not a status: pending, active, throttled, depleted, suspended, expired, lapsed, cancelled"))))
        .transpose()?;
    let filter = rollover_service::SubscriptionFilter { status, plan: query.plan.clone() };
    let (subscriptions, total) = if asked.is_empty() {
        service.subscriptions(filter, offset, limit).await?
    } else {
        // Each identifier given narrows the answer: the one subscription
        // holding all of them, if it passes the filter too.
        let holders: Vec<Option<String>> = asked.iter().map(|(field, value)| service.subscription_by(field, value)).collect();
        let found = match holders.first() {
            Some(Some(id)) if holders.iter().all(|h| h.as_deref() == Some(id.as_str())) => {
                let balance = service.balance(id).await?;
                let summary = rollover_service::SubscriptionSummary { id: id.clone(), plan: balance.plan, status: balance.status };
                let passes = filter.status.is_none_or(|s| s == summary.status) && filter.plan.as_ref().is_none_or(|p| *p == summary.plan.id);
                if passes { vec![summary] } else { Vec::new() }
            }
            _ => Vec::new(),
        };
        let total = found.len();
        (found.into_iter().skip(offset).take(limit).collect(), total)
    };
    let next_offset = (offset + subscriptions.len() < total).then_some(offset + subscriptions.len());
    Ok(ok(wire::SubscriptionListOut {
        subscriptions: subscriptions.into_iter().map(|s| wire::SubscriptionSummaryOut { id: s.id, plan: wire::PlanVersion { id: s.plan.id, version: s.plan.version }, status: s.status.name() }).collect(),
        total,
        next_offset,
    }))
}
