//! The web pages: `/my/{token}` (a customer's page, opened by a signed,
//! expiring link), its style sheet, and `/`. Pages are HTML in the visitor's
//! language; a refused link gets a page too, never a problem document.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollover_core::ledger::{Change, Lifecycle};
use rollover_pages::{CustomerPage, Lang, Refusal};
use rollover_service::{Service, ServiceError};

use crate::auth::{Security, TokenRefusal};

/// The cookie that keeps the visitor's choice of language.
const LANG_COOKIE: &str = "rollover_lang";

/// Content-Security-Policy of every page: nothing but this origin's style
/// sheet; no script, no frame, no form to elsewhere.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The language: `?lang=` (which is then kept in a cookie), else the
/// cookie, else `Accept-Language`.
pub(super) fn language(query: Option<&str>, headers: &HeaderMap) -> (Lang, Option<Lang>) {
    let asked = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("lang=")).and_then(rollover_pages::lang_of_code);
    if let Some(lang) = asked {
        return (lang, Some(lang));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(LANG_COOKIE).and_then(|rest| rest.strip_prefix('=')))
        .and_then(rollover_pages::lang_of_code);
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map(rollover_pages::lang_of_accept);
    (cookie.or(accept).unwrap_or(Lang::En), None)
}

/// A page with the headers every page carries: the link holds a token, so
/// it is never cached, never sent on as a referrer, never framed.
pub(super) fn page(status: StatusCode, lang: Lang, keep: Option<Lang>, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Language, Cookie"));
    headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(rollover_pages::lang_code(lang)));
    if let Some(keep) = keep {
        let cookie = format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly", rollover_pages::lang_code(keep));
        headers.insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("the cookie is ASCII"));
    }
    response
}

/// A console page: as [`page`], but its forms must be able to say where
/// they come from (`Origin`), so the referrer is kept within this origin.
pub(super) fn console_page(status: StatusCode, lang: Lang, keep: Option<Lang>, body: String) -> Response {
    let mut response = page(status, lang, keep, body);
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

fn refused(lang: Lang, keep: Option<Lang>, why: Refusal) -> Response {
    let status = match why {
        Refusal::Invalid | Refusal::Expired => StatusCode::FORBIDDEN,
        Refusal::Gone => StatusCode::NOT_FOUND,
        Refusal::TooMany => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut response = page(status, lang, keep, rollover_pages::refused_page(lang, why));
    if why == Refusal::TooMany {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `GET /my/{token}`: the customer's page.
pub(super) async fn customer(
    State(service): State<Service>,
    axum::Extension(security): axum::Extension<std::sync::Arc<Security>>,
    axum::Extension(orders): axum::Extension<super::orders::OrdersState>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let started = std::time::Instant::now();
    let (lang, keep) = language(query.as_deref(), &headers);
    let subscription = match security.customer_page_allowed(&token, service.now()) {
        Ok(subscription) => subscription,
        Err(TokenRefusal::Expired) => return refused(lang, keep, Refusal::Expired),
        Err(TokenRefusal::Invalid) => return refused(lang, keep, Refusal::Invalid),
        Err(TokenRefusal::TooMany) => return refused(lang, keep, Refusal::TooMany),
    };
    match render(&service, &orders, &subscription, &token, lang).await {
        Ok(body) => {
            let mut response = page(StatusCode::OK, lang, keep, body);
            // How long the page took to make, for `rollover bench pages` and
            // a browser's developer tools.
            let timing = format!("render;dur={:.3}", started.elapsed().as_secs_f64() * 1000.0);
            response.headers_mut().insert("server-timing", HeaderValue::from_str(&timing).expect("ASCII"));
            response
        }
        Err(ServiceError::UnknownSubscription { .. }) => refused(lang, keep, Refusal::Gone),
        Err(error) => crate::problem::Problem::from(error).into_response(),
    }
}

async fn render(service: &Service, orders: &rollover_service::orders::Orders, subscription: &str, token: &str, lang: Lang) -> Result<String, ServiceError> {
    let balance = service.balance(subscription).await?;
    // The days the chart, the pace and the advice read (and the carries
    // and forfeits of that time): not the subscription's whole life.
    let ledger = service.ledger_since(subscription, rollover_advise::history_start(balance.at)).await?;
    let plans = service.plans();
    let plan = plans.catalog.get(balance.plan.ix);
    let started = ledger.entries.iter().rev().find(|e| matches!(e.change, Change::Lifecycle(Lifecycle::Started))).map(|e| e.at);
    let pace = rollover_pages::customer::daily_pace(&ledger.entries, plan, balance.at, started);
    let projection = service.projection(subscription, pace).await?;
    let path = format!("/my/{token}");
    let days = rollover_advise::history_days(&ledger.entries, &plan.zone, balance.at, ledger.purchased_at);
    let catalog = super::advice::latest_catalog(service);
    let advice = rollover_advise::advise(&catalog, &days, None);
    let (identifiers, _) = service.identifiers(subscription).await?;
    let iccid = identifiers.iccid.as_deref().and_then(|iccid| rollover_esim::Iccid::parse(iccid).ok());
    let (profile, order) = match &iccid {
        Some(iccid) => (service.profile(iccid).await?, orders.for_iccid(iccid).await?),
        None => (None, None),
    };
    // How to install it: from the order that sold this subscription its profile.
    let code = order.filter(|o| o.subscription.as_deref() == Some(subscription)).and_then(|o| o.activation_code());
    let drawn = code.as_ref().and_then(|c| {
        let qr = rollover_esim::qr::svg_path(&c.lpa()).ok()?;
        Some((c.lpa(), c.ios_link(), c.android_link(), qr, c.smdp_address.clone(), c.matching_id.clone()))
    });
    let esim = profile.as_ref().map(|p| rollover_pages::customer::EsimView {
        iccid: p.iccid.as_str(),
        state: p.state.as_str(),
        install: drawn.as_ref().map(|(lpa, ios, android, (size, path), address, matching_id)| rollover_pages::customer::Install {
            activation_code: lpa,
            smdp_address: address,
            matching_id,
            ios_link: ios,
            android_link: android,
            qr: (*size, path.as_str()),
        }),
    });
    let page = CustomerPage { lang, plan, balance: &balance, ledger: &ledger.entries, projection: projection.as_ref(), path: &path, advice: Some((&catalog, &advice)), esim };
    Ok(rollover_pages::customer_page(&page))
}

/// A file every page loads, cached for a day.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /assets/site.css`.
pub(super) async fn style() -> Response {
    asset(rollover_pages::STYLE, "text/css; charset=utf-8")
}

/// `GET /assets/icon.svg` and `/favicon.ico`.
pub(super) async fn icon() -> Response {
    asset(rollover_pages::ICON, "image/svg+xml")
}

/// `GET /`: to the support console (which links on to everything else;
/// the API's description is at `/docs`).
pub(super) async fn root() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/console")]).into_response()
}
