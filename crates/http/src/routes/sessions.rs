//! Online charging over HTTP: `POST /v1/sessions`, `POST
//! /v1/sessions/{id}/update`, `DELETE /v1/sessions/{id}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use rollover_service::Service;
use serde_json::Value;

use super::{ApiResult, created, ok};
use crate::{json, wire};
use crate::problem::Problem;
use rollover_service::SessionOp;

use super::generated_id;

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
pub(super) async fn post_session(State(service): State<Service>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["id", "subscription", "requested_bytes", "at", "country"])?;
    let id = json::id(&fields, "", "id")?.unwrap_or_else(generated_id);
    let subscription = json::required_string(&fields, "", "subscription")?.to_string();
    let requested_bytes = optional_bytes(&fields, "requested_bytes")?;
    let at = json::instant(&fields, "", "at")?;
    let country = json::country(&fields, "", "country")?;
    let answer = service.session_in(&id, Some(&subscription), SessionOp::Start { requested_bytes }, at, country).await?;
    Ok(created(wire::SessionOut::of(&answer)))
}

pub(super) async fn update_session(State(service): State<Service>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["used_bytes", "requested_bytes", "request_number", "at", "country"])?;
    let used_bytes = json::bytes(&fields, "", "used_bytes")?;
    let requested_bytes = optional_bytes(&fields, "requested_bytes")?;
    let request_number = request_number(&fields)?;
    let at = json::instant(&fields, "", "at")?;
    let country = json::country(&fields, "", "country")?;
    let answer = service.session_in(&id, None, SessionOp::Update { used_bytes, requested_bytes, request_number }, at, country).await?;
    Ok(ok(wire::SessionOut::of(&answer)))
}

pub(super) async fn end_session(State(service): State<Service>, Path(id): Path<String>, body: Bytes) -> ApiResult {
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
    Ok(ok(wire::SessionOut::of(&answer)))
}
