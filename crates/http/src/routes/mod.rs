//! The `/v1` routes, one module per resource: `plans`, `subscriptions`
//! (purchase, events, balance, tokens), `usage`, `sessions`, `ledger` and
//! `admin` (clock, metrics, health, the API description). Each handler reads
//! its request field by field ([`crate::json`]), calls the service, and
//! writes a typed response ([`crate::wire`]); errors are problems
//! ([`crate::problem`]).

mod admin;
mod console;
mod esim;
pub mod orders;
mod packages;
pub(crate) mod advice;
mod ledger;
mod pages;
mod plans;
mod sessions;
mod subscriptions;
mod usage;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rollover_service::Service;
use serde::Serialize;

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

/// Where the service is reached from outside, for the links it hands out.
#[derive(Debug, Clone)]
pub struct Site {
    /// `scheme://host[:port]`, no trailing slash: `server.public_url`.
    pub public_url: String,
}

pub fn router(service: Service, orders: rollover_service::orders::Orders, security: std::sync::Arc<crate::auth::Security>, limits: Limits, site: Site) -> Router {
    let auth_state = (security.clone(), service.clone());
    Router::new()
        .route("/", get(pages::root))
        .route("/my/{token}", get(pages::customer))
        .route("/console", get(console::home))
        .route("/console/sign-in", post(console::sign_in))
        .route("/console/sign-out", post(console::sign_out))
        .route("/console/subscriptions", get(console::search))
        .route("/console/subscriptions/{id}", get(console::subscription).post(console::act))
        .route("/console/plans", get(console::plans).post(console::upload))
        .route("/assets/site.css", get(pages::style))
        .route("/assets/icon.svg", get(pages::icon))
        .route("/favicon.ico", get(pages::icon))
        .route("/v1/plans", post(plans::post_plans).get(plans::get_plans))
        .route("/v1/plans/{id}", get(plans::get_plan))
        .route("/v1/subscriptions", post(subscriptions::post_subscription).get(subscriptions::list_subscriptions))
        .route("/v1/subscriptions/batch", post(subscriptions::post_batch))
        .route("/v1/subscriptions/{id}/events", post(subscriptions::post_event))
        .route("/v1/subscriptions/{id}/balance", get(subscriptions::get_balance))
        .route("/v1/subscriptions/{id}/ledger", get(ledger::get_ledger))
        .route("/v1/subscriptions/{id}/tokens", post(subscriptions::post_token))
        .route("/v1/subscriptions/{id}/addons", post(subscriptions::post_addon))
        .route("/v1/usage", post(usage::post_usage))
        .route("/v1/advice", post(advice::post_advice))
        .route("/v1/packages", get(packages::get_packages))
        .route("/v1/esim/profiles", post(esim::post_profiles).get(esim::get_profiles))
        .route("/v1/esim/profiles/{iccid}", get(esim::get_profile))
        .route("/v1/esims/{iccid}", get(esim::get_esim))
        .route("/v1/orders", post(orders::post_order))
        .route("/v1/orders/{id}", get(orders::get_order))
        .route("/v1/orders/{id}/cancel", post(orders::cancel_order))
        .route("/v1/orders/{id}/qr.svg", get(orders::qr_svg))
        .route("/v1/orders/{id}/qr.png", get(orders::qr_png))
        .route("/v1/sessions", post(sessions::post_session))
        .route("/v1/sessions/{id}/update", post(sessions::update_session))
        .route("/v1/sessions/{id}", axum::routing::delete(sessions::end_session))
        .route("/v1/clock", post(admin::post_clock).get(admin::get_clock))
        .route("/v1/cluster", get(admin::get_cluster))
        .route("/metrics", get(admin::get_metrics))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], crate::docs::OPENAPI) }))
        .route("/docs", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::docs::page()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .fallback(|| async { Problem::new(Code::NoSuchEndpoint, "no such endpoint", None) })
        .layer(axum::middleware::from_fn_with_state(auth_state, crate::auth::authorize))
        .layer(axum::middleware::from_fn_with_state(limits, crate::guard::check))
        .layer(axum::Extension(security))
        .layer(axum::Extension(limits))
        .layer(axum::Extension(std::sync::Arc::new(orders)))
        .layer(axum::Extension(std::sync::Arc::new(site)))
        .layer(axum::Extension(std::sync::Arc::new(crate::console::Sessions::default())))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(service)
}

type ApiResult = Result<Response, Problem>;

/// Largest offset a page may start at: far past any list, and small enough
/// that `offset + limit` cannot wrap.
const OFFSET_MAX: usize = 1 << 40;

/// A page's `limit` (1 to `max`, 100 by default) and `offset` (0 to
/// [`OFFSET_MAX`]), or the problem naming the one out of range.
fn page(limit: Option<usize>, offset: Option<usize>, max: usize) -> Result<(usize, usize), Problem> {
    let limit = limit.unwrap_or(100.min(max));
    if limit == 0 || limit > max {
        return Err(Problem::about(Code::InvalidQuery, "limit", format!("must be 1 to {max}")));
    }
    let offset = offset.unwrap_or(0);
    if offset > OFFSET_MAX {
        return Err(Problem::about(Code::InvalidQuery, "offset", format!("must be 0 to {OFFSET_MAX}")));
    }
    Ok((limit, offset))
}

fn created(value: impl Serialize) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn ok(value: impl Serialize) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// An id for a subscription or session the client did not name.
fn generated_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sub-{:x}-{n:x}", rollover_service::wall_micros())
}
