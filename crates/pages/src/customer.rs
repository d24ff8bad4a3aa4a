//! The customer page: a phone-first answer to "does my unused data carry
//! over, and until when?", then every bucket and what happens to it, the
//! status, a projection at the recent pace, the last 30 days of use, the
//! history of carries and forfeits, and the plan's terms.

use std::collections::BTreeMap;

use rollover_core::ledger::{Cause, Change, Entry, Source};
use rollover_core::names::Kind;
use rollover_core::plan::{Exhausted, Period, Plan, Starts, Window};
use rollover_core::time::MICROS_PER_DAY;
use rollover_core::{Instant, Projection, Status};
use rollover_explain::words::{Words, day_name, kind_words, month_name};
use rollover_explain::{Lang, explain_plan, order_sentence};
use rollover_service::{Balance, BalanceBucket};

use crate::html::Html;
use crate::sentence::{Part, data, pick, sentence, time};

/// Days of use the page charts, today included.
pub const CHART_DAYS: usize = 30;

/// Days the recent pace is averaged over.
pub const PACE_DAYS: usize = 7;

/// Carry and forfeit lines the history shows, newest first.
pub const HISTORY_LINES: usize = 20;

/// A bucket that expires within this long gets a notice.
const SOON_MICROS: i64 = 3 * MICROS_PER_DAY;

/// What the page shows, all of it from the service.
pub struct CustomerPage<'a> {
    pub lang: Lang,
    pub plan: &'a Plan,
    pub balance: &'a Balance,
    /// The subscription's ledger up to now, in order.
    pub ledger: &'a [Entry],
    /// The engine's projection at [`daily_pace`] of this ledger.
    pub projection: Option<&'a Projection>,
    /// The page's own path, token included, for the language links.
    pub path: &'a str,
    /// The advisor on this subscription's own history, against the plans
    /// on sale (and that catalog).
    pub advice: Option<(&'a rollover_core::Catalog, &'a rollover_advise::Advice)>,
    /// The eSIM's profile, when the subscription holds an ICCID from the
    /// inventory.
    pub esim: Option<EsimView<'a>>,
}

/// The eSIM as the customer page shows it.
#[derive(Debug, Clone)]
pub struct EsimView<'a> {
    pub iccid: &'a str,
    /// The profile's state (`released`, `installed`, ...).
    pub state: &'a str,
    /// How to install it, from the order that sold it: shown until the
    /// profile is installed.
    pub install: Option<Install<'a>>,
}

#[derive(Debug, Clone)]
pub struct Install<'a> {
    /// `LPA:1$...`.
    pub activation_code: &'a str,
    /// Its two parts, for phones that ask for them one by one.
    pub smdp_address: &'a str,
    pub matching_id: &'a str,
    pub ios_link: &'a str,
    pub android_link: &'a str,
    /// The QR code: its side in modules and its SVG path data.
    pub qr: (usize, &'a str),
}

/// Bytes used on each of the last `days` local days (oldest first), today
/// included: what was drawn, accepted without a bucket, or throttled.
pub fn daily_use(ledger: &[Entry], plan: &Plan, now: Instant, days: usize) -> Vec<(jiff::civil::Date, u64)> {
    let zone = &plan.zone;
    let today = zone.date_of(now);
    let first = today.checked_sub(jiff::Span::new().days(days as i64 - 1)).unwrap_or(today);
    let mut by_day: BTreeMap<jiff::civil::Date, u64> = BTreeMap::new();
    for entry in ledger {
        let bytes = match entry.change {
            Change::Drawn { bytes } | Change::Unmetered { bytes } | Change::Throttled { bytes, .. } => bytes,
            _ => continue,
        };
        let date = zone.date_of(entry.at);
        if date >= first && date <= today {
            *by_day.entry(date).or_default() += bytes;
        }
    }
    (0..days as i64).filter_map(|n| first.checked_add(jiff::Span::new().days(n)).ok()).map(|date| (date, by_day.get(&date).copied().unwrap_or(0))).collect()
}

/// The recent daily pace: the use of the last [`PACE_DAYS`] whole days
/// (today left out, as it has not ended), over the days the plan was live.
pub fn daily_pace(ledger: &[Entry], plan: &Plan, now: Instant, started: Option<Instant>) -> u64 {
    let days = daily_use(ledger, plan, now, PACE_DAYS + 1);
    let whole = &days[..days.len().saturating_sub(1)];
    let since = started.map(|s| plan.zone.date_of(s));
    let counted: Vec<u64> = whole.iter().filter(|(date, _)| since.is_none_or(|s| *date >= s)).map(|(_, bytes)| *bytes).collect();
    if counted.is_empty() { 0 } else { counted.iter().sum::<u64>() / counted.len() as u64 }
}

