//! Sentences with machine-readable parts: a template written in the program
//! for each language, and the values put into it, each marked up as what it
//! is (`<time>`, `<data>`) and escaped.

use rollover_core::Instant;
use rollover_explain::words::{Words, end_text, time_on_day};

use crate::html::Html;

/// A value in a sentence.
pub enum Part {
    /// An exclusive end, as people read it: "the end of May 31" / "5月31日 24:00".
    End(Instant),
    /// An instant: "00:00 on June 1" / "6月1日 00:00".
    At(Instant),
    /// An amount of data, in the plan's units.
    Data(u64),
    /// Plain words.
    Text(String),
}

/// Writes `template` with `{0}`, `{1}`, ... replaced by `parts`.
pub fn sentence(h: &mut Html, w: &Words, template: &'static str, parts: &[Part]) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else { break };
        let Ok(index) = rest[open + 1..close].parse::<usize>() else { break };
        h.text(&rest[..open]);
        if let Some(part) = parts.get(index) {
            write_part(h, w, part);
        }
        rest = &rest[close + 1..];
    }
    h.text(rest);
}

pub fn write_part(h: &mut Html, w: &Words, part: &Part) {
    let zone = &w.plan.zone;
    match part {
        Part::End(at) => time(h, *at, &end_text(*at, zone, w.lang), w),
        Part::At(at) => time(h, *at, &time_on_day(*at, zone, w.lang), w),
        Part::Data(bytes) => data(h, *bytes, &w.data(*bytes)),
        Part::Text(text) => {
            h.text(text);
        }
    }
}

/// `<time datetime="RFC 3339">text</time>`, the instant as the API writes it.
pub fn time(h: &mut Html, at: Instant, text: &str, w: &Words) {
    h.element("time", &[("datetime", &at.to_rfc3339(&w.plan.zone))], text);
}

/// `<data value="BYTES">text</data>`.
pub fn data(h: &mut Html, bytes: u64, text: &str) {
    h.element("data", &[("value", &bytes.to_string())], text);
}

/// One template for each language, side by side.
pub fn pick(lang: rollover_explain::Lang, en: &'static str, zh: &'static str) -> &'static str {
    match lang {
        rollover_explain::Lang::En => en,
        rollover_explain::Lang::Zh => zh,
    }
}
