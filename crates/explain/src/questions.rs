//! One function per question customers ask about a plan, in the order they
//! ask them. Each returns its heading and answer, ending in a newline, with
//! every sentence in English and Chinese side by side.

use rollover_core::amount::UnitBase;
use rollover_core::names::Kind;
use rollover_core::plan::{Anchor, Exhausted, OnPlanChange, Period, Starts, Window};
use rollover_core::time::Length;

use crate::Lang;
use crate::words::{Words, capitalize, length, list, ordinal_en, plain_length, plural};

/// The plan's name, what it costs and what it holds, and its daily cap.
pub fn headline(w: &Words) -> String {
    let plan = w.plan;
    let (lang, name, id, price, noun) = (w.lang, &plan.name, &plan.id, &w.price, &w.noun);
    let mut out = say!(lang, "{name} ({id})\n", "{name}（{id}）\n");
    let units = match plan.unit_base {
        UnitBase::Binary => "1 GB = 1024 MB",
        UnitBase::Decimal => "1 GB = 1000 MB",
    };
    let per = match plan.period {
        Period::Days(days) => format!("每 {days} 天"),
        _ => "每月".to_string(),
    };
    let holds = match (&plan.period, plan.allowance_bytes) {
        (Period::Once(valid), Some(bytes)) => {
            let (valid, data) = (length(*valid, lang), w.data(bytes));
            say!(lang, "{price} once; {data} of data for {valid} ({units}).", "一次性付费 {price}，{valid}内共 {data} 流量（{units}）。")
        }
        (Period::Once(valid), None) => {
            let valid = length(*valid, lang);
            say!(lang, "{price} once; valid for {valid}.", "一次性付费 {price}，有效期 {valid}。")
        }
        (_, Some(bytes)) => {
            let data = w.data(bytes);
            say!(lang, "{price} a {noun}; {data} of data each {noun} ({units}).", "{per} {price}，{per}含 {data} 流量（{units}）。")
        }
        (_, None) => say!(lang, "{price} a {noun}.", "{per} {price}。"),
    };
    out += &holds;
    out.push('\n');
    if let Some(cap) = plan.daily_cap {
        let (fast, zone) = (w.data(cap.bytes), &w.zone);
        let speed = match cap.throttle_kbps {
            Some(kbps) => format!("{kbps} kbps"),
            None => say!(lang, "a reduced speed", "低速"),
        };
        let until = match cap.window {
            Window::CalendarDay => say!(lang, "until midnight ({zone})", "每天 24:00（{zone}）恢复高速"),
            Window::Rolling24h => say!(lang, "until 24 hours after that day's window began", "自当日计费窗口开始满 24 小时后恢复高速"),
        };
        out += &if plan.is_unlimited() {
            say!(
                lang,
                "Unlimited data: {fast} a day at full speed, then {speed} {until}.\n",
                "不限流量：每天前 {fast} 为高速流量，超出后降速至 {speed}，{until}。\n"
            )
        } else {
            say!(lang, "At most {fast} a day at full speed; after that {speed} {until}.\n", "每天最多 {fast} 高速流量，超出后降速至 {speed}，{until}。\n")
        };
    }
    out
}

