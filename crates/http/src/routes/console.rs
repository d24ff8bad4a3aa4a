//! The support console at `/console`: staff sign in with an API key (a
//! session in an HttpOnly, SameSite=Strict cookie), find subscriptions,
//! read one on a screen, act on it after a confirmation, and manage the
//! catalog with a preview before saving. Every form carries the session's
//! CSRF token; actions need a read-write key and are written into the
//! subscription's ledger with the key's id.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollover_core::{GrantExpiry, Instant, Kind, Status};
use rollover_explain::Lang;
use rollover_pages::console::{self as view, Staff};
use rollover_pages::pick;
use rollover_service::{LifecycleEvent, Service, ServiceError, SubscriptionFilter};

use super::pages::{console_page as page, language};
use crate::auth::{Scope, Security, SignInRefusal};
use crate::console::{Session, Sessions, cookie_of, parse_form, set_cookie};

/// Subscriptions on one page of the console's search.
const SEARCH_PAGE: usize = 50;

/// How long a customer link issued from the console lasts.
const LINK_DAYS: i64 = 30;

type Form = Vec<(String, String)>;

fn value<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let form = parse_form(query.unwrap_or("").as_bytes())?;
    value(&form, name).map(str::to_string)
}

fn redirect(to: &str) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The signed-in session, if the request carries a live one.
fn session(sessions: &Sessions, headers: &HeaderMap) -> Option<Session> {
    cookie_of(headers).and_then(|id| sessions.get(&id))
}

fn staff<'a>(session: &'a Session, lang: Lang) -> Staff<'a> {
    Staff { lang, key_id: &session.key_id, can_write: session.scope == Scope::ReadWrite, csrf: &session.csrf }
}

/// A page that says what went wrong, with its status.
fn trouble(status: StatusCode, lang: Lang, session: Option<&Session>, title: &str, detail: &str) -> Response {
    let body = match session {
        Some(session) => view::message_page(&staff(session, lang), title, detail),
        None => rollover_pages::console::sign_in_page(lang, Some(detail), false),
    };
    page(status, lang, None, body)
}

/// A signed-in session whose form carries its CSRF token: the one check
/// every console POST passes.
// The error is the page to answer, built once per refused request.
#[allow(clippy::result_large_err)]
fn checked(sessions: &Sessions, headers: &HeaderMap, form: &Form, lang: Lang) -> Result<Session, Response> {
    let Some(session) = session(sessions, headers) else {
        return Err(trouble(StatusCode::UNAUTHORIZED, lang, None, "", pick(lang, "Sign in first.", "请先登录。")));
    };
    if value(form, "csrf") != Some(session.csrf.as_str()) {
        return Err(trouble(StatusCode::FORBIDDEN, lang, Some(&session), pick(lang, "Refused", "已拒绝"), pick(lang, "The form is stale or did not come from this console: reload the page and try again.", "表单已过期或并非来自本控制台：请刷新页面后重试。")));
    }
    Ok(session)
}

/// A form that may change something: read, from a live session with its
/// CSRF token, and that session's key read-write.
// The error is the page to answer, built once per refused request.
#[allow(clippy::result_large_err)]
fn writer_form(sessions: &Sessions, headers: &HeaderMap, body: &Bytes, lang: Lang) -> Result<(Form, Session), Response> {
    let form = read_form(body, lang)?;
    let session = checked(sessions, headers, &form, lang)?;
    if session.scope != Scope::ReadWrite {
        let detail = pick(lang, "This key may only read: actions and uploads need a read-write key.", "该密钥只能查看：执行操作和上传需要读写密钥。");
        return Err(trouble(StatusCode::FORBIDDEN, lang, Some(&session), pick(lang, "Read only", "只读"), detail));
    }
    Ok((form, session))
}

// The error is the page to answer, built once per refused request.
#[allow(clippy::result_large_err)]
fn read_form(body: &Bytes, lang: Lang) -> Result<Form, Response> {
    parse_form(body).ok_or_else(|| trouble(StatusCode::BAD_REQUEST, lang, None, "", pick(lang, "The form could not be read.", "无法读取表单。")))
}

