//! Plain-language explanations of plans, in English and Chinese, answering
//! first what customers ask, with a worked example whose numbers the engine
//! itself computes; and readable ledger lines for support staff.
//!
//! Each question customers ask has a function of its own in `questions.rs`,
//! and each sentence is written in both languages side by side with `say!`.
//! Chinese is written as a Chinese speaker would say it, not translated word
//! for word, so the two sentences often differ in shape.

/// One sentence in each language, side by side; only the one asked for is
/// formatted. The `{name}` placeholders take locals of the caller.
macro_rules! say {
    ($lang:expr, $en:literal, $zh:literal $(,)?) => {
        match $lang {
            $crate::Lang::En => format!($en),
            $crate::Lang::Zh => format!($zh),
        }
    };
}

mod example;
mod ledger;
mod questions;
pub mod words;

use rollover_core::plan::Plan;

pub use ledger::ledger_lines;

/// The answer to "does unused data carry over?" without its question: one
/// or two sentences, for catalogs and reseller listings.
pub fn carry_answer(plan: &Plan, lang: Lang) -> String {
    let section = questions::carries_over(&words::Words::new(plan, lang));
    let separator = if lang == Lang::En { " " } else { "" };
    section.lines().filter(|line| !line.trim().is_empty()).skip(1).collect::<Vec<_>>().join(separator)
}

/// The plan's order of use in one sentence ("Carried-over data, then plan
/// data, then any other data, earliest expiry first.").
pub fn order_sentence(plan: &Plan, lang: Lang) -> String {
    questions::order_sentence(&words::Words::new(plan, lang))
}

/// The add-ons sold for `plan`, a sentence each: what it adds, for how
/// much, and until when; empty when there are none.
pub fn explain_addons(plan: &Plan, addons: &[&rollover_core::Addon], lang: Lang) -> String {
    questions::addons(&words::Words::new(plan, lang), addons)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

/// Explains `plan` in `lang`: what it costs and holds, then the questions
/// customers ask, the carry-over one first, then a worked example.
pub fn explain_plan(plan: &Plan, lang: Lang) -> String {
    let example = example::compute(plan);
    let words = words::Words::new(plan, lang);
    let sections = [
        questions::headline(&words),
        questions::carries_over(&words),
        questions::carried_lasts(&words),
        questions::used_first(&words),
        questions::runs_out(&words),
        questions::starts_and_ends(&words),
        example::text(&words, &example),
    ];
    sections.concat()
}