pub fn customer_page(page: &CustomerPage) -> String {
    let w = Words::new(page.plan, page.lang);
    let mut h = Html::new();
    head(&mut h, &w, page);
    h.open("main", &[]);
    answer(&mut h, &w, page);
    banners(&mut h, &w, page);
    esim(&mut h, page);
    buckets(&mut h, &w, page);
    projection(&mut h, &w, page);
    usage_chart(&mut h, &w, page);
    history(&mut h, &w, page);
    advice(&mut h, page);
    terms(&mut h, &w);
    h.close("main");
    footer(&mut h, &w, page);
    h.markup("</body></html>\n");
    h.finish()
}

fn head(h: &mut Html, w: &Words, page: &CustomerPage) {
    let lang = page.lang;
    let title = format!("{}{}", page.plan.name, pick(lang, ": your data", "：我的流量"));
    h.markup("<!doctype html>\n");
    h.open("html", &[("lang", crate::lang_code(lang))]);
    h.markup("<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.markup("<meta name=\"referrer\" content=\"no-referrer\"><meta name=\"robots\" content=\"noindex\">");
    h.element("title", &[], &title);
    h.markup("<meta name=\"description\" content=\"").text(pick(lang, "Your data balance and plan rules", "流量余额与套餐规则")).markup("\">");
    h.markup(crate::HEAD_LINKS).markup("</head><body>");
    h.open("header", &[]);
    h.element("p", &[("class", "plan")], &page.plan.name);
    h.open("p", &[("class", "who")]);
    h.text(pick(lang, "Subscription ", "订阅 ")).element("span", &[("class", "id")], &page.balance.id);
    h.close("p");
    h.open("nav", &[("aria-label", pick(lang, "Language", "语言"))]);
    let (en, zh) = (format!("{}?lang=en", page.path), format!("{}?lang=zh", page.path));
    match lang {
        Lang::En => h.element("a", &[("href", &zh), ("lang", "zh-CN"), ("hreflang", "zh-CN")], "中文"),
        Lang::Zh => h.element("a", &[("href", &en), ("lang", "en"), ("hreflang", "en")], "English"),
    };
    h.close("nav").close("header");
    let _ = w;
}

