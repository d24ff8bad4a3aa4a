//! `POST /v1/usage`: a batch of records, read fast when well-formed and
//! field by field otherwise, answered after the commit.

use axum::body::Bytes;
use axum::extract::State;
use rollover_service::Service;
use serde_json::Value;

use super::ApiResult;
use crate::{json, wire};
use crate::problem::{Code, Problem};
use axum::http::header;
use axum::response::IntoResponse;
use rollover_core::Instant;
use rollover_service::{UsageRecord, UsageResult};
use serde::Deserialize;

use super::Limits;

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

pub(super) async fn post_usage(State(service): State<Service>, axum::Extension(limits): axum::Extension<Limits>, body: Bytes) -> ApiResult {
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

/// One result of `POST /v1/usage`, the same JSON as [`wire::UsageOut`] gives,
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
        other => out.push_str(&serde_json::to_string(&wire::UsageOut::of(Some(id), other)).expect("results serialize")),
    }
}
