//! `POST /v1/advice`: which plan of the current catalog fits a history of
//! daily usage best, either a usage file (`text/csv`) or a subscription's
//! own history (`{"subscription": ID}`).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use rollover_core::Catalog;
use rollover_explain::Lang;
use rollover_service::{Service, ServiceError};

use super::{ApiResult, ok};
use crate::problem::{Code, Problem};
use crate::{json, wire};

pub(super) async fn post_advice(State(service): State<Service>, headers: HeaderMap, RawQuery(query): RawQuery, body: Bytes) -> ApiResult {
    let lang = match query.as_deref() {
        None | Some("") => Lang::En,
        Some(query) => match query.strip_prefix("lang=").and_then(rollover_pages::lang_of_code) {
            Some(lang) if !query.contains('&') => lang,
            _ => return Err(Problem::about(Code::InvalidQuery, "lang", "the only parameter is lang, \"en\" or \"zh\"")),
        },
    };
    // The guard has checked the type: text/csv or application/json.
    let is_csv = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.to_ascii_lowercase().starts_with("text/csv"));
    let days = if is_csv {
        let text = std::str::from_utf8(&body).map_err(|_| Problem::new(Code::InvalidUsageFile, "the body is not UTF-8", None))?;
        rollover_advise::parse_usage("body", text).map_err(|e| Problem::new(Code::InvalidUsageFile, e.to_string(), Some(format!("line {}", e.line))))?
    } else {
        let fields = json::parse_object(&body)?;
        json::only(&fields, "", &["subscription"])?;
        let id = json::id(&fields, "", "subscription")?.ok_or_else(|| Problem::required("subscription"))?;
        subscription_days(&service, &id).await.map_err(|error| match error {
            ServiceError::UnknownSubscription { id } => Problem::about(Code::UnknownReference, "subscription", format!("no subscription \"{id}\"")),
            other => Problem::from(other),
        })?
    };
    let catalog = latest_catalog(&service);
    // Up to ten years on every plan: off the async threads.
    let out = tokio::task::spawn_blocking(move || {
        let advice = rollover_advise::advise(&catalog, &days, None);
        wire::AdviceOut::of(&catalog, &advice, lang)
    })
    .await
    .map_err(|_| Problem::new(Code::Internal, "the advisor failed an internal check; the failure is logged", None))?;
    Ok(ok(out))
}

/// The newest version of every plan on sale, in catalog order.
pub fn latest_catalog(service: &Service) -> Catalog {
    let plans = service.plans();
    let mut catalog = Catalog::new();
    for version in plans.all_latest() {
        catalog.add(plans.catalog.get(version.ix).clone());
    }
    catalog
}

/// A subscription's own history for advice ([`rollover_advise::history_days`]).
pub async fn subscription_days(service: &Service, id: &str) -> Result<Vec<rollover_advise::Day>, ServiceError> {
    let now = service.now();
    let ledger = service.ledger_since(id, rollover_advise::history_start(now)).await?;
    let plans = service.plans();
    Ok(rollover_advise::history_days(&ledger.entries, &plans.catalog.get(ledger.plan).zone, now, ledger.purchased_at))
}
