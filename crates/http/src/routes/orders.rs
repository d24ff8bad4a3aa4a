//! eSIM orders: `POST /v1/orders` (idempotent by `id`), `GET
//! /v1/orders/{id}`, `POST /v1/orders/{id}/cancel`, and the activation
//! code's QR code as SVG and PNG (`GET /v1/orders/{id}/qr.svg`, `qr.png`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use rollover_esim::Eid;
use rollover_service::Service;
use rollover_service::orders::{NewOrder, Order, OrderStatus, Orders};
use serde_json::Value;

use super::{ApiResult, generated_id};
use crate::json;
use crate::problem::{Code, Problem};
use crate::wire;

/// The order runner, shared by the handlers.
pub type OrdersState = std::sync::Arc<Orders>;

/// Pixels per QR module in `qr.png`.
const PNG_SCALE: usize = 8;

/// `POST /v1/orders`: `201` with the new order (whatever its status), `200`
/// with the order made before under the same `id`.
pub(super) async fn post_order(State(service): State<Service>, orders: axum::Extension<OrdersState>, site: axum::Extension<std::sync::Arc<super::Site>>, body: Bytes) -> ApiResult {
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["id", "plan", "eid", "identifiers"])?;
    let id = json::id(&fields, "", "id")?.unwrap_or_else(|| generated_id().replacen("sub-", "order-", 1));
    let plan = json::required_string(&fields, "", "plan")?.to_string();
    let eid = match json::string(&fields, "", "eid")? {
        None => None,
        // 32 digits is the shape (400 otherwise); the check digits are a rule (422).
        Some(text) if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_digit()) => return Err(Problem::invalid("eid", format!("{text:?} must be 32 digits"))),
        Some(text) => Some(Eid::parse(text).map_err(|e| Problem::about(Code::InvalidIdentifier, "eid", format!("{text:?} {e}")))?.as_str().to_string()),
    };
    let mut new = NewOrder { id, plan, eid, ..NewOrder::default() };
    match fields.get("identifiers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ids)) => {
            if ids.contains_key("iccid") {
                return Err(Problem::about(Code::UnknownField, "identifiers.iccid", "an order's ICCID is the profile's, taken from the inventory; leave it out"));
            }
            json::only(ids, "identifiers", &["imsi", "msisdn", "external_id"])?;
            let digits = |key: &str, lengths: std::ops::RangeInclusive<usize>| -> Result<Option<String>, Problem> {
                match json::string(ids, "identifiers", key)? {
                    None => Ok(None),
                    Some(s) if lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(s.to_string())),
                    Some(_) => Err(Problem::invalid(format!("identifiers.{key}"), format!("must be {} to {} digits", lengths.start(), lengths.end()))),
                }
            };
            new.imsi = digits("imsi", 6..=15)?;
            new.msisdn = digits("msisdn", 5..=15)?;
            new.external_id = json::id(ids, "identifiers", "external_id")?;
        }
        Some(_) => return Err(Problem::invalid("identifiers", "must be an object")),
    }
    let (order, created) = orders.place(new).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(out(&order, &site.public_url, &service))).into_response())
}

/// `GET /v1/orders/{id}`.
pub(super) async fn get_order(State(service): State<Service>, orders: axum::Extension<OrdersState>, site: axum::Extension<std::sync::Arc<super::Site>>, Path(id): Path<String>) -> ApiResult {
    let order = orders.get(&id).await?;
    Ok(super::ok(out(&order, &site.public_url, &service)))
}

/// `POST /v1/orders/{id}/cancel`.
/// The body, if any, is an empty object. It is read whole either way: a
/// body left unread would make the server close a kept-alive connection the
/// client may already be sending its next request on.
pub(super) async fn cancel_order(State(service): State<Service>, orders: axum::Extension<OrdersState>, site: axum::Extension<std::sync::Arc<super::Site>>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    if !body.iter().all(u8::is_ascii_whitespace) {
        json::only(&json::parse_object(&body)?, "", &[])?;
    }
    let order = orders.cancel(&id).await?;
    Ok(super::ok(out(&order, &site.public_url, &service)))
}

/// `GET /v1/orders/{id}/qr.svg`.
pub(super) async fn qr_svg(orders: axum::Extension<OrdersState>, Path(id): Path<String>) -> ApiResult {
    let (order, lpa) = activation(&orders, &id).await?;
    let svg = rollover_esim::qr::svg(&lpa, &format!("eSIM activation code for order {}", order.id)).map_err(|e| Problem::new(Code::Internal, format!("the QR code cannot be drawn: {e}"), None))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "private, no-store")], svg).into_response())
}

/// `GET /v1/orders/{id}/qr.png`.
pub(super) async fn qr_png(orders: axum::Extension<OrdersState>, Path(id): Path<String>) -> ApiResult {
    let (_, lpa) = activation(&orders, &id).await?;
    let png = rollover_esim::qr::png(&lpa, PNG_SCALE).map_err(|e| Problem::new(Code::Internal, format!("the QR code cannot be drawn: {e}"), None))?;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, no-store")], png).into_response())
}

async fn activation(orders: &Orders, id: &str) -> Result<(Order, String), Problem> {
    let order = orders.get(id).await?;
    match (order.status, order.activation_code()) {
        (OrderStatus::Completed, Some(code)) => {
            let lpa = code.lpa();
            Ok((order, lpa))
        }
        (status, _) => Err(Problem::about(Code::ActivationPending, "id", format!("order {id} is {}: it has no activation code to show", status.name()))),
    }
}

/// The order as answered.
fn out(order: &Order, public_url: &str, service: &Service) -> wire::OrderOut {
    let plans = service.plans();
    let currency = plans.latest(&order.plan).map(|p| plans.catalog.get(p.ix).currency);
    let utc = rollover_core::Zone::utc();
    let at = |micros: i64| rollover_core::Instant::from_micros(micros).to_rfc3339(&utc);
    let code = order.activation_code().filter(|_| order.status == OrderStatus::Completed);
    let links = code.as_ref().map(|code| wire::OrderLinks {
        qr_svg: format!("{public_url}/v1/orders/{}/qr.svg", order.id),
        qr_png: format!("{public_url}/v1/orders/{}/qr.png", order.id),
        ios: code.ios_link(),
        android: code.android_link(),
    });
    wire::OrderOut {
        id: order.id.clone(),
        status: order.status.name(),
        plan: order.plan.clone(),
        iccid: order.iccid.clone(),
        eid: order.eid.clone(),
        subscription: order.subscription.clone(),
        activation_code: code.as_ref().map(|c| c.lpa()),
        links,
        failure: order.failure.as_ref().map(|f| wire::OrderFailure {
            function: f.function.clone(),
            status: f.status.clone(),
            subject_code: f.subject_code.clone(),
            reason_code: f.reason_code.clone(),
            message: f.message.clone(),
        }),
        last_error: order.last_error.clone(),
        attempts: order.attempts,
        next_attempt_at: (order.status == OrderStatus::Pending).then(|| at(order.next_attempt_micros)),
        refunded: order.refunded_minor.zip(currency).map(|(minor, currency)| currency.format(minor)),
        created_at: at(order.created_micros),
        updated_at: at(order.updated_micros),
    }
}
