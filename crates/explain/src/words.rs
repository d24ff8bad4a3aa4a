//! The words the explanations are made of: names of zones, months, days,
//! amounts of money and data, kinds of data, lengths, in both languages.

use jiff::civil::Date;

use rollover_core::amount::format_human;
use rollover_core::names::Kind;
use rollover_core::plan::{Period, Plan};
use rollover_core::time::{Instant, Length, MICROS_PER_DAY, MICROS_PER_HOUR, Zone};

use crate::Lang;

/// The year the worked examples are set in; fixed so that explanations are
/// the same every time they are printed.
pub const EXAMPLE_YEAR: i16 = 2026;

/// What every sentence about one plan in one language needs.
pub struct Words<'a> {
    pub plan: &'a Plan,
    pub lang: Lang,
    /// The plan's zone as customers name it ("Beijing time").
    pub zone: String,
    /// One period of the plan: "month", "30-day period", "pass".
    pub noun: String,
    /// The plan's price with its currency.
    pub price: String,
}

impl<'a> Words<'a> {
    pub fn new(plan: &'a Plan, lang: Lang) -> Self {
        Words { plan, lang, zone: zone_label(&plan.zone, lang), noun: period_noun(plan, lang), price: money(plan, plan.price_minor, lang) }
    }

    pub fn data(&self, bytes: u64) -> String {
        format_human(bytes, self.plan.unit_base)
    }

    pub fn money(&self, minor: i64) -> String {
        money(self.plan, minor, self.lang)
    }

    pub fn kind(&self, kind: Kind) -> String {
        kind_words(kind, self.lang)
    }

    pub fn start(&self, at: Instant) -> String {
        start_text(at, &self.plan.zone, self.lang)
    }

    pub fn end(&self, at: Instant) -> String {
        end_text(at, &self.plan.zone, self.lang)
    }

    pub fn day(&self, at: Instant) -> String {
        day_name(self.plan.zone.date_of(at), self.lang)
    }

    pub fn month(&self, at: Instant) -> String {
        month_name(self.plan.zone.date_of(at), self.lang)
    }

    pub fn is_monthly(&self) -> bool {
        matches!(self.plan.period, Period::Monthly(_))
    }
}

pub fn zone_label(zone: &Zone, lang: Lang) -> String {
    const KNOWN: &[(&str, &str, &str)] = &[
        ("Asia/Shanghai", "Beijing time", "北京时间"),
        ("Asia/Chongqing", "Beijing time", "北京时间"),
        ("Asia/Hong_Kong", "Hong Kong time", "香港时间"),
        ("Asia/Macau", "Macau time", "澳门时间"),
        ("Asia/Taipei", "Taipei time", "台北时间"),
        ("Asia/Tokyo", "Tokyo time", "东京时间"),
        ("Asia/Seoul", "Seoul time", "首尔时间"),
        ("Asia/Singapore", "Singapore time", "新加坡时间"),
        ("Asia/Bangkok", "Bangkok time", "曼谷时间"),
        ("Europe/London", "UK time", "英国时间"),
        ("Europe/Paris", "Paris time", "巴黎时间"),
        ("Europe/Berlin", "Berlin time", "柏林时间"),
        ("America/New_York", "New York time", "纽约时间"),
        ("America/Los_Angeles", "Los Angeles time", "洛杉矶时间"),
        ("Australia/Sydney", "Sydney time", "悉尼时间"),
        ("UTC", "UTC", "UTC 时间"),
        ("Etc/UTC", "UTC", "UTC 时间"),
    ];
    let name = zone.name();
    match KNOWN.iter().find(|(known, _, _)| *known == name) {
        Some((_, en, zh)) => pick(lang, en, zh).to_string(),
        None => say!(lang, "{name} time", "{name} 时间"),
    }
}

