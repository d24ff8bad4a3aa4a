//! The support console's pages: sign-in, dashboard, search, one
//! subscription (identity, buckets, where the data went, the timeline,
//! actions), confirmations, the catalog and a plan upload's preview. Every
//! form posts back the session's CSRF token; a `read` key sees no action.

use std::collections::BTreeMap;

use rollover_core::ledger::{Cause, Change, Entry, Lifecycle, Source};
use rollover_core::{Instant, Plan};
use rollover_explain::Lang;
use rollover_explain::words::{Words, day_name, kind_words};
use rollover_service::{Balance, Origin, SubscriptionIdentifiers, SubscriptionSummary};

use crate::html::Html;
use crate::sentence::{data, pick, time};

/// Who is signed in, for the page's frame and its forms.
pub struct Staff<'a> {
    pub lang: Lang,
    pub key_id: &'a str,
    pub can_write: bool,
    pub csrf: &'a str,
}

/// The frame every console page shares: head, navigation, who is signed
/// in and the sign-out form, then `body`.
fn frame(lang: Lang, title: &str, staff: Option<&Staff>, body: impl FnOnce(&mut Html)) -> String {
    let mut h = Html::new();
    h.markup("<!doctype html>\n");
    h.open("html", &[("lang", crate::lang_code(lang))]);
    h.markup("<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"robots\" content=\"noindex\">");
    h.element("title", &[], &format!("{title} · rollover"));
    h.markup("<meta name=\"description\" content=\"rollover support console\">");
    h.markup(crate::HEAD_LINKS).markup("</head><body class=\"console\">");
    h.open("header", &[]);
    h.element("p", &[("class", "plan")], pick(lang, "rollover console", "rollover 客服控制台"));
    if let Some(staff) = staff {
        h.open("nav", &[("aria-label", pick(lang, "Console", "控制台"))]);
        for (href, en, zh) in [("/console", "Dashboard", "概览"), ("/console/subscriptions", "Subscriptions", "订阅"), ("/console/plans", "Plans", "套餐")] {
            h.element("a", &[("href", href)], pick(lang, en, zh));
            h.text(" ");
        }
        h.close("nav");
        h.open("form", &[("method", "post"), ("action", "/console/sign-out"), ("class", "who")]);
        csrf(&mut h, staff);
        h.text(pick(lang, "Signed in as ", "当前身份："));
        h.element("strong", &[], staff.key_id);
        h.text(if staff.can_write { pick(lang, " (read-write) ", "（读写）") } else { pick(lang, " (read only) ", "（只读）") });
        h.element("button", &[("type", "submit")], pick(lang, "Sign out", "退出"));
        h.close("form");
    }
    h.close("header");
    h.open("main", &[]);
    h.element("h1", &[], title);
    body(&mut h);
    h.close("main");
    h.markup("</body></html>\n");
    h.finish()
}

fn csrf(h: &mut Html, staff: &Staff) {
    h.open("input", &[("type", "hidden"), ("name", "csrf"), ("value", staff.csrf)]);
}

