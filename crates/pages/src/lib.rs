//! The web pages, rendered on the server as HTML that works without
//! JavaScript: the customer page (`customer.rs`) and the page a refused link
//! gets (`refused.rs`). They take the service's own values (the balance, the
//! ledger, the engine's projection) and never compute a balance themselves.
//!
//! Markup is written with [`html::Html`], which escapes every value that is
//! not program text. Every instant shown is inside `<time datetime>` with
//! the exact RFC 3339 instant the API gives, and every amount of data inside
//! `<data value>` with its bytes, so that tests and assistive tools can read
//! them. Sentences are written in English and Chinese side by side.

pub mod console;
pub mod customer;
pub mod html;
mod refused;
mod sentence;

pub use customer::{CustomerPage, customer_page};
pub use refused::{Refusal, refused_page};
pub use rollover_explain::Lang;
pub use sentence::pick;

/// The style sheet every page links to (`/assets/site.css`).
pub const STYLE: &str = include_str!("../assets/site.css");

/// The pages' icon (`/assets/icon.svg`, and `/favicon.ico` for browsers
/// that ask there).
pub const ICON: &str = include_str!("../assets/icon.svg");

/// The `<head>` lines every page shares: the style sheet and the icon.
pub(crate) const HEAD_LINKS: &str = "<link rel=\"stylesheet\" href=\"/assets/site.css\"><link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">";

/// The language a visitor asked for: `zh` for any `zh*` in
/// `Accept-Language` before an English tag, else English.
pub fn lang_of_accept(accept_language: &str) -> Lang {
    for tag in accept_language.split(',') {
        let tag = tag.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if tag.starts_with("zh") {
            return Lang::Zh;
        }
        if tag.starts_with("en") {
            return Lang::En;
        }
    }
    Lang::En
}

/// `lang` in a query or a cookie: `en` or `zh`.
pub fn lang_of_code(code: &str) -> Option<Lang> {
    match code {
        "en" => Some(Lang::En),
        "zh" | "zh-CN" | "zh-cn" => Some(Lang::Zh),
        _ => None,
    }
}

pub fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "en",
        Lang::Zh => "zh-CN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_chinese_for_any_zh() {
        let cases = [
            ("zh-CN,zh;q=0.9,en;q=0.8", Lang::Zh),
            ("zh-TW", Lang::Zh),
            ("en-US,en;q=0.9,zh-CN;q=0.8", Lang::En),
            ("fr-FR, zh-Hant;q=0.5", Lang::Zh),
            ("fr", Lang::En),
            ("", Lang::En),
        ];
        for (header, lang) in cases {
            assert_eq!(lang_of_accept(header), lang, "{header}");
        }
    }
}