/// `GET /console`: the dashboard, or the sign-in form.
pub(super) async fn home(
    State(service): State<Service>,
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    axum::Extension(security): axum::Extension<Arc<Security>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (lang, keep) = language(query.as_deref(), &headers);
    let Some(session) = session(&sessions, &headers) else {
        return page(StatusCode::OK, lang, keep, view::sign_in_page(lang, None, security.is_open()));
    };
    let text = match service.metrics_text().await {
        Ok(text) => text,
        Err(error) => return crate::problem::Problem::from(error).into_response(),
    };
    let mut figures = dashboard(&text, &sessions);
    figures.cluster = match service.cluster_status().await {
        Ok(Some(status)) => Some(cluster_panel(&status)),
        Ok(None) => None,
        Err(error) => return crate::problem::Problem::from(error).into_response(),
    };
    page(StatusCode::OK, lang, keep, view::dashboard_page(&staff(&session, lang), &figures))
}

/// The cluster panel: every node that is live or holds a lease, with the
/// shards whose lease it holds now.
fn cluster_panel(status: &rollover_service::cluster::ClusterStatus) -> view::ClusterPanel {
    view::ClusterPanel { node: status.node.clone(), nodes: status.holders(), serving: status.serving, stream_lag: status.stream_lag }
}

/// The dashboard's figures from the `/metrics` text.
fn dashboard(text: &str, sessions: &Sessions) -> view::Dashboard {
    let number = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
    let label = |line: &str, name: &str| line.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).map(str::to_string);
    let mut figures = view::Dashboard { statuses: Vec::new(), accepted: 0, duplicate: 0, conflict: 0, rejected: Vec::new(), webhook_backlog: 0, webhook_failed: 0, usage_bytes_today: 0, records_per_second: None, cluster: None };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if line.starts_with("rollover_subscriptions{") {
            figures.statuses.extend(label(line, "status").map(|s| (s, number(line))));
        } else if line.starts_with("rollover_usage_records_total{") {
            match (label(line, "outcome").as_deref(), label(line, "reason")) {
                (Some("accepted"), _) => figures.accepted = number(line),
                (Some("duplicate"), _) => figures.duplicate = number(line),
                (Some("conflict"), _) => figures.conflict = number(line),
                (Some("rejected"), Some(reason)) => figures.rejected.push((reason, number(line))),
                _ => {}
            }
        } else if line.starts_with("rollover_webhook_backlog ") {
            figures.webhook_backlog = number(line);
        } else if line.starts_with("rollover_usage_bytes_today ") {
            figures.usage_bytes_today = number(line);
        } else if line.starts_with("rollover_webhook_attempts_total{outcome=\"failed\"}") {
            figures.webhook_failed = number(line);
        }
    }
    figures.records_per_second = sessions.rate_since_last_look(figures.accepted);
    figures
}

/// `POST /console/sign-in`: a session for a key.
pub(super) async fn sign_in(
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    axum::Extension(security): axum::Extension<Arc<Security>>,
    axum::Extension(site): axum::Extension<Arc<super::Site>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, _) = language(None, &headers);
    let form = match read_form(&body, lang) {
        Ok(form) => form,
        Err(response) => return response,
    };
    // Sign-in has no session yet to hold a CSRF token: a form posted from
    // another site is told apart by its Origin.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let same_site = |origin: &str| {
        let authority = origin.split_once("://").map_or("", |(_, authority)| authority);
        authority.eq_ignore_ascii_case(host) || origin.eq_ignore_ascii_case(site.public_url.trim_end_matches('/'))
    };
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !same_site(origin)
    {
        return page(StatusCode::FORBIDDEN, lang, None, view::sign_in_page(lang, Some(pick(lang, "Sign in from this console's own page.", "请从本控制台的页面登录。")), security.is_open()));
    }
    match security.sign_in(value(&form, "key").unwrap_or("")) {
        Ok((key_id, scope)) => {
            let (id, _) = sessions.create(&key_id, scope);
            let mut response = redirect("/console");
            let secure = site.public_url.starts_with("https://");
            response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&set_cookie(Some(&id), secure)).expect("ASCII"));
            response
        }
        Err(SignInRefusal::UnknownKey) => page(StatusCode::UNAUTHORIZED, lang, None, view::sign_in_page(lang, Some(pick(lang, "That key is not known.", "密钥无效。")), false)),
        Err(SignInRefusal::TooMany) => page(StatusCode::TOO_MANY_REQUESTS, lang, None, view::sign_in_page(lang, Some(pick(lang, "Too many attempts: wait a moment.", "尝试次数过多：请稍候。")), false)),
    }
}