/// A labelled input.
fn field(h: &mut Html, id: &'static str, label: &str, kind: &'static str, value: &str, extra: &[(&'static str, &str)]) {
    h.open("p", &[("class", "field")]);
    h.element("label", &[("for", id)], label);
    let mut attributes: Vec<(&'static str, &str)> = vec![("id", id), ("name", id), ("type", kind), ("value", value)];
    attributes.extend_from_slice(extra);
    h.open("input", &attributes);
    h.close("p");
}

pub fn sign_in_page(lang: Lang, error: Option<&str>, open: bool) -> String {
    frame(lang, pick(lang, "Sign in", "登录"), None, |h| {
        if let Some(error) = error {
            h.element("p", &[("class", "notice"), ("role", "alert")], error);
        }
        h.open("form", &[("method", "post"), ("action", "/console/sign-in")]);
        field(h, "key", pick(lang, "API key", "API 密钥"), "password", "", &[("autocomplete", "off")]);
        if open {
            h.element("p", &[], pick(lang, "No API key is configured (loopback only): sign in without one.", "未配置 API 密钥（仅限本机访问）：无需密钥即可登录。"));
        }
        h.element("button", &[("type", "submit")], pick(lang, "Sign in", "登录"));
        h.close("form");
        h.element("p", &[], pick(lang, "A read key sees everything and changes nothing; actions need a read-write key.", "只读密钥可以查看全部内容但不能修改；执行操作需要读写密钥。"));
    })
}

/// The figures the dashboard shows: the same as `/metrics`.
pub struct Dashboard {
    pub statuses: Vec<(String, u64)>,
    pub accepted: u64,
    pub duplicate: u64,
    pub conflict: u64,
    pub rejected: Vec<(String, u64)>,
    pub webhook_backlog: u64,
    pub webhook_failed: u64,
    pub usage_bytes_today: u64,
    /// Accepted records a second since the previous look at the dashboard,
    /// and over how many seconds.
    pub records_per_second: Option<(f64, f64)>,
    /// Cluster mode: the cluster as this node sees it.
    pub cluster: Option<ClusterPanel>,
}

/// The cluster on the dashboard: this node, every node with the shards it
/// holds, and what waits in the usage stream.
pub struct ClusterPanel {
    pub node: String,
    /// Each node: its id, whether its heartbeat is current, shards held.
    pub nodes: Vec<(String, bool, usize)>,
    /// Shards this node serves now.
    pub serving: usize,
    pub stream_lag: Option<u64>,
}

pub fn dashboard_page(staff: &Staff, figures: &Dashboard) -> String {
    let lang = staff.lang;
    frame(lang, pick(lang, "Dashboard", "概览"), Some(staff), |h| {
        h.element("h2", &[], pick(lang, "Subscriptions by status", "各状态订阅数"));
        h.open("table", &[]).open("tbody", &[]);
        for (status, count) in &figures.statuses {
            h.open("tr", &[]).element("th", &[("scope", "row")], status).element("td", &[], &count.to_string()).close("tr");
        }
        h.close("tbody").close("table");
        h.element("h2", &[], pick(lang, "Usage records since the server started", "自服务启动以来的用量记录"));
        h.open("table", &[]).open("tbody", &[]);
        let mut row = |label: &str, value: String| {
            h.open("tr", &[]).element("th", &[("scope", "row")], label).element("td", &[], &value).close("tr");
        };
        row(pick(lang, "accepted", "已接受"), figures.accepted.to_string());
        row(pick(lang, "duplicate", "重复"), figures.duplicate.to_string());
        row(pick(lang, "conflict", "冲突"), figures.conflict.to_string());
        for (reason, count) in &figures.rejected {
            row(&format!("{} {reason}", pick(lang, "rejected:", "拒绝：")), count.to_string());
        }
        match figures.records_per_second {
            Some((rate, seconds)) => row(pick(lang, "accepted a second, since the last look", "每秒接受（自上次查看）"), format!("{rate:.1} ({seconds:.0} s)")),
            None => row(pick(lang, "accepted a second", "每秒接受"), pick(lang, "reload to measure", "刷新后计算").into()),
        }
        row(pick(lang, "usage today (since 00:00 UTC)", "今日用量（UTC 00:00 起）"), rollover_core::amount::format_human(figures.usage_bytes_today, rollover_core::amount::UnitBase::Binary));
        row(pick(lang, "webhook deliveries waiting", "待发送的 webhook"), figures.webhook_backlog.to_string());
        row(pick(lang, "webhook attempts failed", "webhook 发送失败次数"), figures.webhook_failed.to_string());
        h.close("tbody").close("table");
        if let Some(cluster) = &figures.cluster {
            h.element("h2", &[], pick(lang, "Cluster", "集群"));
            h.element(
                "p",
                &[],
                &match lang {
                    Lang::En => format!("This node is {}; it serves {} of the 256 shards.", cluster.node, cluster.serving),
                    Lang::Zh => format!("本节点为 {}，负责 256 个分片中的 {} 个。", cluster.node, cluster.serving),
                },
            );
            h.open("table", &[]).open("thead", &[]).open("tr", &[]);
            for heading in [pick(lang, "Node", "节点"), pick(lang, "Heartbeat", "心跳"), pick(lang, "Shards held", "持有的分片")] {
                h.element("th", &[("scope", "col")], heading);
            }
            h.close("tr").close("thead").open("tbody", &[]);
            for (node, live, shards) in &cluster.nodes {
                let heartbeat = if *live { pick(lang, "current", "正常") } else { pick(lang, "ran out", "已超时") };
                h.open("tr", &[]).element("th", &[("scope", "row")], node).element("td", &[], heartbeat).element("td", &[], &shards.to_string()).close("tr");
            }
            h.close("tbody").close("table");
            let lag = match cluster.stream_lag {
                Some(lag) => lag.to_string(),
                None => pick(lang, "not known (no stream)", "未知（无消息流）").to_string(),
            };
            h.element("p", &[], &format!("{}{lag}", pick(lang, "Usage records waiting in the stream for their owners: ", "消息流中等待处理的用量记录：")));
        }
        h.open("p", &[]);
        h.text(pick(lang, "The same figures, for monitoring: ", "同样的数据（供监控使用）："));
        h.element("a", &[("href", "/metrics")], "/metrics");
        h.close("p");
    })
}

/// The search form and a page of results.
pub struct Search<'a> {
    pub query: &'a str,
    pub status: &'a str,
    pub plan: &'a str,
    pub plans: &'a [String],
    pub results: &'a [SubscriptionSummary],
    pub total: usize,
    pub offset: usize,
    /// The link to the next page, when there is one.
    pub next: Option<String>,
}

pub fn search_page(staff: &Staff, search: &Search) -> String {
    let lang = staff.lang;
    frame(lang, pick(lang, "Subscriptions", "订阅"), Some(staff), |h| {
        h.open("form", &[("method", "get"), ("action", "/console/subscriptions"), ("role", "search")]);
        field(h, "q", pick(lang, "Subscription id, ICCID, IMSI, MSISDN or external id", "订阅 ID、ICCID、IMSI、MSISDN 或外部 ID"), "search", search.query, &[]);
        h.open("p", &[("class", "field")]);
        h.element("label", &[("for", "status")], pick(lang, "Status", "状态"));
        h.open("select", &[("id", "status"), ("name", "status")]);
        for status in ["", "pending", "active", "throttled", "depleted", "suspended", "expired", "lapsed", "cancelled"] {
            let label = if status.is_empty() { pick(lang, "any", "全部") } else { status };
            if status == search.status {
                h.element("option", &[("value", status), ("selected", "selected")], label);
            } else {
                h.element("option", &[("value", status)], label);
            }
        }
        h.close("select").close("p");
        h.open("p", &[("class", "field")]);
        h.element("label", &[("for", "plan")], pick(lang, "Plan", "套餐"));
        h.open("select", &[("id", "plan"), ("name", "plan")]);
        h.element("option", &[("value", "")], pick(lang, "any", "全部"));
        for plan in search.plans {
            if plan == search.plan {
                h.element("option", &[("value", plan), ("selected", "selected")], plan);
            } else {
                h.element("option", &[("value", plan)], plan);
            }
        }
        h.close("select").close("p");
        h.element("button", &[("type", "submit")], pick(lang, "Search", "搜索"));
        h.close("form");
        let shown = match lang {
            Lang::En => format!("{} found; showing {} from {}.", search.total, search.results.len(), search.offset + usize::from(!search.results.is_empty())),
            Lang::Zh => format!("共找到 {} 个；显示第 {} 个起的 {} 个。", search.total, search.offset + usize::from(!search.results.is_empty()), search.results.len()),
        };
        h.element("p", &[("role", "status")], &shown);
        if !search.results.is_empty() {
            h.open("table", &[("class", "results")]);
            h.open("thead", &[]).open("tr", &[]);
            for (en, zh) in [("Subscription", "订阅"), ("Plan", "套餐"), ("Status", "状态")] {
                h.element("th", &[("scope", "col")], pick(lang, en, zh));
            }
            h.close("tr").close("thead").open("tbody", &[]);
            for result in search.results {
                h.open("tr", &[]).open("td", &[]);
                h.element("a", &[("href", &format!("/console/subscriptions/{}", result.id))], &result.id);
                h.close("td");
                h.element("td", &[], &format!("{} v{}", result.plan.id, result.plan.version));
                h.element("td", &[], result.status.name());
                h.close("tr");
            }
            h.close("tbody").close("table");
        }
        if let Some(next) = &search.next {
            h.open("p", &[]).element("a", &[("href", next)], pick(lang, "Next page", "下一页")).close("p");
        }
    })
}

/// One subscription, on one screen.
pub struct SubscriptionView<'a> {
    pub plan: &'a Plan,
    pub balance: &'a Balance,
    pub identifiers: &'a SubscriptionIdentifiers,
    pub created_at: Instant,
    pub ledger: &'a [Entry],
    pub origins: &'a [Option<Origin>],
    pub notes: &'a [(Instant, String)],
    /// The window "where did the data go" looks at, and the timeline shows.
    pub from: Instant,
    pub to: Instant,
    /// The timeline's filter: `usage`, `grants`, `carries`, `forfeits`,
    /// `money`, `lifecycle`, `network`, or empty for all.
    pub kind: &'a str,
    /// Plans a change may go to.
    pub plans: &'a [String],
    /// What was just done, to say so at the top.
    pub done: Option<&'a str>,
    /// The advisor on this subscription's history, against the plans on sale.
    pub advice: Option<(&'a rollover_core::Catalog, &'a rollover_advise::Advice)>,
    /// The state of the eSIM profile its ICCID names, when in the inventory.
    pub esim_state: Option<&'a str>,
}

pub fn subscription_page(staff: &Staff, view: &SubscriptionView) -> String {
    let lang = staff.lang;
    let w = Words::new(view.plan, lang);
    let title = format!("{} {}", pick(lang, "Subscription", "订阅"), view.balance.id);
    frame(lang, &title, Some(staff), |h| {
        if let Some(done) = view.done {
            h.element("p", &[("class", "notice"), ("role", "status")], done);
        }
        identity(h, &w, view);
        buckets_table(h, &w, view);
        window_form(h, &w, view);
        where_data_went(h, &w, view);
        timeline(h, &w, view);
        if let Some((catalog, advice)) = view.advice {
            crate::customer::advice_section(h, lang, catalog, advice);
        }
        if staff.can_write {
            actions(h, staff, view);
        }
    })
}

fn identity(h: &mut Html, w: &Words, view: &SubscriptionView) {
    let lang = w.lang;
    h.element("h2", &[], pick(lang, "Identity and status", "身份与状态"));
    h.open("table", &[]).open("tbody", &[]);
    let ids = view.identifiers;
    let rows: [(&str, &str, Option<&str>); 7] = [
        ("Plan", "套餐", Some(&view.plan.id)),
        ("Status", "状态", Some(view.balance.status.name())),
        ("ICCID", "ICCID", ids.iccid.as_deref()),
        ("eSIM profile", "eSIM 配置文件", view.esim_state),
        ("IMSI", "IMSI", ids.imsi.as_deref()),
        ("MSISDN", "MSISDN", ids.msisdn.as_deref()),
        ("External id", "外部 ID", ids.external_id.as_deref()),
    ];
    for (en, zh, value) in rows {
        h.open("tr", &[]).element("th", &[("scope", "row")], pick(lang, en, zh)).element("td", &[], value.unwrap_or("—")).close("tr");
    }
    h.open("tr", &[]).element("th", &[("scope", "row")], pick(lang, "Created", "创建时间")).open("td", &[]);
    time(h, view.created_at, &stamp(view.created_at, w), w);
    h.close("td").close("tr");
    h.open("tr", &[]).element("th", &[("scope", "row")], pick(lang, "Fees and charges", "月费与额外费用")).open("td", &[]);
    h.text(&format!("{} + {}", w.money(view.balance.fees_minor), w.money(view.balance.charges_minor)));
    h.close("td").close("tr");
    h.close("tbody").close("table");
}

/// An instant as support staff read it: date and time in the plan's zone.
fn stamp(at: Instant, w: &Words) -> String {
    rollover_explain::words::time_on_day(at, &w.plan.zone, w.lang)
}

fn buckets_table(h: &mut Html, w: &Words, view: &SubscriptionView) {
    let lang = w.lang;
    h.element("h2", &[], pick(lang, "Buckets, in the order they are used", "流量桶（按使用顺序）"));
    h.open("table", &[]).open("thead", &[]).open("tr", &[]);
    for (en, zh) in [("Kind", "类型"), ("Left", "剩余"), ("Held", "总量"), ("Expires", "到期"), ("Then", "到期后")] {
        h.element("th", &[("scope", "col")], pick(lang, en, zh));
    }
    h.close("tr").close("thead").open("tbody", &[]);
    for bucket in &view.balance.buckets {
        h.open("tr", &[]);
        h.element("td", &[], &bucket.kind);
        h.open("td", &[]);
        data(h, bucket.remaining_bytes, &w.data(bucket.remaining_bytes));
        h.close("td").open("td", &[]);
        data(h, bucket.granted_bytes, &w.data(bucket.granted_bytes));
        h.close("td").open("td", &[]);
        match bucket.expires_at {
            Some(at) => time(h, at, &w.end(at), w),
            None => {
                h.text(pick(lang, "never", "不过期"));
            }
        }
        h.close("td");
        let then = if bucket.rolls_over { pick(lang, "carries over", "结转") } else if bucket.expires_at.is_some() { pick(lang, "expires", "清零") } else { "—" };
        h.element("td", &[], then);
        h.close("tr");
    }
    h.close("tbody").close("table");
}

/// The window and filter the next two sections use.
fn window_form(h: &mut Html, w: &Words, view: &SubscriptionView) {
    let lang = w.lang;
    let zone = rollover_core::Zone::utc();
    h.open("form", &[("method", "get"), ("action", &format!("/console/subscriptions/{}", view.balance.id)), ("class", "window")]);
    field(h, "from", pick(lang, "From (RFC 3339)", "起（RFC 3339）"), "text", &view.from.to_rfc3339(&zone), &[]);
    field(h, "to", pick(lang, "To (RFC 3339)", "止（RFC 3339）"), "text", &view.to.to_rfc3339(&zone), &[]);
    h.open("p", &[("class", "field")]);
    h.element("label", &[("for", "kind")], pick(lang, "Show", "显示"));
    h.open("select", &[("id", "kind"), ("name", "kind")]);
    for (value, en, zh) in KINDS {
        if *value == view.kind {
            h.element("option", &[("value", value), ("selected", "selected")], pick(lang, en, zh));
        } else {
            h.element("option", &[("value", value)], pick(lang, en, zh));
        }
    }
    h.close("select").close("p");
    h.element("button", &[("type", "submit")], pick(lang, "Show", "显示"));
    h.close("form");
}

/// The timeline's filters.
pub const KINDS: &[(&str, &str, &str)] = &[
    ("", "everything", "全部"),
    ("usage", "usage", "用量"),
    ("grants", "grants", "发放"),
    ("carries", "carries", "结转"),
    ("forfeits", "forfeits", "清零"),
    ("money", "fees and charges", "费用"),
    ("lifecycle", "lifecycle", "状态变化"),
    ("network", "network", "网络"),
];

/// Bytes in (by source) and out (drawn by day, forfeited by cause) in the
/// window, and what was held before and after: they add up.
fn where_data_went(h: &mut Html, w: &Words, view: &SubscriptionView) {
    let lang = w.lang;
    let (mut held_before, mut incoming, mut drawn_by_day, mut forfeited, mut carried_out) =
        (0i128, BTreeMap::<&'static str, u64>::new(), BTreeMap::<jiff::civil::Date, u64>::new(), BTreeMap::<&'static str, u64>::new(), 0u64);
    for entry in view.ledger {
        let change = match entry.change {
            Change::Granted { bytes, .. } => bytes as i128,
            Change::Drawn { bytes } | Change::Forfeited { bytes, .. } | Change::CarriedOut { bytes, .. } => -(bytes as i128),
            _ => continue,
        };
        if entry.at < view.from {
            held_before += change;
            continue;
        }
        if entry.at >= view.to {
            continue;
        }
        match entry.change {
            Change::Granted { bytes, source, .. } => {
                let name = match source {
                    Source::Period(_) => pick(lang, "plan data", "套餐内流量"),
                    Source::Carry => pick(lang, "carried over", "结转"),
                    Source::Grant => pick(lang, "granted", "赠送"),
                    Source::Addon => pick(lang, "add-ons bought", "加购流量包"),
                    Source::ExtraBlock => pick(lang, "extra blocks", "超额流量包"),
                };
                *incoming.entry(name).or_default() += bytes;
            }
            Change::Drawn { bytes } => *drawn_by_day.entry(w.plan.zone.date_of(entry.at)).or_default() += bytes,
            Change::Forfeited { bytes, cause } => *forfeited.entry(cause_words(cause, lang)).or_default() += bytes,
            Change::CarriedOut { bytes, .. } => carried_out += bytes,
            _ => {}
        }
    }
    let total_in: u64 = incoming.values().sum();
    let total_drawn: u64 = drawn_by_day.values().sum();
    let total_forfeited: u64 = forfeited.values().sum();
    let held_before = held_before.max(0) as u64;
    let held_after = (held_before as i128 + total_in as i128 - total_drawn as i128 - total_forfeited as i128 - carried_out as i128).max(0) as u64;
    h.element("h2", &[("id", "where")], pick(lang, "Where did the data go?", "流量去哪儿了？"));
    h.open("table", &[("class", "flow"), ("aria-labelledby", "where")]).open("tbody", &[]);
    let row = |h: &mut Html, label: String, bytes: u64, class: &'static str| {
        h.open("tr", &[("class", class)]).element("th", &[("scope", "row")], &label).open("td", &[]);
        data(h, bytes, &w.data(bytes));
        h.close("td").close("tr");
    };
    row(h, pick(lang, "Held at the start", "期初持有").into(), held_before, "held");
    for (name, bytes) in &incoming {
        row(h, format!("+ {name}"), *bytes, "in");
    }
    for (date, bytes) in &drawn_by_day {
        row(h, format!("− {} {}", pick(lang, "used", "使用"), day_name(*date, lang)), *bytes, "out");
    }
    if carried_out > 0 {
        row(h, format!("− {}", pick(lang, "carried into a new bucket", "结转至新流量桶")), carried_out, "out");
    }
    for (cause, bytes) in &forfeited {
        row(h, format!("− {} {cause}", pick(lang, "forfeited:", "清零：")), *bytes, "out");
    }
    row(h, pick(lang, "Held at the end", "期末持有").into(), held_after, "held");
    h.close("tbody").close("table");
}

