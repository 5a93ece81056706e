//! Text from a peer, made safe to show: what a server or client sends may
//! contain escape sequences, bells, carriage returns or invisible
//! characters that would take over a terminal or fool its reader.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Whether `c` shows as itself: not a control, format, private-use,
/// surrogate or unassigned character, nor a line or paragraph separator.
///
/// ```
/// assert!(plumbing::text::is_visible('ñ'));
/// assert!(!plumbing::text::is_visible('\u{200b}'));
/// assert!(!plumbing::text::is_visible('\u{1b}'));
/// ```
pub fn is_visible(c: char) -> bool {
    match c.general_category_group() {
        GeneralCategoryGroup::Other => false,
        GeneralCategoryGroup::Separator => c == ' ',
        _ => true,
    }
}

/// One line of peer text with every character that is not visible written
/// as an escape (`\u{1b}`, `\n`, ...), so it prints as one harmless line.
///
/// ```
/// let shown = plumbing::text::escape_line("busy\u{1b}[2J\r\u{7}");
/// assert_eq!(shown, "busy\\u{1b}[2J\\r\\u{7}");
/// ```
pub fn escape_line(text: &str) -> String {
    escape(text, false)
}

/// Peer text of several lines: as [`escape_line`], but newlines and tabs
/// are kept.
///
/// ```
/// assert_eq!(plumbing::text::escape_text("a\n\tb\u{1b}"), "a\n\tb\\u{1b}");
/// ```
pub fn escape_text(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, keep_layout: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_visible(c) || (keep_layout && matches!(c, '\n' | '\t')) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}

/// A string as Python's `repr` writes it: single quotes, or double quotes
/// when the text holds a `'` and no `"`; backslash, the quote, `\n`, `\r`
/// and `\t` escaped; every other character that is not printable (by
/// Python's `str.isprintable`, which [`is_visible`] follows) as `\xhh`,
/// `\uhhhh` or `\Uhhhhhhhh`. The chapter's programs print with it, Celery
/// puts it in `argsrepr`, and serpent (Pyro4) sends strings in it.
///
/// ```
/// use plumbing::text::python_repr;
/// assert_eq!(python_repr("Buku 1"), "'Buku 1'");
/// assert_eq!(python_repr("it's"), "\"it's\"");
/// assert_eq!(python_repr("a'b\"c\n"), "'a\\'b\"c\\n'");
/// assert_eq!(python_repr("\u{7}\u{200b}ñ"), "'\\x07\\u200bñ'");
/// ```
pub fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_visible(c) => {
                let code = c as u32;
                let escaped = match code {
                    0..=0xff => format!("\\x{code:02x}"),
                    0x100..=0xffff => format!("\\u{code:04x}"),
                    _ => format!("\\U{code:08x}"),
                };
                out.push_str(&escaped);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}