/// The question customers ask first: does unused data carry over?
pub fn carries_over(w: &Words) -> String {
    let plan = w.plan;
    let (lang, noun) = (w.lang, &w.noun);
    let mut out = match plan.period {
        Period::Monthly(_) => say!(lang, "\nDoes unused data carry over to next month?\n", "\n流量可以结转到下个月吗？\n"),
        Period::Days(days) => {
            say!(lang, "\nDoes unused data carry over to the next {days}-day period?\n", "\n未用完的流量可以结转到下一个 {days} 天周期吗？\n")
        }
        Period::Once(_) => say!(lang, "\nDoes unused data carry over?\n", "\n未用完的流量可以结转吗？\n"),
    };
    let next = next_period(w);
    let rollover = match (&plan.rollover, &plan.period) {
        (_, Period::Once(_)) => {
            out += &say!(lang, "No. This is a one-time pass: whatever is left when it ends expires.\n", "不可以。这是一次性套餐，到期时剩余流量自动清零。\n");
            return out;
        }
        (None, _) => {
            let end = if w.is_monthly() { "月底" } else { "周期结束时" };
            out += &say!(
                lang,
                "No. Data you haven't used by the end of each {noun} expires; the next {noun} starts fresh.\n",
                "不可以。未用完的流量在{end}清零，{next}重新计算。\n"
            );
            return out;
        }
        (Some(rollover), _) => rollover,
    };
    let kinds: Vec<String> = rollover.from.iter().filter(|kind| **kind != Kind::CARRY).map(|kind| w.kind(*kind)).collect();
    let what = match (kinds.is_empty(), lang) {
        (true, _) => say!(lang, "Carried-over data", "结转流量"),
        (false, Lang::En) => capitalize(&list(&kinds, lang)),
        (false, Lang::Zh) => list(&kinds, lang),
    };
    let end = if w.is_monthly() { "当月月底" } else { "本周期结束时" };
    out += &say!(lang, "Yes. {what} you don't use by the end of the {noun} carries over into the next one.", "可以。{what}{end}未用完的部分，自动结转到{next}。");
    if let Some(max) = rollover.max_per_period_bytes {
        let max = w.data(max);
        out += &say!(lang, " At most {max} carries over at each {noun} end.", "每次最多结转 {max}。");
    }
    if let Some(cap) = rollover.cap_bytes {
        let cap = w.data(cap);
        out += &say!(
            lang,
            " You can hold at most {cap} of carried-over data at a time; anything above that is forfeited.",
            "结转流量最多累计 {cap}，超出部分作废。"
        );
    }
    out.push('\n');
    let stays: Vec<String> =
        ["gift", "addon"].iter().filter_map(|name| Kind::parse(name).ok()).filter(|kind| !plan.rolls(*kind)).map(|kind| w.kind(kind)).collect();
    if !stays.is_empty() {
        let stays = list(&stays, lang);
        let stays_en = capitalize(&stays);
        out += &say!(lang, "{stays_en} don't carry over; they expire on their own date.\n", "{stays}不参与结转，按各自的有效期到期。\n");
    }
    out
}

/// How long carried-over data lasts; asked only of plans that carry.
pub fn carried_lasts(w: &Words) -> String {
    let plan = w.plan;
    let (lang, noun) = (w.lang, &w.noun);
    let Some(rollover) = plan.rollover.as_ref().filter(|_| !plan.is_once()) else { return String::new() };
    let out = say!(lang, "\nHow long does carried-over data last?\n", "\n结转的流量能用多久？\n");
    let lasts = match (rollover.expires_after, w.is_monthly()) {
        (Length::Periods(1), true) => say!(lang, "Until the end of the following {noun}.", "可用至次月月底。"),
        (Length::Periods(1), false) => say!(lang, "Until the end of the following {noun}.", "可用至下一个周期结束。"),
        (Length::Periods(n), true) => {
            let nth = ordinal_en(n);
            say!(lang, "For {n} more {noun}s: it expires at the end of the {nth} {noun} after it carried over.", "结转后可再用 {n} 个月。")
        }
        (Length::Periods(n), false) => {
            let nth = ordinal_en(n);
            say!(lang, "For {n} more {noun}s: it expires at the end of the {nth} {noun} after it carried over.", "结转后可再用 {n} 个周期。")
        }
        (Length::Months(n), _) => {
            let s = plural(i64::from(n));
            say!(lang, "For {n} month{s} from the day it carries over.", "自结转之日起 {n} 个月内有效。")
        }
        _ => say!(lang, "It doesn't expire while your plan is active.", "套餐有效期间不会过期。"),
    };
    // Carried data that never expires has no second carry to speak of.
    let again = if rollover.expires_after == Length::Never {
        String::new()
    } else if plan.rolls(Kind::CARRY) {
        say!(lang, " Carried-over data that is still unused can carry over again.", "结转流量到期仍未用完的，可以再次结转。")
    } else {
        say!(lang, " It carries over only once: whatever is left of it then expires.", "结转流量只能结转一次，到期未用完将自动清零。")
    };
    out + &lasts + &again + "\n"
}

/// Which data is used first.
pub fn used_first(w: &Words) -> String {
    let out = say!(w.lang, "\nWhich data is used first?\n", "\n先扣哪部分流量？\n");
    out + &order_sentence(w) + "\n"
}

/// The plan's order of use in one sentence.
pub fn order_sentence(w: &Words) -> String {
    let lang = w.lang;
    let names: Vec<String> = w.plan.order.iter().map(|kind| w.kind(*kind)).collect();
    match (lang, names.as_slice()) {
        (_, []) => say!(lang, "Whatever expires first is used first.", "先到期的流量先使用。"),
        (Lang::En, names) => format!("{}, then any other data, earliest expiry first.", capitalize(&names.join(", then "))),
        (Lang::Zh, [only]) => format!("先扣减{only}，再按到期时间先后使用其他流量。"),
        (Lang::Zh, [first, second]) => format!("先扣减{first}，用完后再使用{second}，最后按到期时间先后使用其他流量。"),
        (Lang::Zh, many) => format!("依次扣减：{}，最后按到期时间先后使用其他流量。", many.join("、")),
    }
}