fn cause_words(cause: Cause, lang: Lang) -> &'static str {
    match cause {
        Cause::Expired => pick(lang, "expired", "到期"),
        Cause::Cap => pick(lang, "over the carry-over cap", "超出结转上限"),
        Cause::PlanChange => pick(lang, "plan change", "变更套餐"),
        Cause::Cancelled => pick(lang, "cancelled", "取消"),
    }
}

/// Every ledger entry in the window, with its cause; usage grouped per day
/// (with how it came in, its countries, and when it was rated).
fn timeline(h: &mut Html, w: &Words, view: &SubscriptionView) {
    let lang = w.lang;
    h.element("h2", &[("id", "timeline")], pick(lang, "Timeline", "时间线"));
    h.open("table", &[("class", "timeline"), ("aria-labelledby", "timeline")]).open("thead", &[]).open("tr", &[]);
    for (en, zh) in [("When", "时间"), ("What", "内容"), ("Rated or applied", "计费/处理时间")] {
        h.element("th", &[("scope", "col")], pick(lang, en, zh));
    }
    h.close("tr").close("thead").open("tbody", &[]);
    let in_window = |at: Instant| at >= view.from && at < view.to;
    let show = |kind: &str| view.kind.is_empty() || view.kind == kind;
    let mut usage: BTreeMap<jiff::civil::Date, UsageDay> = BTreeMap::new();
    for (index, entry) in view.ledger.iter().enumerate() {
        if !in_window(entry.at) {
            continue;
        }
        let origin = view.origins.get(index).and_then(Option::as_ref);
        let (kind, text) = match entry.change {
            Change::Drawn { bytes } | Change::Unmetered { bytes } | Change::Throttled { bytes, .. } | Change::Rejected { bytes, .. } => {
                if show("usage") {
                    usage.entry(w.plan.zone.date_of(entry.at)).or_default().add(&entry.change, bytes, origin);
                }
                continue;
            }
            Change::Granted { bytes, expires, source } => {
                let what = match source {
                    Source::Period(n) => format!("{} {n}", pick(lang, "plan data for period", "套餐内流量，周期")),
                    Source::Carry => pick(lang, "carried over", "结转").into(),
                    Source::Grant => entry.kind.map_or(String::new(), |k| kind_words(k, lang)),
                    Source::Addon => pick(lang, "add-on bought", "加购流量包").into(),
                    Source::ExtraBlock => pick(lang, "extra block", "超额流量包").into(),
                };
                let until = if expires.is_never() { pick(lang, "no expiry", "不过期").into() } else { format!("{} {}", pick(lang, "until", "有效至"), w.end(expires)) };
                (if source == Source::Carry { "carries" } else { "grants" }, format!("+{} {what}, {until}", w.data(bytes)))
            }
            Change::CarriedOut { bytes, into } => ("carries", format!("{} {} → {} {into}", w.data(bytes), pick(lang, "carried", "结转"), pick(lang, "bucket", "流量桶"))),
            Change::Forfeited { bytes, cause } => {
                let kind = entry.kind.map_or(String::new(), |k| kind_words(k, lang));
                ("forfeits", format!("−{} {kind} {}: {}", w.data(bytes), pick(lang, "forfeited", "清零"), cause_words(cause, lang)))
            }
            Change::Fee { minor, period } => ("money", format!("{} {} {period}", w.money(minor), pick(lang, "fee for period", "月费，周期"))),
            Change::AddonFee { minor } => ("money", format!("{} {}", w.money(minor), pick(lang, "for an add-on", "加购流量包费用"))),
            Change::Refunded { minor } => ("money", format!("−{} {}", w.money(minor), pick(lang, "refunded", "已退款"))),
            Change::Charged { minor, bytes } => ("money", format!("{} {} {}", w.money(minor), pick(lang, "charged for", "额外收费，用量"), w.data(bytes))),
            Change::Lifecycle(event) => ("lifecycle", lifecycle_words(event, lang)),
        };
        if show(kind) {
            timeline_row(h, w, entry.at, &text, origin.map(|o| o.applied_at));
        }
    }
    if show("network") {
        for (at, note) in view.notes.iter().filter(|(at, _)| in_window(*at)) {
            timeline_row(h, w, *at, note, None);
        }
    }
    for (date, day) in &usage {
        let text = day.describe(w);
        h.open("tr", &[("class", "usage")]);
        h.element("td", &[], &day_name(*date, lang));
        h.element("td", &[], &text);
        h.open("td", &[]);
        if let (Some(first), Some(last)) = (day.first_rated, day.last_rated) {
            time(h, first, &stamp(first, w), w);
            if last != first {
                h.text(" – ");
                time(h, last, &stamp(last, w), w);
            }
        }
        h.close("td").close("tr");
    }
    h.close("tbody").close("table");
}