/// The one sentence that answers "does my unused data carry over?" for
/// this subscription now.
fn answer(h: &mut Html, w: &Words, page: &CustomerPage) {
    let (lang, plan, balance) = (page.lang, page.plan, page.balance);
    h.open("section", &[("class", "answer"), ("aria-labelledby", "answer")]);
    h.element("h1", &[("id", "answer")], pick(lang, "Does my unused data carry over?", "流量可以结转吗？"));
    h.open("p", &[("class", "sentence")]);
    let zone = Part::Text(w.zone.clone());
    match (balance.status, &balance.period_end) {
        (Status::Pending, _) => {
            let starts = match plan.starts {
                Starts::Install => pick(lang, "when you install the eSIM", "安装 eSIM 后"),
                Starts::FirstUse => pick(lang, "when your eSIM first connects to a network", "eSIM 首次连网时"),
                Starts::Purchase => pick(lang, "at purchase", "购买后"),
            };
            sentence(h, w, pick(lang, "Your plan has not started yet: it starts {0}.", "套餐尚未生效：{0}生效。"), &[Part::Text(starts.into())]);
            if let Some(lapses) = balance.lapses_at {
                h.text(" ");
                sentence(h, w, pick(lang, "If it has not started by {0} ({1}), it lapses and can no longer be used.", "如果 {0}（{1}）前仍未生效，套餐将失效，无法再使用。"), &[Part::End(lapses), Part::Text(w.zone.clone())]);
            }
        }
        (Status::Expired | Status::Lapsed | Status::Cancelled, _) | (_, None) => {
            sentence(h, w, pick(lang, "This plan has ended: {0}.", "本套餐已结束：{0}。"), &[Part::Text(status_words(balance.status, lang).into())]);
        }
        (_, Some(end)) if plan.is_unlimited() => {
            let cap = plan.daily_cap.map_or(0, |cap| cap.bytes);
            let template = if plan.is_once() {
                pick(lang, "This pass ends at {0} ({1}). Its data is unlimited, with {2} a day at full speed; what is left of a day's full-speed data does not carry over to the next.", "本套餐于 {0}（{1}）到期。流量不限，每天 {2} 高速流量；当天未用完的高速流量不累计到次日。")
            } else {
                pick(lang, "This plan renews at {0} ({1}). Its data is unlimited, with {2} a day at full speed; what is left of a day's full-speed data does not carry over to the next.", "本套餐于 {0}（{1}）续订。流量不限，每天 {2} 高速流量；当天未用完的高速流量不累计到次日。")
            };
            sentence(h, w, template, &[Part::End(end.at), zone, Part::Data(cap)]);
        }
        (_, Some(end)) if plan.is_once() => {
            sentence(h, w, pick(lang, "No: this pass ends at {0} ({1}), and unused data does not carry over.", "不可以：本套餐于 {0}（{1}）到期，未用完的流量不结转。"), &[Part::End(end.at), zone]);
        }
        (_, Some(end)) if end.carries_bytes > 0 => {
            let parts = [Part::End(end.at), Part::Data(end.carries_bytes), end.carry_expires.map_or(Part::Text(String::new()), Part::End), zone];
            let template = match end.carry_expires {
                Some(_) => pick(
                    lang,
                    "Yes: if you use no more data before {0}, {1} carries over and stays usable until {2} ({3}).",
                    "可以结转：如果 {0} 前不再使用，剩余的 {1} 将结转，可用至 {2}（{3}）。",
                ),
                None => pick(lang, "Yes: if you use no more data before {0}, {1} carries over and stays usable while your plan lasts.", "可以结转：如果 {0} 前不再使用，剩余的 {1} 将结转，套餐有效期间一直可用。"),
            };
            sentence(h, w, template, &parts);
            if end.forfeits_bytes > 0 {
                h.text(pick(lang, " ", ""));
                sentence(h, w, pick(lang, "Another {0} would expire unused then.", "届时另有 {0} 到期清零。"), &[Part::Data(end.forfeits_bytes)]);
            }
        }
        (_, Some(end)) if plan.rollover.is_some() => {
            let template = if end.forfeits_bytes > 0 {
                pick(lang, "Unused data carries over, but none would at {0}: {1} would expire unused then.", "未用完的流量可以结转，但 {0} 时没有可结转的流量，届时 {1} 将到期清零。")
            } else {
                pick(lang, "Unused data carries over, but none is left to carry at {0}.", "未用完的流量可以结转，但 {0} 时没有剩余流量可结转。")
            };
            sentence(h, w, template, &[Part::End(end.at), Part::Data(end.forfeits_bytes)]);
        }
        (_, Some(end)) => {
            sentence(
                h,
                w,
                pick(lang, "No: what is left at {0} ({1}) expires unused: {2} if you use no more before then.", "不可以结转：{0}（{1}）时剩余流量清零；如果此前不再使用，将有 {2} 清零。"),
                &[Part::End(end.at), zone, Part::Data(end.forfeits_bytes)],
            );
        }
    }
    h.close("p");
    h.close("section");
}

fn status_words(status: Status, lang: Lang) -> &'static str {
    match status {
        Status::Pending => pick(lang, "not started yet", "尚未生效"),
        Status::Active => pick(lang, "active", "正常"),
        Status::Throttled => pick(lang, "at reduced speed", "已降速"),
        Status::Depleted => pick(lang, "data used up", "流量已用完"),
        Status::Suspended => pick(lang, "suspended", "已暂停"),
        Status::Expired => pick(lang, "expired", "已到期"),
        Status::Lapsed => pick(lang, "lapsed: it was not started in time", "已失效：未在规定时间内开始使用"),
        Status::Cancelled => pick(lang, "cancelled", "已取消"),
    }
}

