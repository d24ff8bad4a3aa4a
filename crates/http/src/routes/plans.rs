//! `POST /v1/plans`, `GET /v1/plans`, `GET /v1/plans/{id}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use rollover_service::Service;

use super::{ApiResult, created, ok};
use crate::{json, wire};
use crate::problem::{Code, Problem};
use axum::http::{HeaderMap, header};

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

pub(super) async fn post_plans(State(service): State<Service>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let document = plan_document(&headers, &body)?;
    let versions = service.add_plans(&document).await.map_err(|e| match e {
        rollover_service::ServiceError::InvalidPlan { field, message } => {
            // `message` is "body:LINE: FIELD: text"; the line only helps TOML.
            Problem::new(Code::InvalidPlan, message.strip_prefix("body:").map(|m| format!("line {m}")).unwrap_or(message), Some(field))
        }
        other => other.into(),
    })?;
    let list = |items: Vec<(String, u32)>| items.into_iter().map(|(id, version)| wire::PlanVersion { id, version }).collect();
    Ok(created(wire::PlanVersions { plans: list(versions.plans), addons: list(versions.addons) }))
}

pub(super) async fn get_plans(State(service): State<Service>) -> ApiResult {
    let plans = service.plans();
    let list = plans.all_latest().into_iter().map(|p| wire::PlanSummary::of(plans.catalog.get(p.ix), p.version)).collect();
    Ok(ok(wire::PlanList { plans: list }))
}

pub(super) async fn get_plan(State(service): State<Service>, Path(id): Path<String>) -> ApiResult {
    let (version, plan) = {
        let plans = service.plans();
        let latest = plans.latest(&id).ok_or_else(|| Problem::new(Code::UnknownPlan, format!("unknown plan \"{id}\""), Some("id".into())))?;
        (latest.version, plans.catalog.get(latest.ix).clone())
    };
    let document = service.plan_document(&id, version);
    Ok(ok(wire::PlanOut::of(&plan, version, document)))
}