fn timeline_row(h: &mut Html, w: &Words, at: Instant, text: &str, applied: Option<Instant>) {
    h.open("tr", &[]).open("td", &[]);
    time(h, at, &stamp(at, w), w);
    h.close("td");
    h.element("td", &[], text);
    h.open("td", &[]);
    if let Some(applied) = applied.filter(|a| *a != at) {
        time(h, applied, &stamp(applied, w), w);
    }
    h.close("td").close("tr");
}

fn lifecycle_words(event: Lifecycle, lang: Lang) -> String {
    match event {
        Lifecycle::Purchased(_) => pick(lang, "bought", "购买").into(),
        Lifecycle::Installed => pick(lang, "eSIM installed", "已安装 eSIM").into(),
        Lifecycle::FirstUse => pick(lang, "first use", "首次使用").into(),
        Lifecycle::Started => pick(lang, "started", "生效").into(),
        Lifecycle::Lapsed => pick(lang, "lapsed: not started in time", "失效：未按时开始使用").into(),
        Lifecycle::Expired => pick(lang, "expired", "到期").into(),
        Lifecycle::Suspended => pick(lang, "suspended", "暂停").into(),
        Lifecycle::Resumed => pick(lang, "resumed", "恢复").into(),
        Lifecycle::Cancelled => pick(lang, "cancelled", "取消").into(),
        Lifecycle::PlanChangeScheduled(_) => pick(lang, "plan change scheduled for the next boundary", "已安排在下个周期变更套餐").into(),
        Lifecycle::PlanChanged { .. } => pick(lang, "plan changed", "套餐已变更").into(),
        Lifecycle::Refused(refusal) => format!("{} {}", pick(lang, "refused:", "被拒绝："), refusal.text()),
    }
}

