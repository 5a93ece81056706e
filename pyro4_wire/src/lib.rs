//! Pyro4 4.82's wire protocol (protocol version 48), in Rust: the message
//! frame, the serpent and JSON serializers, and a daemon and a proxy on
//! tokio streams, so that Rust programs and Python's Pyro4 can call each
//! other.
//!
//! Pyro4 is how the chapter's Python RPC programs talk: a 24-byte header
//! (magic `PYRO`, version, type, flags, sequence number, lengths, a
//! checksum), optional annotation chunks, then a payload in one of several
//! serializers. The default, and the one an unmodified Python client
//! insists on in replies, is *serpent*: a Python literal such as
//! `('obj_1','welcomeMessage',('Programming GO',),{})`, preceded by a
//! header line.
//!
//! - [`message`]: [`Message`] encodes and decodes frames, checking the
//!   magic, the version, the checksum and the lengths against a limit.
//! - [`serpent`]: [`Value`](serpent::Value), the Python values serpent carries, with a
//!   parser that accepts exactly the literals Python's `ast.literal_eval`
//!   would (and bounded nesting), and a writer that produces what Python's
//!   `serpent.dumps` produces for them.
//! - [`json`]: the same values in Pyro4's JSON.
//! - [`call`]: what payloads mean: a [`Call`], a [`PyroException`], and the
//!   [`Serializer`]s spoken (others are refused unread).
//! - [`uri`]: [`PyroUri`], `PYRO:objectid@host:port`.
//! - [`io`]: whole messages on an async stream, with limits and timeouts.
//! - [`daemon`]: the server side: serves a [`daemon::Object`] on a stream.
//! - [`proxy`]: the client side: a [`Proxy`] for one remote object.
//!
//! Every decoder here reads bytes from a peer, so none may panic, whatever
//! the bytes: they are fuzzed with proptest (`cargo test -p pyro4_wire`).
//!
//! ```
//! use pyro4_wire::{Message, MessageType, serpent::{self, Value}};
//!
//! let call = Value::Tuple(vec![
//!     Value::str("obj_1"),
//!     Value::str("welcomeMessage"),
//!     Value::Tuple(vec![Value::str("Programming GO")]),
//!     Value::Dict(vec![]),
//! ]);
//! let message = Message::new(MessageType::Invoke, 1, serpent::dumps(&call));
//! let bytes = message.encode();
//! let back = Message::decode(&bytes, 1 << 20).unwrap();
//! assert_eq!(serpent::loads(&back.payload).unwrap(), call);
//! ```

pub mod call;
pub mod correlation;
pub mod daemon;
pub mod io;
pub mod json;
pub mod marshal;
pub mod message;
pub mod proxy;
pub mod serpent;
pub mod uri;

pub use call::{Call, PyroException, Serializer};
pub use message::{Message, MessageType};
pub use proxy::{Proxy, ProxyError};
pub use uri::PyroUri;