fn pick<'s>(lang: Lang, en: &'s str, zh: &'s str) -> &'s str {
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

pub fn month_name(date: Date, lang: Lang) -> String {
    let (name, number) = (MONTHS[date.month() as usize - 1], date.month());
    say!(lang, "{name}", "{number}月")
}

/// A day as people write it; the year is added when it is not the example's.
pub fn day_name(date: Date, lang: Lang) -> String {
    let (name, month, day, year) = (MONTHS[date.month() as usize - 1], date.month(), date.day(), date.year());
    if year == EXAMPLE_YEAR { say!(lang, "{name} {day}", "{month}月{day}日") } else { say!(lang, "{name} {day}, {year}", "{year}年{month}月{day}日") }
}

/// An exclusive end shown the way people read it: a local midnight as the
/// end of the day before ("the end of November 30" / "11月30日 24:00"),
/// anything else as a time on a day.
pub fn end_text(at: Instant, zone: &Zone, lang: Lang) -> String {
    let date = zone.date_of(at);
    if zone.start_of(date) == at {
        let day = day_name(date.yesterday().expect("dates stay in range"), lang);
        say!(lang, "the end of {day}", "{day} 24:00")
    } else {
        time_on_day(at, zone, lang)
    }
}

/// A start, with its preposition in English: a local midnight as its day
/// ("on October 1" / "10月1日"), anything else as a time on a day ("at 15:00
/// on October 1" / "10月1日 15:00").
pub fn start_text(at: Instant, zone: &Zone, lang: Lang) -> String {
    let date = zone.date_of(at);
    if zone.start_of(date) == at {
        let day = day_name(date, lang);
        say!(lang, "on {day}", "{day}")
    } else {
        let time = time_on_day(at, zone, lang);
        say!(lang, "at {time}", "{time}")
    }
}

pub fn time_on_day(at: Instant, zone: &Zone, lang: Lang) -> String {
    let datetime = zone.tz().to_datetime(at.timestamp());
    let (hour, minute, day) = (datetime.hour(), datetime.minute(), day_name(datetime.date(), lang));
    say!(lang, "{hour:02}:{minute:02} on {day}", "{day} {hour:02}:{minute:02}")
}

pub fn money(plan: &Plan, minor: i64, lang: Lang) -> String {
    const ZH_NAMES: &[(&str, &str)] = &[
        ("CNY", "元"),
        ("USD", "美元"),
        ("EUR", "欧元"),
        ("GBP", "英镑"),
        ("AUD", "澳元"),
        ("HKD", "港元"),
        ("JPY", "日元"),
        ("KRW", "韩元"),
        ("SGD", "新加坡元"),
        ("TWD", "新台币"),
        ("MOP", "澳门元"),
        ("THB", "泰铢"),
    ];
    let amount = plan.currency.format(minor);
    let code = plan.currency.code();
    if lang == Lang::Zh
        && let Some((_, name)) = ZH_NAMES.iter().find(|(known, _)| *known == code)
    {
        return format!("{amount} {name}");
    }
    match plan.currency.symbol() {
        Some(symbol) => format!("{symbol}{amount}"),
        None => format!("{amount} {code}"),
    }
}

/// What customers call each kind of data.
pub fn kind_words(kind: Kind, lang: Lang) -> String {
    const BUILT_IN: &[(Kind, &str, &str)] = &[
        (Kind::ALLOWANCE, "plan data", "套餐内流量"),
        (Kind::CARRY, "carried-over data", "结转流量"),
        (Kind::EXTRA, "extra data blocks", "超额流量包"),
    ];
    const NAMED: &[(&str, &str, &str)] = &[
        ("gift", "gift data", "赠送流量"),
        ("addon", "add-on packs", "加油包"),
        ("boost", "data boosts", "加速包"),
        ("bonus", "bonus data", "奖励流量"),
        ("topup", "top-up data", "充值流量"),
    ];
    if let Some((_, en, zh)) = BUILT_IN.iter().find(|(known, _, _)| *known == kind) {
        return pick(lang, en, zh).to_string();
    }
    let name = kind.name();
    match NAMED.iter().find(|(known, _, _)| *known == name) {
        Some((_, en, zh)) => pick(lang, en, zh).to_string(),
        None => say!(lang, "\"{name}\" data", "“{name}”流量"),
    }
}

/// The words for one period of the plan: "month", "30-day period", or the
/// pass itself.
pub fn period_noun(plan: &Plan, lang: Lang) -> String {
    match plan.period {
        Period::Monthly(_) => pick(lang, "month", "月").to_string(),
        Period::Days(days) => say!(lang, "{days}-day period", "{days} 天周期"),
        Period::Once(_) => pick(lang, "pass", "有效期").to_string(),
    }
}

/// A length; exact days also say their hours, so that "7 days" is not read
/// as 7 calendar days.
pub fn length(length: Length, lang: Lang) -> String {
    match length {
        Length::Exact(micros) if micros % MICROS_PER_DAY == 0 => {
            let days = micros / MICROS_PER_DAY;
            let (s, hours) = (plural(days), days * 24);
            say!(lang, "{days} day{s} ({hours} hours)", "{days} 天（{hours} 小时）")
        }
        other => plain_length(other, lang),
    }
}

/// A length without the hours of exact days.
pub fn plain_length(length: Length, lang: Lang) -> String {
    match (lang, length) {
        (Lang::En, other) => other.to_string(),
        (Lang::Zh, Length::Exact(micros)) if micros % MICROS_PER_DAY == 0 => format!("{} 天", micros / MICROS_PER_DAY),
        (Lang::Zh, Length::Exact(micros)) => format!("{} 小时", micros / MICROS_PER_HOUR),
        (Lang::Zh, Length::CalendarDays(n)) => format!("{n} 个自然日"),
        (Lang::Zh, Length::Months(n)) => format!("{n} 个月"),
        (Lang::Zh, Length::Periods(n)) => format!("{n} 个周期"),
        (Lang::Zh, Length::Never) => "长期".to_string(),
    }
}

/// A list as each language writes it: "a, b and c" / "a和b和c".
pub fn list(items: &[String], lang: Lang) -> String {
    match (lang, items) {
        (_, []) => String::new(),
        (_, [one]) => one.clone(),
        (Lang::En, [rest @ .., last]) => format!("{} and {last}", rest.join(", ")),
        (Lang::Zh, all) => all.join("和"),
    }
}

pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

pub fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// 1st, 2nd, 3rd, 4th, 11th, 21st.
pub fn ordinal_en(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        let cases = [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"), (21, "21st"), (112, "112th")];
        for (n, expected) in cases {
            assert_eq!(ordinal_en(n), expected);
        }
    }

    #[test]
    fn lists() {
        let items: Vec<String> = ["gift data", "add-on packs", "bonus data"].iter().map(|s| s.to_string()).collect();
        assert_eq!(list(&items, Lang::En), "gift data, add-on packs and bonus data");
        assert_eq!(list(&items[..1], Lang::En), "gift data");
        assert_eq!(list(&["赠送流量".to_string(), "加油包".to_string()], Lang::Zh), "赠送流量和加油包");
    }
}
