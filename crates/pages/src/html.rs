//! An HTML writer that cannot be made to inject markup: element and
//! attribute names and fixed markup are `&'static str` (written by us, in
//! the program text), and every value that comes from data is escaped as it
//! is written. There is no way to write a runtime string unescaped.

/// A document or fragment being written.
#[derive(Default)]
pub struct Html {
    out: String,
}

impl Html {
    pub fn new() -> Html {
        Html { out: String::with_capacity(16 << 10) }
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// Fixed markup written in the program: `<!doctype html>`, `<br>`.
    pub fn markup(&mut self, markup: &'static str) -> &mut Html {
        self.out.push_str(markup);
        self
    }

    /// Text, escaped for element content.
    pub fn text(&mut self, text: &str) -> &mut Html {
        escape_into(&mut self.out, text);
        self
    }

    /// `<tag a="v" ...>`, the values escaped for attributes.
    pub fn open(&mut self, tag: &'static str, attributes: &[(&'static str, &str)]) -> &mut Html {
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attributes {
            self.out.push(' ');
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('>');
        self
    }

    pub fn close(&mut self, tag: &'static str) -> &mut Html {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag ...>text</tag>`.
    pub fn element(&mut self, tag: &'static str, attributes: &[(&'static str, &str)], text: &str) -> &mut Html {
        self.open(tag, attributes).text(text).close(tag)
    }

    /// Writes what `fragment` writes, for pieces that build themselves.
    pub fn with(&mut self, fragment: impl FnOnce(&mut Html)) -> &mut Html {
        fragment(self);
        self
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'`: safe in element content and in
/// quoted attribute values alike. Control characters other than tab and
/// newline are dropped: they have no business on a page.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_never_becomes_markup() {
        let mut html = Html::new();
        html.open("a", &[("href", "/x?a=1&b=\"2\"")]).text("<script>alert('x')</script>\u{0}").close("a");
        assert_eq!(html.finish(), "<a href=\"/x?a=1&amp;b=&quot;2&quot;\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</a>");
    }
}