/// Notices about the subscription's state: reduced speed, no data,
/// suspended, and anything expiring soon.
fn banners(h: &mut Html, w: &Words, page: &CustomerPage) {
    let (lang, plan, balance) = (page.lang, page.plan, page.balance);
    type Notice<'a> = Box<dyn Fn(&mut Html) + 'a>;
    let mut notices: Vec<Notice<'_>> = Vec::new();
    let period_end = balance.period_end.map(|p| p.at);
    match balance.status {
        Status::Throttled if balance.daily_remaining_bytes == Some(0) => {
            let cap = plan.daily_cap.expect("a day's data is used up only under a daily cap");
            // A calendar day ends at the next local midnight: an instant to show.
            let midnight = match cap.window {
                Window::CalendarDay => plan.zone.date_of(balance.at).tomorrow().ok().map(|day| plan.zone.start_of(day)),
                Window::Rolling24h => None,
            };
            let speed = cap.throttle_kbps.map_or(pick(lang, "a reduced speed", "低速").to_string(), |k| format!("{k} kbps"));
            let (cap_bytes, zone) = (cap.bytes, w.zone.clone());
            notices.push(Box::new(move |h| {
                let w = Words::new(plan, lang);
                sentence(
                    h,
                    &w,
                    pick(lang, "You have used today's {0} of full-speed data: your speed is {1} until {2} ({3}), at no extra cost.", "今日 {0} 高速流量已用完，现已降速至 {1}，{2}（{3}）恢复高速，不额外收费。"),
                    &[
                        Part::Data(cap_bytes),
                        Part::Text(speed.clone()),
                        midnight.map_or_else(|| Part::Text(pick(lang, "24 hours after your day began", "当日计费窗口开始满 24 小时").into()), Part::End),
                        Part::Text(zone.clone()),
                    ],
                );
            }));
        }
        Status::Throttled => {
            let kbps = match plan.exhausted {
                Exhausted::Throttle { throttle_kbps } => format!("{throttle_kbps} kbps"),
                _ => pick(lang, "a reduced speed", "低速").into(),
            };
            notices.push(Box::new(move |h| {
                let w = Words::new(plan, lang);
                let until = period_end.map_or(Part::Text(String::new()), Part::End);
                sentence(h, &w, pick(lang, "Your data is used up: your speed is {0} until {1} or until you add data.", "流量已用完：网速降至 {0}，直到 {1} 或您加购流量。"), &[Part::Text(kbps.clone()), until]);
            }));
        }
        Status::Depleted => notices.push(Box::new(move |h| {
            let w = Words::new(plan, lang);
            let until = period_end.map_or(Part::Text(String::new()), Part::End);
            sentence(h, &w, pick(lang, "Your data is used up: you cannot use data until {0} or until you add data.", "流量已用完：在 {0} 前或您加购流量前，无法上网。"), &[until]);
        })),
        Status::Suspended => notices.push(Box::new(move |h| {
            h.text(pick(lang, "Your plan is suspended: no data can be used until it is resumed.", "套餐已暂停：恢复前无法使用流量。"));
        })),
        _ => {}
    }
    let now = balance.at;
    for bucket in &balance.buckets {
        let Some(expires) = bucket.expires_at.filter(|e| e.micros() - now.micros() <= SOON_MICROS) else { continue };
        if bucket.rolls_over || bucket.remaining_bytes == 0 {
            continue;
        }
        let (remaining, name) = (bucket.remaining_bytes, bucket_name(bucket, page));
        notices.push(Box::new(move |h| {
            let w = Words::new(plan, lang);
            sentence(h, &w, pick(lang, "Expiring soon: {0} of {1} expires at {2}.", "即将到期：{1}剩余的 {0} 将于 {2} 到期。"), &[Part::Data(remaining), Part::Text(name.clone()), Part::End(expires)]);
        }));
    }
    if notices.is_empty() {
        return;
    }
    h.open("section", &[("class", "notices"), ("aria-label", pick(lang, "Notices", "提醒"))]);
    for notice in notices {
        h.open("p", &[("class", "notice"), ("role", "status")]);
        notice(h);
        h.close("p");
    }
    h.close("section");
}

/// Each live bucket in the order it is used: what it is, what is left of
/// it, when it expires and what happens to it then.
fn buckets(h: &mut Html, w: &Words, page: &CustomerPage) {
    let (lang, balance) = (page.lang, page.balance);
    h.open("section", &[("aria-labelledby", "buckets")]);
    h.element("h2", &[("id", "buckets")], pick(lang, "Your data", "我的流量"));
    h.open("p", &[("class", "total")]);
    if page.plan.is_unlimited() {
        h.text(pick(lang, "Unlimited data.", "流量不限。"));
        if balance.total_bytes > 0 {
            h.text(" ");
            sentence(h, w, pick(lang, "Extra full-speed data: {0}.", "额外高速流量：{0}。"), &[Part::Data(balance.total_bytes)]);
        }
    } else {
        sentence(h, w, pick(lang, "{0} left in all.", "共剩余 {0}。"), &[Part::Data(balance.total_bytes)]);
    }
    if let Some(daily) = balance.daily_remaining_bytes {
        h.text(" ");
        sentence(h, w, pick(lang, "Full-speed data left today: {0}.", "今日剩余高速流量：{0}。"), &[Part::Data(daily)]);
    }
    h.close("p");
    if balance.buckets.len() > 1 {
        let order = order_sentence(page.plan, lang);
        let order = match lang {
            // After a colon the sentence goes on in lower case.
            Lang::En => order[..1].to_lowercase() + &order[1..],
            Lang::Zh => order,
        };
        h.open("p", &[]);
        h.element("strong", &[], pick(lang, "Order of use:", "使用顺序："));
        h.text(pick(lang, " ", "")).text(&order);
        h.close("p");
    }
    h.open("ol", &[("class", "buckets")]);
    for bucket in &balance.buckets {
        one_bucket(h, w, page, bucket);
    }
    h.close("ol");
    h.close("section");
}