/// `POST /console/sign-out`.
pub(super) async fn sign_out(axum::Extension(sessions): axum::Extension<Arc<Sessions>>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = language(None, &headers);
    let form = match read_form(&body, lang) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Err(response) = checked(&sessions, &headers, &form, lang) {
        return response;
    }
    if let Some(id) = cookie_of(&headers) {
        sessions.end(&id);
    }
    let mut response = redirect("/console");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&set_cookie(None, false)).expect("ASCII"));
    response
}

/// `GET /console/subscriptions`: search by id or identifier, or list by
/// status and plan.
pub(super) async fn search(State(service): State<Service>, axum::Extension(sessions): axum::Extension<Arc<Sessions>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let (lang, keep) = language(None, &headers);
    let Some(session) = session(&sessions, &headers) else { return redirect("/console") };
    let q = query_value(query.as_deref(), "q").unwrap_or_default().trim().to_string();
    let status_text = query_value(query.as_deref(), "status").unwrap_or_default();
    let plan = query_value(query.as_deref(), "plan").unwrap_or_default();
    // In cluster mode a list reaches only so deep (the last page there).
    let deepest = if service.lists_cluster() { rollover_service::CLUSTER_LIST_DEPTH - SEARCH_PAGE } else { 1 << 40 };
    let offset: usize = query_value(query.as_deref(), "offset").and_then(|o| o.parse().ok()).unwrap_or(0).min(deepest);
    let status = Status::parse(&status_text);
    let (results, total) = if q.is_empty() {
        let filter = SubscriptionFilter { status, plan: (!plan.is_empty()).then(|| plan.clone()) };
        match service.subscriptions(filter, offset, SEARCH_PAGE).await {
            Ok(found) => found,
            Err(error) => return crate::problem::Problem::from(error).into_response(),
        }
    } else {
        // The id itself, or whichever identifier holds it.
        let id = ["iccid", "imsi", "msisdn", "external_id"].iter().find_map(|field| service.subscription_by(field, &q)).unwrap_or_else(|| q.clone());
        match service.balance(&id).await {
            Ok(balance) => (vec![rollover_service::SubscriptionSummary { id, plan: balance.plan, status: balance.status }], 1),
            Err(_) => (Vec::new(), 0),
        }
    };
    let next = (q.is_empty() && offset + results.len() < total && offset + results.len() <= deepest).then(|| {
        let encode = |text: &str| text.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
        format!("/console/subscriptions?status={}&plan={}&offset={}", encode(&status_text), encode(&plan), offset + results.len())
    });
    let plans: Vec<String> = service.plans().all_latest().into_iter().map(|p| p.id).collect();
    let search = view::Search { query: &q, status: &status_text, plan: &plan, plans: &plans, results: &results, total, offset, next };
    page(StatusCode::OK, lang, keep, view::search_page(&staff(&session, lang), &search))
}

