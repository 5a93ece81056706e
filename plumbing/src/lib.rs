//! The plumbing every example binary shares, written once.
//!
//! The examples (`socket_time`, `socket_file`, `rpc_*`, `celery_pages`) each
//! hold a whole pattern, so a student can read one folder. What is *not* the
//! pattern, but every binary needs, lives here, so that there is exactly one
//! copy of it and one policy:
//!
//! - [`cli`]: the `main` preamble (logging, a runtime, `error: <chain>` and
//!   the exit code) and the parsers for command-line values;
//! - [`shutdown`]: the signal a server stops on (Ctrl-C or SIGTERM);
//! - [`accept`]: the accept loop, with a connection limit, an idle timeout and
//!   one error policy;
//! - [`bench`](mod@bench): the closed-loop bench runner and its statistics;
//! - [`text`]: text from a peer made safe to print;
//! - [`tls`]: TLS settings from PEM files, and one line per handshake failure.
//!
//! The rule: a piece of code goes here only if two or more examples' binaries
//! need it and it says nothing about their protocols. What only tests need
//! lives in the `test_support` crate, a dev-dependency.

pub mod accept;
pub mod bench;
pub mod cli;
pub mod shutdown;
pub mod text;
pub mod tls;

/// An error with its causes, `outer: inner: innermost`, each cause once.
///
/// Some libraries print their cause inside their own message *and* return it
/// from `source()`; a cause whose text is already in what was printed is
/// skipped, so no message says the same thing twice.
///
/// ```
/// let io = std::io::Error::other("connection refused");
/// let err = anyhow::Error::new(io).context("cannot reach the broker");
/// assert_eq!(
///     plumbing::describe(err.as_ref()),
///     "cannot reach the broker: connection refused"
/// );
/// ```
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let err = Repeats(std::io::Error::other("disk full"));
        assert_eq!(describe(&err), "outer failed: disk full");
        let err = anyhow::Error::new(err).context("saving the book");
        assert_eq!(
            describe(err.as_ref()),
            "saving the book: outer failed: disk full"
        );
    }
}