fn one_bucket(h: &mut Html, w: &Words, page: &CustomerPage, bucket: &BalanceBucket) {
    let lang = page.lang;
    h.open("li", &[]);
    let name = bucket_name(bucket, page);
    h.element("h3", &[], &name);
    h.open("p", &[]);
    h.open("meter", &[("min", "0"), ("max", &bucket.granted_bytes.max(1).to_string()), ("value", &bucket.remaining_bytes.to_string())]);
    h.text(&w.data(bucket.remaining_bytes));
    h.close("meter");
    h.text(" ");
    sentence(h, w, pick(lang, "{0} left of {1}", "剩余 {0}，共 {1}"), &[Part::Data(bucket.remaining_bytes), Part::Data(bucket.granted_bytes)]);
    h.close("p");
    h.open("p", &[("class", "fate")]);
    match (bucket.expires_at, bucket.rolls_over, bucket.carry_expires_at) {
        (None, _, _) => {
            h.text(pick(lang, "Does not expire.", "长期有效。"));
        }
        (Some(expires), true, Some(until)) => sentence(
            h,
            w,
            pick(lang, "Until {0}; whatever is left then carries over and stays usable until {1}.", "有效至 {0}；届时剩余部分将结转，可用至 {1}。"),
            &[Part::End(expires), Part::End(until)],
        ),
        (Some(expires), true, None) => sentence(
            h,
            w,
            pick(lang, "Until {0}; whatever is left then carries over and stays usable while your plan lasts.", "有效至 {0}；届时剩余部分将结转，套餐有效期间一直可用。"),
            &[Part::End(expires)],
        ),
        (Some(expires), false, _) if bucket.kind == "carry" => sentence(
            h,
            w,
            pick(lang, "Until {0}. It has carried over once already and will not carry again: whatever is left then expires.", "有效至 {0}。已结转过一次，不会再次结转：届时未用完的部分将清零。"),
            &[Part::End(expires)],
        ),
        (Some(expires), false, _) => {
            sentence(h, w, pick(lang, "Until {0}; whatever is left then expires unused.", "有效至 {0}；届时未用完的部分将清零。"), &[Part::End(expires)]);
        }
    }
    h.close("p");
    h.close("li");
}

/// What a bucket is, in plain words: this month's plan data, carried from
/// April, gift data.
fn bucket_name(bucket: &BalanceBucket, page: &CustomerPage) -> String {
    let (lang, plan) = (page.lang, page.plan);
    match bucket.kind.as_str() {
        "allowance" => match plan.period {
            Period::Monthly(_) => pick(lang, "This month's plan data", "本月套餐内流量").into(),
            Period::Days(_) => pick(lang, "This period's plan data", "本周期套餐内流量").into(),
            Period::Once(_) => pick(lang, "Plan data", "套餐流量").into(),
        },
        "carry" => {
            // The boundary it was carried at: the grant in the ledger.
            let carried_at = page.ledger.iter().find(|e| e.bucket == bucket.id && matches!(e.change, Change::Granted { source: Source::Carry, .. })).map(|e| e.at);
            match (carried_at, &plan.period) {
                (Some(at), Period::Monthly(_)) => {
                    let month = month_name(plan.zone.date_of(at.plus_micros(-1)), lang);
                    match lang {
                        Lang::En => format!("Carried over from {month}"),
                        Lang::Zh => format!("{month}结转的流量"),
                    }
                }
                (Some(at), _) => {
                    let day = day_name(plan.zone.date_of(at), lang);
                    match lang {
                        Lang::En => format!("Carried over on {day}"),
                        Lang::Zh => format!("{day}结转的流量"),
                    }
                }
                (None, _) => pick(lang, "Carried-over data", "结转流量").into(),
            }
        }
        "extra" => pick(lang, "Extra data block", "超额流量包").into(),
        other => match Kind::parse(other) {
            Ok(kind) => rollover_explain::words::capitalize(&kind_words(kind, lang)),
            Err(_) => other.to_string(),
        },
    }
}