/// `GET /console/subscriptions/{id}`: one subscription on one screen.
pub(super) async fn subscription(
    State(service): State<Service>,
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (lang, keep) = language(None, &headers);
    let Some(session) = session(&sessions, &headers) else { return redirect("/console") };
    let now = service.now();
    let instant = |name: &str, default: Instant| match query_value(query.as_deref(), name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => Instant::parse_rfc3339(&text).map_err(|e| format!("{name}: {e}")),
    };
    let window = instant("from", now.plus_micros(-30 * 86_400_000_000)).and_then(|from| Ok((from, instant("to", now.plus_micros(1_000_000))?)));
    let (from, to) = match window {
        Ok(window) => window,
        Err(why) => return trouble(StatusCode::BAD_REQUEST, lang, Some(&session), pick(lang, "Cannot show that window", "无法显示该时间段"), &why),
    };
    let kind = query_value(query.as_deref(), "kind").unwrap_or_default();
    let kind = view::KINDS.iter().map(|(k, _, _)| *k).find(|k| *k == kind).unwrap_or("");
    // What was just done, in fixed words: never text from the link.
    let done = match query_value(query.as_deref(), "done").as_deref() {
        Some("done") => Some(pick(lang, "Done, and written into the ledger.", "已完成，并已记入流水。")),
        Some("refused") => Some(pick(lang, "Refused by the subscription's state; the attempt is in the ledger.", "订阅当前状态不允许该操作；此次尝试已记入流水。")),
        _ => None,
    };
    let loaded = async {
        let balance = service.balance(&id).await?;
        let (identifiers, created_at) = service.identifiers(&id).await?;
        // The window shown, and the days the advice reads.
        let ledger = service.ledger_since(&id, from.min(rollover_advise::history_start(now))).await?;
        let profile = match identifiers.iccid.as_deref().and_then(|iccid| rollover_esim::Iccid::parse(iccid).ok()) {
            Some(iccid) => service.profile(&iccid).await?,
            None => None,
        };
        Ok::<_, ServiceError>((balance, identifiers, created_at, ledger, profile))
    };
    let (balance, identifiers, created_at, ledger, profile) = match loaded.await {
        Ok(loaded) => loaded,
        Err(ServiceError::UnknownSubscription { .. }) => return trouble(StatusCode::NOT_FOUND, lang, Some(&session), pick(lang, "No such subscription", "没有该订阅"), &id),
        Err(error) => return crate::problem::Problem::from(error).into_response(),
    };
    let plans = service.plans();
    let plan = plans.catalog.get(balance.plan.ix);
    let plan_ids: Vec<String> = plans.all_latest().into_iter().map(|p| p.id).collect();
    let on_sale = super::advice::latest_catalog(&service);
    let advice = rollover_advise::advise(&on_sale, &rollover_advise::history_days(&ledger.entries, &plan.zone, now, ledger.purchased_at), None);
    let subscription_view = view::SubscriptionView {
        plan,
        balance: &balance,
        identifiers: &identifiers,
        created_at,
        ledger: &ledger.entries,
        origins: &ledger.origins,
        notes: &ledger.notes,
        from,
        to,
        kind,
        plans: &plan_ids,
        done,
        advice: Some((&on_sale, &advice)),
        esim_state: profile.as_ref().map(|p| p.state.as_str()),
    };
    page(StatusCode::OK, lang, keep, view::subscription_page(&staff(&session, lang), &subscription_view))
}

/// What a console action does, read from its form.
enum Action {
    Grant { kind: Kind, bytes: u64, expires: GrantExpiry, data: String },
    ChangePlan(String),
    Suspend,
    Resume,
    Cancel,
    Link,
}