/// One day of usage, summed.
#[derive(Default)]
struct UsageDay {
    drawn: u64,
    unmetered: u64,
    throttled: u64,
    rejected: u64,
    /// Records by how they came in: the API, RADIUS, Diameter Gy.
    api: BTreeMap<String, ()>,
    radius: BTreeMap<String, ()>,
    gy: BTreeMap<String, ()>,
    countries: BTreeMap<String, ()>,
    first_rated: Option<Instant>,
    last_rated: Option<Instant>,
}

impl UsageDay {
    fn add(&mut self, change: &Change, bytes: u64, origin: Option<&Origin>) {
        match change {
            Change::Drawn { .. } => self.drawn += bytes,
            Change::Unmetered { .. } => self.unmetered += bytes,
            Change::Throttled { .. } => self.throttled += bytes,
            _ => self.rejected += bytes,
        }
        let Some(origin) = origin else { return };
        let key = origin.key.clone().unwrap_or_default();
        if let Some(rest) = key.strip_prefix("#acct:") {
            // `#acct:{total}:{nas}/{session}`: one RADIUS session.
            self.radius.insert(rest.split_once(':').map_or(rest, |(_, session)| session).to_string(), ());
        } else if let Some(rest) = key.strip_prefix("#session:") {
            self.gy.insert(rest.split_once(':').map_or(rest, |(_, session)| session).to_string(), ());
        } else {
            self.api.insert(key, ());
        }
        if let Some(country) = &origin.country {
            self.countries.insert(country.clone(), ());
        }
        self.first_rated = Some(self.first_rated.map_or(origin.applied_at, |f| f.min(origin.applied_at)));
        self.last_rated = Some(self.last_rated.map_or(origin.applied_at, |l| l.max(origin.applied_at)));
    }