/// What happens when the data runs out.
pub fn runs_out(w: &Words) -> String {
    let plan = w.plan;
    let (lang, noun) = (w.lang, &w.noun);
    let out = say!(lang, "\nWhat happens when the data runs out?\n", "\n流量用完后会怎样？\n");
    if plan.is_unlimited() {
        return out
            + &say!(
                lang,
                "It doesn't run out: past the day's full-speed data you stay online at reduced speed, at no extra charge.\n",
                "不会用完：当天高速流量用完后仍可低速上网，不额外收费。\n"
            );
    }
    let next_period = next_period(w);
    let until = if plan.is_once() { say!(lang, "the pass ends", "套餐到期") } else { say!(lang, "the next {noun} starts", "{next_period}开始") };
    let answer = match plan.exhausted {
        Exhausted::Block => say!(lang, "You can't use data until {until} or you add data.", "将暂停上网，直到{until}或您加购流量。"),
        Exhausted::Throttle { throttle_kbps: kbps } => say!(
            lang,
            "Your speed is reduced to {kbps} kbps until {until} or you add data. There is no extra charge.",
            "网速降至 {kbps} kbps，直到{until}或您加购流量，不额外收费。"
        ),
        Exhausted::ExtraBlocks { block_bytes, price_minor } => {
            let (block, price) = (w.data(block_bytes), w.money(price_minor));
            say!(
                lang,
                "An extra {block} is added automatically for {price} each time you run out. Extra data lasts until the end of the {noun} and doesn't carry over.",
                "每次用完将自动加购 {block} 流量包，每个 {price}。流量包当{noun}有效，不参与结转。"
            )
        }
        Exhausted::PayAsYouGo { unit_bytes, price_minor } => {
            let (unit, price) = (w.data(unit_bytes), w.money(price_minor));
            say!(
                lang,
                "You keep using data at {price} per {unit}; each {noun}'s extra use is rounded up to a whole {unit}.",
                "可继续使用，超出部分按每 {unit} {price} 计费，不足 {unit} 按 {unit} 计。"
            )
        }
    };
    out + &answer + "\n"
}

/// When the plan starts and ends, and how it renews.
pub fn starts_and_ends(w: &Words) -> String {
    let plan = w.plan;
    let (lang, noun, zone, price) = (w.lang, &w.noun, &w.zone, &w.price);
    let mut out = say!(lang, "\nWhen does it start and end?\n", "\n套餐何时生效、何时结束？\n");
    out += &match plan.starts {
        Starts::Purchase => say!(lang, "The plan starts when you buy it.", "购买后立即生效。"),
        Starts::Install => say!(lang, "The plan starts when you install the eSIM.", "安装 eSIM 后生效。"),
        Starts::FirstUse => say!(lang, "The plan starts when your eSIM first connects to a network.", "eSIM 首次连网时生效。"),
    };
    if let Some(within) = plan.activate_within
        && plan.starts != Starts::Purchase
    {
        let within = plain_length(within, lang);
        out += &say!(lang, " If it hasn't started within {within} of purchase, it lapses and can no longer be used.", "如购买后 {within} 内未生效，套餐将失效，无法再使用。");
    }
    out += &match plan.period {
        Period::Monthly(Anchor::Calendar) => {
            say!(lang, " Each month runs from 00:00 on the 1st to the end of the month's last day ({zone}).", "每个月从 1 日 00:00 起，至当月最后一天 24:00 止（{zone}）。")
        }
        Period::Monthly(Anchor::Start) => say!(
            lang,
            " Each month runs from 00:00 on the day of the month you started to the same day the next month ({zone}); in shorter months it turns on the last day.",
            "每个计费月从开通日 00:00 起，至下月同一日 00:00 止（{zone}）；下月没有这一天时，在当月最后一天切换。"
        ),
        Period::Days(days) => {
            say!(lang, " Each period lasts exactly {days} days ({days} × 24 hours) from the moment the plan starts.", "每个周期自生效时刻起，正好 {days} 天（{days}×24 小时）。")
        }
        Period::Once(Length::CalendarDays(n)) => {
            let s = plural(i64::from(n));
            say!(
                lang,
                " It lasts {n} calendar day{s}, counting the start day as day 1, and ends at midnight ({zone}).",
                "有效期 {n} 个自然日，生效当天算第 1 天，于最后一天 24:00（{zone}）结束。"
            )
        }
        Period::Once(valid) => {
            let valid = length(valid, lang);
            say!(lang, " It lasts {valid} from the moment it starts, to the minute.", "自生效时刻起 {valid} 有效，精确到分钟。")
        }
    };
    out += &match plan.period {
        Period::Once(_) => say!(lang, " One payment of {price}.\n", "\n"),
        Period::Monthly(Anchor::Calendar) => {
            say!(lang, " It renews every {noun} until you cancel; each {noun}'s {price} is charged at its start.\n", "套餐按月自动续订，每月费用在月初扣取（{price}）。\n")
        }
        Period::Monthly(Anchor::Start) => say!(
            lang,
            " It renews every {noun} until you cancel; each {noun}'s {price} is charged at its start.\n",
            "套餐按月自动续订，费用在每个计费月开始时扣取（{price}）。\n"
        ),
        Period::Days(_) => {
            say!(lang, " It renews every {noun} until you cancel; each {noun}'s {price} is charged at its start.\n", "套餐每 {noun}自动续订，费用在周期开始时扣取（{price}）。\n")
        }
    };
    out + &small_print(w)
}