fn action_of(form: &Form, lang: Lang) -> Result<Action, String> {
    Ok(match value(form, "action").unwrap_or("") {
        "grant" => {
            let kind = Kind::parse(value(form, "grant_kind").unwrap_or("").trim()).map_err(|e| e.to_string())?;
            if kind.is_reserved() {
                return Err(pick(lang, "allowance, carry and extra are made by the plan itself: grant another kind, such as gift", "allowance、carry 和 extra 由套餐自动生成：请使用其他类型，如 gift").into());
            }
            let data = value(form, "grant_data").unwrap_or("").trim().to_string();
            let bytes = rollover_core::amount::parse_bytes(&data).map_err(|e| format!("{data:?}: {e}"))?;
            if bytes == 0 || bytes > rollover_service::MAX_RECORD_BYTES {
                return Err(pick(lang, "the amount must be more than 0 and at most 1 TiB", "数量必须大于 0 且不超过 1 TiB").into());
            }
            let expires = match value(form, "grant_expires").unwrap_or("period_end").trim() {
                "period_end" | "" => GrantExpiry::PeriodEnd,
                "never" => GrantExpiry::Never,
                text => GrantExpiry::At(Instant::parse_rfc3339(text).map_err(|e| e.to_string())?),
            };
            Action::Grant { kind, bytes, expires, data }
        }
        "change_plan" => Action::ChangePlan(value(form, "change_plan").unwrap_or("").to_string()),
        "suspend" => Action::Suspend,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        "link" => Action::Link,
        other => return Err(format!("{other:?}: not an action")),
    })
}

/// The action in words, for the confirmation and the ledger.
fn describe(action: &Action, subscription: &str, lang: Lang) -> String {
    match (action, lang) {
        (Action::Grant { kind, data, expires, .. }, Lang::En) => format!("grant {data} of {} to {subscription}, expiring {}", kind.name(), expiry_words(expires)),
        (Action::Grant { kind, data, expires, .. }, Lang::Zh) => format!("向 {subscription} 发放 {data} {}，到期：{}", kind.name(), expiry_words(expires)),
        (Action::ChangePlan(plan), Lang::En) => format!("change {subscription} to plan {plan}"),
        (Action::ChangePlan(plan), Lang::Zh) => format!("将 {subscription} 变更为套餐 {plan}"),
        (Action::Suspend, Lang::En) => format!("suspend {subscription}"),
        (Action::Suspend, Lang::Zh) => format!("暂停 {subscription}"),
        (Action::Resume, Lang::En) => format!("resume {subscription}"),
        (Action::Resume, Lang::Zh) => format!("恢复 {subscription}"),
        (Action::Cancel, Lang::En) => format!("cancel {subscription}: its data is lost and it cannot be undone"),
        (Action::Cancel, Lang::Zh) => format!("取消 {subscription}：剩余流量将清零，且无法撤销"),
        (Action::Link, Lang::En) => format!("issue a customer link to {subscription}'s page, good for {LINK_DAYS} days"),
        (Action::Link, Lang::Zh) => format!("生成 {subscription} 的客户页面链接，有效期 {LINK_DAYS} 天"),
    }
}

fn expiry_words(expires: &GrantExpiry) -> String {
    match expires {
        GrantExpiry::PeriodEnd => "period_end".into(),
        GrantExpiry::Never => "never".into(),
        GrantExpiry::At(at) => at.to_rfc3339(&rollover_core::Zone::utc()),
    }
}