    fn describe(&self, w: &Words) -> String {
        let lang = w.lang;
        let mut parts = vec![format!("{} {}", pick(lang, "used", "使用"), w.data(self.drawn + self.unmetered + self.throttled))];
        if self.throttled > 0 {
            parts.push(format!("{} {}", w.data(self.throttled), pick(lang, "at reduced speed", "降速")));
        }
        if self.rejected > 0 {
            parts.push(format!("{} {}", w.data(self.rejected), pick(lang, "refused", "被拒绝")));
        }
        let mut via = Vec::new();
        for (count, en, zh) in [(self.api.len(), "API records", "条 API 记录"), (self.radius.len(), "RADIUS sessions", "个 RADIUS 会话"), (self.gy.len(), "Gy sessions", "个 Gy 会话")] {
            if count > 0 {
                via.push(format!("{count} {}", pick(lang, en, zh)));
            }
        }
        if !via.is_empty() {
            parts.push(via.join(", "));
        }
        if !self.countries.is_empty() {
            parts.push(format!("{} {}", pick(lang, "in", "地区"), self.countries.keys().cloned().collect::<Vec<_>>().join(", ")));
        }
        parts.join("; ")
    }
}

/// The action forms: each goes to a confirmation first.
fn actions(h: &mut Html, staff: &Staff, view: &SubscriptionView) {
    let lang = staff.lang;
    let action = format!("/console/subscriptions/{}", view.balance.id);
    h.element("h2", &[], pick(lang, "Actions", "操作"));
    h.open("form", &[("method", "post"), ("action", &action), ("class", "action")]);
    csrf(h, staff);
    h.open("input", &[("type", "hidden"), ("name", "action"), ("value", "grant")]);
    h.element("h3", &[], pick(lang, "Grant data", "发放流量"));
    field(h, "grant_kind", pick(lang, "Kind (gift, addon, topup, ...)", "类型（gift、addon、topup 等）"), "text", "gift", &[]);
    field(h, "grant_data", pick(lang, "Amount (e.g. 1GiB)", "数量（如 1GiB）"), "text", "", &[]);
    field(h, "grant_expires", pick(lang, "Expires: period_end, never or an RFC 3339 instant", "到期：period_end、never 或 RFC 3339 时间"), "text", "period_end", &[]);
    h.element("button", &[("type", "submit")], pick(lang, "Grant…", "发放…"));
    h.close("form");
    h.open("form", &[("method", "post"), ("action", &action), ("class", "action")]);
    csrf(h, staff);
    h.open("input", &[("type", "hidden"), ("name", "action"), ("value", "change_plan")]);
    h.element("h3", &[], pick(lang, "Change plan", "变更套餐"));
    h.open("p", &[("class", "field")]);
    h.element("label", &[("for", "change_plan")], pick(lang, "New plan", "新套餐"));
    h.open("select", &[("id", "change_plan"), ("name", "change_plan")]);
    for plan in view.plans {
        h.element("option", &[("value", plan)], plan);
    }
    h.close("select").close("p");
    h.element("button", &[("type", "submit")], pick(lang, "Change plan…", "变更套餐…"));
    h.close("form");
    h.open("div", &[("class", "buttons")]);
    for (value, en, zh) in [("suspend", "Suspend…", "暂停…"), ("resume", "Resume…", "恢复…"), ("cancel", "Cancel the plan…", "取消套餐…"), ("link", "Issue a customer link…", "生成客户链接…")] {
        h.open("form", &[("method", "post"), ("action", &action), ("class", "action")]);
        csrf(h, staff);
        h.open("input", &[("type", "hidden"), ("name", "action"), ("value", value)]);
        h.element("button", &[("type", "submit")], pick(lang, en, zh));
        h.close("form");
    }
    h.close("div");
}

