//! Text as Python shows it, for the protocols that carry Python's own
//! representations: serpent (Pyro4) sends strings as `repr` literals, and
//! Celery writes a task's arguments as `argsrepr`, so a Rust peer must
//! write them exactly as Python would.
//!
//! - [`is_printable`]: Python's `str.isprintable` for one character;
//! - [`repr`]: Python's `repr()` of a `str`;
//! - [`bind`]: how CPython binds a call's arguments to parameters, and its
//!   `TypeError` messages when they do not fit.

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

/// Where a parameter's value comes from in a call, once bound (see
/// [`bind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The positional argument at this index.
    Positional(usize),
    /// The keyword argument at this index.
    Keyword(usize),
}

/// Binds a call of `positional` positional arguments and the keyword
/// arguments `keywords` to the parameters `params` of the Python function
/// `function` (none with a default), as CPython does: one [`Source`] per
/// parameter, in order, or the message of the `TypeError` CPython raises,
/// word for word. For a method, `function` is its qualified name
/// (`Server.welcomeMessage`) and `self` is not counted.
///
/// ```
/// use python_text::{Source, bind};
/// assert_eq!(bind("add", &["x", "y"], 1, &["y"]), Ok(vec![Source::Positional(0), Source::Keyword(0)]));
/// assert_eq!(bind("add", &["x", "y"], 0, &[]).unwrap_err(),
///            "add() missing 2 required positional arguments: 'x' and 'y'");
/// ```
pub fn bind(
    function: &str,
    params: &[&str],
    positional: usize,
    keywords: &[&str],
) -> Result<Vec<Source>, String> {
    // A method counts `self` in what it takes and in what it was given.
    let own = usize::from(function.contains('.'));
    if positional > params.len() {
        let takes = params.len() + own;
        let takes_word = if takes == 1 { "argument" } else { "arguments" };
        let given = positional + own;
        let given_word = if given == 1 { "was" } else { "were" };
        return Err(format!(
            "{function}() takes {takes} positional {takes_word} but {given} {given_word} given"
        ));
    }
    let mut bound: Vec<Option<Source>> = (0..params.len())
        .map(|i| (i < positional).then_some(Source::Positional(i)))
        .collect();
    for (index, key) in keywords.iter().enumerate() {
        let Some(slot) = params.iter().position(|p| p == key) else {
            return Err(format!(
                "{function}() got an unexpected keyword argument '{key}'"
            ));
        };
        if bound[slot].replace(Source::Keyword(index)).is_some() {
            return Err(format!(
                "{function}() got multiple values for argument '{key}'"
            ));
        }
    }
    let missing: Vec<String> = params
        .iter()
        .zip(&bound)
        .filter(|(_, source)| source.is_none())
        .map(|(name, _)| format!("'{name}'"))
        .collect();
    if !missing.is_empty() {
        let word = if missing.len() == 1 {
            "argument"
        } else {
            "arguments"
        };
        let names = match missing.as_slice() {
            [one] => one.clone(),
            [first, second] => format!("{first} and {second}"),
            [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
            [] => String::new(),
        };
        return Err(format!(
            "{function}() missing {} required positional {word}: {names}",
            missing.len()
        ));
    }
    Ok(bound.into_iter().flatten().collect())
}