/// `POST /console/subscriptions/{id}`: an action, confirmed first.
pub(super) async fn act(
    State(service): State<Service>,
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    axum::Extension(security): axum::Extension<Arc<Security>>,
    axum::Extension(site): axum::Extension<Arc<super::Site>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, _) = language(None, &headers);
    let (form, session) = match writer_form(&sessions, &headers, &body, lang) {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let action = match action_of(&form, lang) {
        Ok(action) => action,
        Err(why) => return trouble(StatusCode::UNPROCESSABLE_ENTITY, lang, Some(&session), pick(lang, "Cannot do that", "无法执行"), &why),
    };
    if let Err(ServiceError::UnknownSubscription { .. }) = service.balance(&id).await {
        return trouble(StatusCode::NOT_FOUND, lang, Some(&session), pick(lang, "No such subscription", "没有该订阅"), &id);
    }
    let what = describe(&action, &id, lang);
    if value(&form, "confirm") != Some("yes") {
        let question = format!("{} {what}?", pick(lang, "Do you want to", "确定要"));
        return page(StatusCode::OK, lang, None, view::confirm_page(&staff(&session, lang), &id, &question, &form));
    }
    let event = match &action {
        Action::Grant { kind, bytes, expires, .. } => LifecycleEvent::Grant { kind: *kind, bytes: *bytes, expires: *expires },
        Action::ChangePlan(plan) => LifecycleEvent::ChangePlan(plan.clone()),
        Action::Suspend => LifecycleEvent::Suspend,
        Action::Resume => LifecycleEvent::Resume,
        Action::Cancel => LifecycleEvent::Cancel,
        Action::Link => {
            let expires = service.now().plus_micros(LINK_DAYS * 86_400_000_000);
            let url = format!("{}/my/{}", site.public_url, security.customer_token(&id, expires));
            let _ = service.note(&id, format!("console: {} issued a customer link", session.key_id)).await;
            return page(StatusCode::OK, lang, None, view::link_page(&staff(&session, lang), &id, &url, &expires.to_rfc3339(&rollover_core::Zone::utc())));
        }
    };
    let outcome = match service.apply_event(&id, event, None).await {
        Ok(outcome) => outcome,
        Err(error) => return trouble(StatusCode::UNPROCESSABLE_ENTITY, lang, Some(&session), pick(lang, "Cannot do that", "无法执行"), &error.to_string()),
    };
    let english = describe(&action, &id, Lang::En);
    let said = match &outcome {
        rollover_service::EventOutcome::Applied => format!("console: {} did: {english}", session.key_id),
        rollover_service::EventOutcome::Refused(refusal) => format!("console: {} tried: {english}; refused: {}", session.key_id, refusal.text()),
    };
    if let Err(error) = service.note(&id, said).await {
        tracing::warn!(%error, "console: cannot write the action into the ledger");
    }
    let done = match outcome {
        rollover_service::EventOutcome::Applied => "done",
        rollover_service::EventOutcome::Refused(_) => "refused",
    };
    redirect(&format!("/console/subscriptions/{id}?done={done}"))
}

/// `GET /console/plans`: the catalog, each plan with its explanations and
/// subscribers by version.
pub(super) async fn plans(State(service): State<Service>, axum::Extension(sessions): axum::Extension<Arc<Sessions>>, headers: HeaderMap) -> Response {
    let (lang, keep) = language(None, &headers);
    let Some(session) = session(&sessions, &headers) else { return redirect("/console") };
    let counts = match subscribers_by_version(&service).await {
        Ok(counts) => counts,
        Err(error) => return crate::problem::Problem::from(error).into_response(),
    };
    let plans = service.plans();
    let entries: Vec<view::CatalogPlan> = plans
        .all_latest()
        .into_iter()
        .map(|latest| {
            let versions = (1..=latest.version).map(|v| (v, counts.get(&(latest.id.clone(), v)).copied().unwrap_or(0))).collect();
            view::CatalogPlan { plan: plans.catalog.get(latest.ix), versions }
        })
        .collect();
    page(StatusCode::OK, lang, keep, view::plans_page(&staff(&session, lang), &entries, ""))
}

async fn subscribers_by_version(service: &Service) -> Result<std::collections::HashMap<(String, u32), usize>, ServiceError> {
    service.plan_counts().await
}

