//! Text as Python shows it, for the protocols that carry Python's own
//! representations: serpent (Pyro4) sends strings as `repr` literals, and
//! Celery writes a task's arguments as `argsrepr`, so a Rust peer must
//! write them exactly as Python would.
//!
//! - [`is_printable`]: Python's `str.isprintable` for one character;
//! - [`repr`]: Python's `repr()` of a `str`.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Whether `c` shows as itself, as Python's `str.isprintable` decides:
/// not a control, format, private-use, surrogate or unassigned character,
/// nor a separator other than the space.
///
/// ```
/// assert!(python_text::is_printable('ñ'));
/// assert!(!python_text::is_printable('\u{200b}'));
/// assert!(!python_text::is_printable('\u{1b}'));
/// ```
pub fn is_printable(c: char) -> bool {
    match c.general_category_group() {
        GeneralCategoryGroup::Other => false,
        GeneralCategoryGroup::Separator => c == ' ',
        _ => true,
    }
}

/// A string as Python's `repr` writes it: single quotes, or double quotes
/// when the text holds a `'` and no `"`; backslash, the quote, `\n`, `\r`
/// and `\t` escaped; every other character that is not printable (by
/// Python's `str.isprintable`, which [`is_printable`] follows) as `\xhh`,
/// `\uhhhh` or `\Uhhhhhhhh`. The chapter's programs print with it, Celery
/// puts it in `argsrepr`, and serpent (Pyro4) sends strings in it.
///
/// ```
/// use python_text::repr;
/// assert_eq!(repr("Buku 1"), "'Buku 1'");
/// assert_eq!(repr("it's"), "\"it's\"");
/// assert_eq!(repr("a'b\"c\n"), "'a\\'b\"c\\n'");
/// assert_eq!(repr("\u{7}\u{200b}ñ"), "'\\x07\\u200bñ'");
/// ```
pub fn repr(s: &str) -> String {
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
            c if !is_printable(c) => {
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