/// At the recent pace: when the data would run out, and what the period's
/// end would then do. The engine's own projection, labelled as one.
fn projection(h: &mut Html, w: &Words, page: &CustomerPage) {
    let lang = page.lang;
    let Some(projection) = page.projection else { return };
    if projection.daily_bytes == 0 {
        return;
    }
    h.open("section", &[("aria-labelledby", "pace")]);
    h.element("h2", &[("id", "pace")], pick(lang, "At your recent pace", "按近期用量估算"));
    h.open("p", &[]);
    sentence(h, w, pick(lang, "You have used about {0} a day over the last {1} days.", "最近 {1} 天平均每天使用约 {0}。"), &[Part::Data(projection.daily_bytes), Part::Text(PACE_DAYS.to_string())]);
    h.text(" ");
    match (projection.runs_out_at, projection.period_end) {
        (Some(out), _) => sentence(h, w, pick(lang, "At that pace your data runs out around {0}.", "按此速度，流量约在 {0} 用完。"), &[Part::At(out)]),
        (None, Some(end)) if end.forfeits_bytes > 0 => sentence(
            h,
            w,
            pick(lang, "At that pace it lasts the period, and at {0} {1} would carry over and {2} would expire unused.", "按此速度可以用到周期结束；{0} 时将有 {1} 结转、{2} 到期清零。"),
            &[Part::End(end.at), Part::Data(end.carries_bytes), Part::Data(end.forfeits_bytes)],
        ),
        (None, Some(end)) => sentence(h, w, pick(lang, "At that pace it lasts the period, and at {0} {1} would carry over.", "按此速度可以用到周期结束；{0} 时将有 {1} 结转。"), &[Part::End(end.at), Part::Data(end.carries_bytes)]),
        (None, None) => {}
    }
    h.close("p");
    h.close("section");
}

/// The last [`CHART_DAYS`] days of use as an SVG bar chart drawn here, and
/// the same figures in a table for screen readers.
fn usage_chart(h: &mut Html, w: &Words, page: &CustomerPage) {
    let lang = page.lang;
    let days = daily_use(page.ledger, page.plan, page.balance.at, CHART_DAYS);
    let most = days.iter().map(|(_, bytes)| *bytes).max().unwrap_or(0);
    h.open("section", &[("aria-labelledby", "usage")]);
    h.element("h2", &[("id", "usage")], pick(lang, "Data used, last 30 days", "最近 30 天用量"));
    let caption = match lang {
        Lang::En => format!("Daily use from {} to {}; the busiest day used {}.", day_name(days[0].0, lang), day_name(days[days.len() - 1].0, lang), w.data(most)),
        Lang::Zh => format!("{}至{}每日用量；用量最多的一天为 {}。", day_name(days[0].0, lang), day_name(days[days.len() - 1].0, lang), w.data(most)),
    };
    let (width, height, bar) = (300u64, 100u64, 10u64);
    h.open("svg", &[("viewBox", &format!("0 0 {width} {}", height + 2)), ("role", "img"), ("aria-label", &caption), ("class", "chart")]);
    for (index, (date, bytes)) in days.iter().enumerate() {
        let bar_height = if most == 0 { 0 } else { (u128::from(*bytes) * u128::from(height) / u128::from(most)) as u64 };
        let x = index as u64 * bar;
        let label = format!("{}: {}", day_name(*date, lang), w.data(*bytes));
        h.open("rect", &[("x", &x.to_string()), ("y", &(height - bar_height).to_string()), ("width", &(bar - 2).to_string()), ("height", &bar_height.max(1).to_string())]);
        h.element("title", &[], &label);
        h.close("rect");
    }
    h.close("svg");
    h.element("p", &[("class", "caption")], &caption);
    h.open("table", &[("class", "visually-hidden")]);
    h.element("caption", &[], pick(lang, "Data used each day", "每日用量"));
    h.open("thead", &[]).open("tr", &[]);
    h.element("th", &[("scope", "col")], pick(lang, "Day", "日期"));
    h.element("th", &[("scope", "col")], pick(lang, "Data used", "用量"));
    h.close("tr").close("thead").open("tbody", &[]);
    for (date, bytes) in &days {
        h.open("tr", &[]);
        h.element("th", &[("scope", "row")], &day_name(*date, lang));
        h.open("td", &[]);
        data(h, *bytes, &w.data(*bytes));
        h.close("td").close("tr");
    }
    h.close("tbody").close("table");
    h.close("section");
}

