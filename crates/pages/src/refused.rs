//! The page a customer link that cannot be honoured gets: invalid,
//! tampered with or expired. It says so in the visitor's language and
//! shows nothing of any subscription.

use crate::html::Html;
use crate::sentence::pick;
use rollover_explain::Lang;

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed, or its signature does not match.
    Invalid,
    Expired,
    /// Its subscription no longer exists.
    Gone,
    /// Its subscription's links are over their rate; retry shortly.
    TooMany,
}

pub fn refused_page(lang: Lang, why: Refusal) -> String {
    let (title, text) = match why {
        Refusal::Invalid => (
            pick(lang, "This link does not work", "此链接无效"),
            pick(lang, "The link is incomplete or has been changed. Ask your provider for a new link to your data page.", "链接不完整或已被修改。请向服务商索取新的流量查询链接。"),
        ),
        Refusal::Expired => (
            pick(lang, "This link has expired", "此链接已过期"),
            pick(lang, "Links to your data page last for a limited time. Ask your provider for a new one.", "流量查询链接有有效期，请向服务商索取新的链接。"),
        ),
        Refusal::Gone => (pick(lang, "Nothing to show", "没有可显示的内容"), pick(lang, "This link's plan no longer exists. Ask your provider for help.", "此链接对应的套餐已不存在，请联系服务商。")),
        Refusal::TooMany => (pick(lang, "Too many requests", "请求过于频繁"), pick(lang, "This page was opened too often just now. Wait a moment and reload it.", "页面刷新过于频繁，请稍候再试。")),
    };
    let mut h = Html::new();
    h.markup("<!doctype html>\n");
    h.open("html", &[("lang", crate::lang_code(lang))]);
    h.markup("<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><meta name=\"robots\" content=\"noindex\">");
    h.element("title", &[], title);
    h.markup(crate::HEAD_LINKS).markup("</head><body><main>");
    h.element("h1", &[], title);
    h.element("p", &[], text);
    h.markup("</main></body></html>\n");
    h.finish()
}