/// `POST /console/plans`: a preview of the upload, or (confirmed) the upload.
pub(super) async fn upload(State(service): State<Service>, axum::Extension(sessions): axum::Extension<Arc<Sessions>>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = language(None, &headers);
    let (form, session) = match writer_form(&sessions, &headers, &body, lang) {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let document = value(&form, "document").unwrap_or("").replace("\r\n", "\n");
    // What is saved is what was previewed: the preview's form carries the
    // file's hash, and a file that does not match it is previewed again.
    let previewed = crate::auth::hex(&crate::auth::sha256(&document));
    if value(&form, "confirm") == Some("yes") && value(&form, "previewed") == Some(previewed.as_str()) {
        return match service.add_plans(&document).await {
            Ok(saved) => {
                let _ = saved;
                redirect("/console/plans")
            }
            Err(error) => trouble(StatusCode::UNPROCESSABLE_ENTITY, lang, Some(&session), pick(lang, "Not saved", "未保存"), &error.to_string()),
        };
    }
    let preview = match preview_of(&service, &document).await {
        Ok(preview) => preview,
        Err(error) => return crate::problem::Problem::from(error).into_response(),
    };
    let status = if preview.error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    page(status, lang, None, view::preview_page(&staff(&session, lang), &preview, &previewed))
}

/// What saving `document` would do: its error, or per plan its new
/// version, the fields that change and who stays on the current version.
async fn preview_of<'a>(service: &Service, document: &'a str) -> Result<view::Preview<'a>, ServiceError> {
    // Add-ons are checked too (against this catalog's plans); the preview
    // lists the plans.
    let current = service.plans();
    let currency_of = |id: &str| current.latest(id).map(|p| current.catalog.get(p.ix).currency);
    let parsed = rollover_terms::parse_document("upload", document, Some(&currency_of)).map(|d| d.plans.into_iter().map(|(plan, _)| plan).collect::<Vec<_>>());
    let new_plans = match parsed {
        Ok(plans) => plans,
        Err(error) => return Ok(view::Preview { document, error: Some(error.to_string()), plans: Vec::new() }),
    };
    let counts = subscribers_by_version(service).await?;
    let catalog = service.plans();
    let new_tables = plan_tables(document);
    let mut plans = Vec::new();
    for plan in &new_plans {
        let latest = catalog.latest(&plan.id);
        let (version, current_fields, staying) = match &latest {
            Some(latest) if catalog.catalog.get(latest.ix) == plan => (None, Vec::new(), 0),
            Some(latest) => {
                let current = service.plan_document(&plan.id, latest.version).map(|d| plan_tables(&d)).unwrap_or_default();
                let fields = current.into_iter().find(|(id, _)| *id == plan.id).map(|(_, fields)| fields).unwrap_or_default();
                (Some(latest.version + 1), fields, counts.get(&(plan.id.clone(), latest.version)).copied().unwrap_or(0))
            }
            None => (Some(1), Vec::new(), 0),
        };
        let new_fields = new_tables.iter().find(|(id, _)| *id == plan.id).map(|(_, fields)| fields.clone()).unwrap_or_default();
        let changes = if version.is_some() { diff(&current_fields, &new_fields) } else { Vec::new() };
        plans.push((plan.id.clone(), version, changes, staying));
    }
    Ok(view::Preview { document, error: None, plans })
}

/// Each `[[plan]]` table of a document as its id and its fields, flattened
/// to dotted names with their values as TOML writes them.
fn plan_tables(document: &str) -> Vec<(String, Vec<(String, String)>)> {
    let Ok(value) = document.parse::<toml::Table>() else { return Vec::new() };
    let Some(toml::Value::Array(tables)) = value.get("plan") else { return Vec::new() };
    tables
        .iter()
        .filter_map(|table| {
            let id = table.get("id")?.as_str()?.to_string();
            let mut fields = Vec::new();
            flatten("", table, &mut fields);
            fields.sort();
            Some((id, fields))
        })
        .collect()
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&name, inner, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Fields that differ: (field, current, new), a missing one shown as "—".
fn diff(current: &[(String, String)], new: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut names: Vec<&String> = current.iter().chain(new).map(|(name, _)| name).collect();
    names.sort();
    names.dedup();
    let find = |fields: &[(String, String)], name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    names
        .into_iter()
        .filter_map(|name| {
            let (old, new) = (find(current, name), find(new, name));
            (old != new).then(|| (name.clone(), old.unwrap_or_else(|| "—".into()), new.unwrap_or_else(|| "—".into())))
        })
        .collect()
}