/// What follows the plan's shape: proration, where it works, and what a plan
/// change does.
fn small_print(w: &Words) -> String {
    let plan = w.plan;
    let (lang, noun) = (w.lang, &w.noun);
    let mut out = String::new();
    if plan.prorate_daily {
        out += &say!(
            lang,
            "If you start partway through a month, the first month's fee and data are prorated by day, counting the start day.\n",
            "月中开通时，首月费用和流量按剩余天数折算（开通当天计入）。\n"
        );
    }
    if let Some(countries) = &plan.coverage {
        let codes: Vec<&str> = countries.iter().map(|country| country.as_str()).collect();
        let (comma, dun) = (codes.join(", "), codes.join("、"));
        out += &say!(lang, "Works in: {comma}. Data used elsewhere is not allowed.\n", "适用地区：{dun}。在其他地区无法使用。\n");
    }
    out += &match plan.rollover.as_ref().map(|rollover| rollover.on_plan_change) {
        Some(OnPlanChange::Forfeit) => say!(
            lang,
            "A plan change takes effect at the next {noun}; carried-over data and this {noun}'s leftover are then lost.\n",
            "变更套餐从下个{noun}生效；届时结转流量和当{noun}剩余流量不再保留。\n"
        ),
        Some(OnPlanChange::Keep) => say!(
            lang,
            "A plan change takes effect at the next {noun}; carried-over data keeps its expiry date.\n",
            "变更套餐从下个{noun}生效；已结转的流量保留原有效期。\n"
        ),
        None if !plan.is_once() => say!(lang, "A plan change takes effect at the next {noun}.\n", "变更套餐从下个{noun}生效。\n"),
        None => String::new(),
    };
    out
}

/// "下个月" or "下一个周期": the period after this one, in Chinese.
fn next_period(w: &Words) -> &'static str {
    if w.is_monthly() { "下个月" } else { "下一个周期" }
}

/// "Can I buy more data?": the add-ons sold for the plan.
pub fn addons(w: &Words, addons: &[&rollover_core::Addon]) -> String {
    if addons.is_empty() {
        return String::new();
    }
    let (lang, noun) = (w.lang, &w.noun);
    let mut out = say!(lang, "\nCan I buy more data?\n", "\n可以加购流量吗？\n");
    for addon in addons {
        let (name, data, price, id) = (&addon.name, w.data(addon.bytes), w.money(addon.price_minor), &addon.id);
        let lasts = match addon.expires {
            rollover_core::plan::AddonExpiry::PeriodEnd => say!(lang, "until the end of the {noun} it is bought in", "有效至购买当期结束"),
            rollover_core::plan::AddonExpiry::Never => say!(lang, "with no expiry", "永不过期"),
            rollover_core::plan::AddonExpiry::After(length) => {
                let length = crate::words::length(length, lang);
                say!(lang, "for {length} from when it is bought", "自购买起{length}内有效")
            }
        };
        out += &say!(lang, "- {name} ({id}): {data} more for {price}, {lasts}.\n", "- {name}（{id}）：加 {data}，{price}，{lasts}。\n");
    }
    out
}
