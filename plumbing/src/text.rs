//! Text from a peer, made safe to show: what a server or client sends may
//! contain escape sequences, bells, carriage returns or invisible
//! characters that would take over a terminal or fool its reader.

use python_text::is_printable;

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
        if is_printable(c) || (keep_layout && matches!(c, '\n' | '\t')) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}
