//! Pyro4's correlation id: one 128-bit id (a UUID) that follows a request
//! through every call made on its behalf, as `Pyro4.current_context.
//! correlation_id` does in Python.
//!
//! It travels as the message annotation `CORR` (the UUID's 16 bytes). A
//! daemon takes it from each request (or makes a new one, as Python's
//! does), answers with it, and runs the object's method within it
//! ([`scope`]); every [`Proxy`](crate::Proxy) call made there sends it on
//! ([`current`]). So a ring of servers, Python and Rust mixed, keeps the
//! client's id from hop to hop. Between Rust hops over tarpc the same id
//! rides in tarpc's trace id (`rpc_naming::client::deadline_in`).
//!
//! ```
//! use pyro4_wire::correlation;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! assert_eq!(correlation::current(), None);
//! let seen = correlation::scope(Some(7), async { correlation::current() }).await;
//! assert_eq!(seen, Some(7));
//! # }
//! ```

use std::future::Future;

use crate::message::Message;

/// The annotation key.
pub const ANNOTATION: [u8; 4] = *b"CORR";

tokio::task_local! {
    static CURRENT: u128;
}

/// The correlation id of the request being handled, if any.
pub fn current() -> Option<u128> {
    CURRENT.try_with(|id| *id).ok()
}

/// Runs `work` with `id` as the current correlation id (without one, as it
/// is).
pub async fn scope<F: Future>(id: Option<u128>, work: F) -> F::Output {
    match id {
        Some(id) => CURRENT.scope(id, work).await,
        None => work.await,
    }
}

/// The correlation id `message` carries: a `CORR` annotation of 16 bytes.
pub fn of(message: &Message) -> Option<u128> {
    message
        .annotations
        .iter()
        .find(|(key, _)| *key == ANNOTATION)
        .and_then(|(_, data)| <[u8; 16]>::try_from(data.as_slice()).ok())
        .map(u128::from_be_bytes)
}

/// The `CORR` annotation for `id`.
pub fn annotation(id: u128) -> ([u8; 4], Vec<u8>) {
    (ANNOTATION, id.to_be_bytes().to_vec())
}

/// A new id, a random (version 4) UUID, as Python's daemon makes for a
/// request that carries none.
pub fn fresh() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageType;

    #[test]
    fn only_a_sixteen_byte_corr_annotation_is_an_id() {
        let mut message = Message::new(MessageType::Invoke, 1, Vec::new());
        assert_eq!(of(&message), None);
        message.annotations.push((ANNOTATION, vec![1; 15]));
        assert_eq!(of(&message), None);
        message.annotations = vec![(*b"XXXX", vec![0; 16]), annotation(42)];
        assert_eq!(of(&message), Some(42));
    }
}