/// A page that says what happened or what went wrong.
pub fn message_page(staff: &Staff, title: &str, detail: &str) -> String {
    let lang = staff.lang;
    frame(lang, title, Some(staff), |h| {
        h.element("p", &[("class", "notice"), ("role", "alert")], detail);
        h.open("p", &[]).element("a", &[("href", "/console")], pick(lang, "Back to the console", "返回控制台")).close("p");
    })
}

/// "Are you sure?": what will be done, and the form that does it.
pub fn confirm_page(staff: &Staff, subscription: &str, what: &str, fields: &[(String, String)]) -> String {
    let lang = staff.lang;
    frame(lang, pick(lang, "Confirm", "确认"), Some(staff), |h| {
        h.element("p", &[("class", "sentence")], what);
        h.open("form", &[("method", "post"), ("action", &format!("/console/subscriptions/{subscription}"))]);
        csrf(h, staff);
        for (name, value) in fields.iter().filter(|(name, _)| name != "csrf" && name != "confirm") {
            h.open("input", &[("type", "hidden"), ("name", name_of(name)), ("value", value)]);
        }
        h.open("input", &[("type", "hidden"), ("name", "confirm"), ("value", "yes")]);
        h.element("button", &[("type", "submit")], pick(lang, "Confirm", "确认"));
        h.text(" ");
        h.element("a", &[("href", &format!("/console/subscriptions/{subscription}"))], pick(lang, "Go back", "返回"));
        h.close("form");
    })
}

/// The fields a confirmation carries over, by their fixed names (so no
/// field name is ever taken from the request).
fn name_of(name: &str) -> &'static str {
    const NAMES: [&str; 5] = ["action", "grant_kind", "grant_data", "grant_expires", "change_plan"];
    NAMES.into_iter().find(|n| *n == name).unwrap_or("ignored")
}

/// A customer link just issued, to hand to the customer.
pub fn link_page(staff: &Staff, subscription: &str, url: &str, expires: &str) -> String {
    let lang = staff.lang;
    frame(lang, pick(lang, "Customer link", "客户链接"), Some(staff), |h| {
        h.element("p", &[], pick(lang, "Send this link to the customer; it opens their page until it expires:", "请将此链接发给客户，有效期内可打开其流量页面："));
        h.open("p", &[("class", "link")]).element("a", &[("href", url), ("rel", "noreferrer")], url).close("p");
        h.element("p", &[], &format!("{} {expires}", pick(lang, "Expires:", "到期：")));
        h.open("p", &[]).element("a", &[("href", &format!("/console/subscriptions/{subscription}"))], pick(lang, "Back to the subscription", "返回订阅")).close("p");
    })
}

/// One plan in the catalog.
pub struct CatalogPlan<'a> {
    pub plan: &'a Plan,
    pub versions: Vec<(u32, usize)>,
}

pub fn plans_page(staff: &Staff, plans: &[CatalogPlan], document: &str) -> String {
    let lang = staff.lang;
    frame(lang, pick(lang, "Plans", "套餐"), Some(staff), |h| {
        for entry in plans {
            h.open("section", &[("class", "plan")]);
            h.element("h2", &[], &format!("{} ({})", entry.plan.name, entry.plan.id));
            let versions: Vec<String> = entry.versions.iter().map(|(v, n)| format!("v{v}: {n}")).collect();
            h.element("p", &[], &format!("{} {}", pick(lang, "Subscribers by version:", "各版本订阅数："), versions.join(", ")));
            for (code, label) in [(Lang::En, "English"), (Lang::Zh, "中文")] {
                h.open("details", &[]).element("summary", &[], label);
                h.open("pre", &[("lang", crate::lang_code(code))]).text(&rollover_explain::explain_plan(entry.plan, code)).close("pre");
                h.close("details");
            }
            h.close("section");
        }
        if staff.can_write {
            h.element("h2", &[], pick(lang, "Upload plans", "上传套餐"));
            h.open("form", &[("method", "post"), ("action", "/console/plans")]);
            csrf(h, staff);
            h.open("p", &[("class", "field")]);
            h.element("label", &[("for", "document")], pick(lang, "Plan file (TOML, [[plan]] tables)", "套餐文件（TOML，[[plan]] 表）"));
            h.open("textarea", &[("id", "document"), ("name", "document"), ("rows", "16"), ("spellcheck", "false")]).text(document).close("textarea");
            h.close("p");
            h.element("button", &[("type", "submit")], pick(lang, "Preview…", "预览…"));
            h.close("form");
        }
    })
}