/// Each carry and forfeit in a sentence with its cause, newest first.
fn history(h: &mut Html, w: &Words, page: &CustomerPage) {
    let lang = page.lang;
    let lines: Vec<&Entry> = page
        .ledger
        .iter()
        .rev()
        .filter(|e| matches!(e.change, Change::Forfeited { .. } | Change::Granted { source: Source::Carry, .. }))
        .take(HISTORY_LINES)
        .collect();
    if lines.is_empty() {
        return;
    }
    h.open("section", &[("aria-labelledby", "history")]);
    h.element("h2", &[("id", "history")], pick(lang, "What carried over and what expired", "结转与清零记录"));
    h.open("ul", &[("class", "history")]);
    for entry in lines {
        h.open("li", &[]);
        let what = Part::Text(entry.kind.map_or(String::new(), |kind| kind_words(kind, lang)));
        match entry.change {
            Change::Granted { bytes, expires, .. } if expires.is_never() => {
                sentence(h, w, pick(lang, "At {0}, {1} carried over; it stays usable while your plan lasts.", "{0}，{1} 结转到新周期，套餐有效期间一直可用。"), &[Part::At(entry.at), Part::Data(bytes)])
            }
            Change::Granted { bytes, expires, .. } => sentence(
                h,
                w,
                pick(lang, "At {0}, {1} carried over, usable until {2}.", "{0}，{1} 结转到新周期，可用至 {2}。"),
                &[Part::At(entry.at), Part::Data(bytes), Part::End(expires)],
            ),
            Change::Forfeited { bytes, cause } => {
                let template = match cause {
                    Cause::Expired => pick(lang, "At {0}, the {1} left of your {2} expired under the plan's rules.", "{0}，{2}剩余的 {1} 按规则到期清零。"),
                    Cause::Cap => pick(lang, "At {0}, {1} of your {2} was over the plan's carry-over limit and did not carry over.", "{0}，{2}中超出结转上限的 {1} 未能结转。"),
                    Cause::PlanChange => pick(lang, "At {0}, the {1} left of your {2} was lost with the plan change.", "{0}，因变更套餐，{2}剩余的 {1} 不再保留。"),
                    Cause::Cancelled => pick(lang, "At {0}, the {1} left of your {2} was lost when the plan was cancelled.", "{0}，因套餐取消，{2}剩余的 {1} 已清零。"),
                };
                sentence(h, w, template, &[Part::At(entry.at), Part::Data(bytes), what]);
            }
            _ => {}
        }
        h.close("li");
    }
    h.close("ul");
    h.close("section");
}

/// The plan's terms in plain language: the same text as `plan explain`.
fn terms(h: &mut Html, w: &Words) {
    let lang = w.lang;
    h.open("section", &[("aria-labelledby", "terms")]);
    h.element("h2", &[("id", "terms")], pick(lang, "Your plan's rules", "套餐规则"));
    let text = explain_plan(w.plan, lang);
    // The first line names the plan, which the page's header already does.
    for line in text.lines().skip(1).filter(|line| !line.trim().is_empty()) {
        if line.ends_with('?') || line.ends_with('？') || line == "Example" || line == "举例" {
            h.element("h3", &[], line);
        } else {
            h.element("p", &[], line);
        }
    }
    h.close("section");
}

fn footer(h: &mut Html, w: &Words, page: &CustomerPage) {
    let lang = page.lang;
    h.open("footer", &[]);
    h.open("p", &[]);
    h.text(pick(lang, "Figures as of ", "数据更新于 "));
    time(h, page.balance.at, &rollover_explain::words::time_on_day(page.balance.at, &page.plan.zone, lang), w);
    h.text(&match lang {
        Lang::En => format!(" ({}).", w.zone),
        Lang::Zh => format!("（{}）。", w.zone),
    });
    h.close("p");
    let units = match page.plan.unit_base {
        rollover_core::amount::UnitBase::Binary => pick(lang, "1 GB = 1024 MB on this plan.", "本套餐 1 GB = 1024 MB。"),
        rollover_core::amount::UnitBase::Decimal => pick(lang, "1 GB = 1000 MB on this plan.", "本套餐 1 GB = 1000 MB。"),
    };
    h.element("p", &[], units);
    h.close("footer");
}

/// Which plan on sale would have suited the days this subscription has
/// had: the advisor's answer, and each plan's cost over those days.
fn advice(h: &mut Html, page: &CustomerPage) {
    if let Some((catalog, advice)) = page.advice {
        advice_section(h, page.lang, catalog, advice);
    }
}

/// The advisor's answer and each plan's cost over the days it looked at.
pub(crate) fn advice_section(h: &mut Html, lang: Lang, catalog: &rollover_core::Catalog, advice: &rollover_advise::Advice) {
    if advice.days == 0 || advice.outcomes.is_empty() {
        return;
    }
    h.open("section", &[("aria-labelledby", "advice")]);
    h.element("h2", &[("id", "advice")], pick(lang, "Which plan fits how you use data?", "哪个套餐最适合您的用量？"));
    h.element("p", &[], &rollover_advise::reason(catalog, advice, lang));
    let days = advice.days.to_string();
    let intro = match lang {
        Lang::En => format!("What each plan on sale would have cost for your last {days} days:"),
        Lang::Zh => format!("按您最近 {days} 天的用量，各在售套餐的费用："),
    };
    h.element("p", &[], &intro);
    h.open("ul", &[("class", "advice")]);
    for outcome in &advice.outcomes {
        let plan = catalog.get(outcome.plan);
        let w = Words::new(plan, lang);
        let best = advice.best == Some(outcome.plan);
        h.open("li", &[]);
        if best {
            h.element("strong", &[], &plan.name);
        } else {
            h.text(&plan.name);
        }
        h.text(pick(lang, ": ", "："));
        h.text(&w.money(outcome.cost_minor));
        if outcome.unserved_bytes() > 0 {
            h.text(pick(lang, "; not at full speed: ", "；未能全速使用："));
            data(h, outcome.unserved_bytes(), &w.data(outcome.unserved_bytes()));
        }
        h.close("li");
    }
    h.close("ul");
    h.close("section");
}

/// The eSIM itself: where its profile is (ordered, downloaded, installed).
fn esim(h: &mut Html, page: &CustomerPage) {
    let lang = page.lang;
    let Some(view) = &page.esim else { return };
    let (iccid, state) = (view.iccid, view.state);
    let words = match state {
        "installed" => pick(lang, "installed on your phone", "已安装到手机"),
        "downloaded" => pick(lang, "downloaded to your phone, not yet installed", "已下载到手机，尚未安装"),
        "deleted" => pick(lang, "deleted from your phone", "已从手机删除"),
        "released" | "confirmed" | "linked" | "allocated" => pick(lang, "ready to install: scan its QR code or use its activation code", "可以安装：请扫描二维码或使用激活码"),
        _ => pick(lang, "not available", "不可用"),
    };
    h.open("p", &[("class", "esim")]);
    h.element("strong", &[], pick(lang, "Your eSIM: ", "您的 eSIM："));
    h.text(words);
    h.text(pick(lang, " (ICCID ", "（ICCID "));
    h.element("span", &[("class", "id")], iccid);
    h.text(pick(lang, ")", "）"));
    h.close("p");
    let ready = matches!(state, "released" | "confirmed" | "linked" | "allocated");
    if let Some(install) = view.install.as_ref().filter(|_| ready) {
        install_help(h, lang, install);
    }
}

/// The QR code, the activation code and the one-tap links, while the
/// profile waits to be installed.
fn install_help(h: &mut Html, lang: Lang, install: &Install) {
    h.open("section", &[("class", "install"), ("aria-labelledby", "install-title")]);
    h.element("h2", &[("id", "install-title")], pick(lang, "Install your eSIM", "安装您的 eSIM"));
    let (size, path) = install.qr;
    let view_box = format!("0 0 {size} {size}");
    let label = pick(lang, "QR code of your eSIM's activation code", "eSIM 激活码二维码");
    h.open("svg", &[("xmlns", "http://www.w3.org/2000/svg"), ("viewBox", &view_box), ("class", "qr"), ("role", "img"), ("aria-label", label), ("shape-rendering", "crispEdges")]);
    h.element("title", &[], label);
    h.element("rect", &[("width", &size.to_string()), ("height", &size.to_string()), ("fill", "#fff")], "");
    h.element("path", &[("fill", "#000"), ("d", path)], "");
    h.close("svg");
    h.element("p", &[], pick(lang, "If this page is on another screen, scan the code with your phone's camera, or in your phone's Settings choose Mobile/Cellular, then Add eSIM.", "如果本页显示在另一块屏幕上，请用手机相机扫描此二维码；或在手机“设置”中选择“蜂窝网络/移动网络”，再选择“添加 eSIM”。"));
    h.open("p", &[]);
    h.text(pick(lang, "On this phone: ", "在本机上安装："));
    h.element("a", &[("href", install.ios_link)], pick(lang, "install on iPhone", "在 iPhone 上安装"));
    h.text(pick(lang, " · ", " · "));
    h.element("a", &[("href", install.android_link)], pick(lang, "install on Android", "在 Android 手机上安装"));
    h.close("p");
    h.open("p", &[]);
    h.text(pick(lang, "Or enter the activation code by hand: ", "或手动输入激活码："));
    h.element("code", &[("class", "id")], install.activation_code);
    h.text(pick(lang, ". A phone that asks for two parts wants the SM-DP+ address ", "。如手机要求分别填写，SM-DP+ 地址为 "));
    h.element("code", &[("class", "id")], install.smdp_address);
    h.text(pick(lang, " and the activation code ", "，激活码为 "));
    h.element("code", &[("class", "id")], install.matching_id);
    h.text(pick(lang, ".", "。"));
    h.close("p");
    h.close("section");
}