/// What an upload would do, before it is saved.
pub struct Preview<'a> {
    pub document: &'a str,
    /// The document's error with its line, when it does not read.
    pub error: Option<String>,
    /// Per plan: id, the new version (none: unchanged), the changed fields
    /// (field, current, new), and the subscribers who stay on the current
    /// version.
    pub plans: Vec<PlanChange>,
}

/// One plan of a preview: id, new version, changed fields (field, current,
/// new), subscribers who stay on the current version.
pub type PlanChange = (String, Option<u32>, Vec<(String, String, String)>, usize);

pub fn preview_page(staff: &Staff, preview: &Preview, previewed: &str) -> String {
    let lang = staff.lang;
    frame(lang, pick(lang, "Preview of the upload", "上传预览"), Some(staff), |h| {
        if let Some(error) = &preview.error {
            h.element("p", &[("class", "notice"), ("role", "alert")], error);
        }
        for (id, version, changes, staying) in &preview.plans {
            h.open("section", &[("class", "plan")]);
            match version {
                None => {
                    h.element("h2", &[], id);
                    h.element("p", &[], pick(lang, "Unchanged: it keeps its version.", "未变化：保持原版本。"));
                }
                Some(version) => {
                    h.element("h2", &[], &format!("{id} → v{version}"));
                    let stay = match lang {
                        Lang::En if *staying == 1 => format!("1 subscription stays on the current version; new purchases get v{version}."),
                        Lang::En => format!("{staying} subscriptions stay on the current version; new purchases get v{version}."),
                        Lang::Zh => format!("{staying} 个订阅保持当前版本；新购买使用 v{version}。"),
                    };
                    h.element("p", &[("class", "staying")], &stay);
                    if !changes.is_empty() {
                        h.open("table", &[("class", "diff")]).open("thead", &[]).open("tr", &[]);
                        for (en, zh) in [("Field", "字段"), ("Now", "当前"), ("New", "新")] {
                            h.element("th", &[("scope", "col")], pick(lang, en, zh));
                        }
                        h.close("tr").close("thead").open("tbody", &[]);
                        for (field_name, old, new) in changes {
                            h.open("tr", &[]).element("td", &[], field_name).element("td", &[], old).element("td", &[], new).close("tr");
                        }
                        h.close("tbody").close("table");
                    }
                }
            }
            h.close("section");
        }
        h.open("form", &[("method", "post"), ("action", "/console/plans")]);
        csrf(h, staff);
        h.open("p", &[("class", "field")]);
        h.element("label", &[("for", "document")], pick(lang, "Plan file", "套餐文件"));
        // What is saved is what was previewed: the file can be changed only
        // by previewing it again.
        let mut attributes = vec![("id", "document"), ("name", "document"), ("rows", "16"), ("spellcheck", "false")];
        if preview.error.is_none() {
            attributes.push(("readonly", "readonly"));
        }
        h.open("textarea", &attributes).text(preview.document).close("textarea");
        h.close("p");
        if preview.error.is_none() {
            h.open("input", &[("type", "hidden"), ("name", "previewed"), ("value", previewed)]);
            h.open("input", &[("type", "hidden"), ("name", "confirm"), ("value", "yes")]);
            h.element("button", &[("type", "submit")], pick(lang, "Save these plans", "保存套餐"));
        } else {
            h.element("button", &[("type", "submit")], pick(lang, "Preview again", "重新预览"));
        }
        h.close("form");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_shows_the_cluster_in_both_languages() {
        let cluster = ClusterPanel { node: "node-1".into(), nodes: vec![("node-1".into(), true, 128), ("node-2".into(), false, 128)], serving: 128, stream_lag: Some(7) };
        let figures = Dashboard {
            statuses: Vec::new(),
            accepted: 0,
            duplicate: 0,
            conflict: 0,
            rejected: Vec::new(),
            webhook_backlog: 0,
            webhook_failed: 0,
            usage_bytes_today: 0,
            records_per_second: None,
            cluster: Some(cluster),
        };
        let en = dashboard_page(&Staff { key_id: "ops", can_write: true, csrf: "t", lang: Lang::En }, &figures);
        assert!(en.contains("This node is node-1; it serves 128 of the 256 shards."), "{en}");
        assert!(en.contains("<th scope=\"row\">node-2</th><td>ran out</td><td>128</td>"), "{en}");
        assert!(en.contains("waiting in the stream for their owners: 7"), "{en}");
        let zh = dashboard_page(&Staff { key_id: "ops", can_write: true, csrf: "t", lang: Lang::Zh }, &figures);
        assert!(zh.contains("本节点为 node-1，负责 256 个分片中的 128 个。"), "{zh}");
        assert!(zh.contains("已超时"), "{zh}");
    }
}
