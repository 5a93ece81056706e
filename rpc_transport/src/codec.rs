//! The server's decoder of tarpc requests, which no value from the wire can
//! make panic.
//!
//! tarpc sends a request's deadline as a duration from now and turns it back
//! into an instant with `Instant::now() + duration`, which panics for a
//! duration of about 10^8 s or more: one malformed request would kill the
//! connection's task. This decoder caps the deadline's seconds, which sit
//! at a known place at the front of a request frame (bincode, tarpc's
//! options: the variant, then the seconds as a varint), at
//! [`MAX_DEADLINE`], and then decodes the frame exactly as tarpc does. A
//! frame is only copied when its deadline is capped.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use bincode::Options;
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tarpc::{ClientMessage, Response};

/// The longest deadline a server grants a request, to the second: a client
/// that asks for more (any amount, up to `u64::MAX` seconds) gets this.
pub const MAX_DEADLINE: Duration = Duration::from_secs(30);

fn invalid(err: bincode::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// Decodes one request frame as tarpc's bincode does, with the deadline
/// clamped to [`MAX_DEADLINE`] from now. Never panics, whatever the bytes.
///
/// ```
/// use rpc_transport::codec::{MAX_DEADLINE, decode_request};
/// // A request whose deadline is u64::MAX seconds away (tarpc would panic).
/// let mut frame = vec![0u8];          // variant: Request
/// frame.push(0xfd);                   // deadline secs: a varint u64 follows...
/// frame.extend(u64::MAX.to_le_bytes()); // ...u64::MAX
/// frame.push(0);                      // deadline nanos
/// frame.extend([0u8; 16]);            // trace id
/// frame.extend([0, 0]);               // span id, sampling decision
/// frame.push(7);                      // request id; the message, (), takes no bytes
/// let message = decode_request::<()>(&frame).unwrap();
/// let tarpc::ClientMessage::Request(request) = message else { panic!() };
/// assert!(request.context.deadline <= std::time::Instant::now() + MAX_DEADLINE);
/// assert!(request.context.deadline > std::time::Instant::now() + MAX_DEADLINE / 2);
/// ```
pub fn decode_request<Req: DeserializeOwned>(frame: &[u8]) -> io::Result<ClientMessage<Req>> {
    let capped = cap_deadline(frame);
    bincode::DefaultOptions::new()
        .deserialize(capped.as_deref().unwrap_or(frame))
        .map_err(invalid)
}

/// A copy of a request `frame` with its deadline's seconds cut to
/// [`MAX_DEADLINE`], if they are over it.
fn cap_deadline(frame: &[u8]) -> Option<Vec<u8>> {
    // Variant 0 (Request) is the varint 0; a Cancel carries no deadline.
    let (&0, rest) = frame.split_first()? else {
        return None;
    };
    let (secs, len) = varint_u64(rest)?;
    let max = MAX_DEADLINE.as_secs();
    if secs <= max {
        return None;
    }
    // The nanoseconds (a u32 varint, the same encoding) follow: drop them too.
    let (_, nanos_len) = varint_u64(&rest[len..])?;
    let mut capped = Vec::with_capacity(frame.len());
    capped.extend([0, u8::try_from(max).expect("a one-byte varint"), 0]);
    capped.extend_from_slice(&rest[len + nanos_len..]);
    Some(capped)
}

/// bincode's varint for a u64: below 251 the value itself, else a marker
/// (251, 252, 253) and 2, 4 or 8 little-endian bytes. Returns the value and
/// its length.
fn varint_u64(bytes: &[u8]) -> Option<(u64, usize)> {
    let (&marker, rest) = bytes.split_first()?;
    let fixed = |n: usize| -> Option<(u64, usize)> {
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(rest.get(..n)?);
        Some((u64::from_le_bytes(le), 1 + n))
    };
    match marker {
        0..=250 => Some((u64::from(marker), 1)),
        251 => fixed(2),
        252 => fixed(4),
        253 => fixed(8),
        _ => None,
    }
}

/// The server side's serde format: requests through [`decode_request`],
/// responses as tarpc's own bincode format writes them.
pub struct ServerCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for ServerCodec<Req, Resp> {
    fn default() -> Self {
        ServerCodec(PhantomData)
    }
}

impl<Req: DeserializeOwned, Resp> tarpc::tokio_serde::Deserializer<ClientMessage<Req>>
    for ServerCodec<Req, Resp>
{
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> io::Result<ClientMessage<Req>> {
        decode_request(src)
    }
}

impl<Req, Resp: Serialize> tarpc::tokio_serde::Serializer<Response<Resp>>
    for ServerCodec<Req, Resp>
{
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &Response<Resp>) -> io::Result<Bytes> {
        bincode::DefaultOptions::new()
            .serialize(item)
            .map(Bytes::from)
            .map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::time::Instant;

    /// tarpc's `ClientMessage`, field for field and variant for variant,
    /// with the deadline left as the duration it is on the wire, to write
    /// frames tarpc's own encoder cannot (a deadline of any length).
    #[derive(Serialize, Deserialize)]
    enum WireMessage<T> {
        Request(WireRequest<T>),
    }

    #[derive(Serialize, Deserialize)]
    struct WireRequest<T> {
        context: WireContext,
        id: u64,
        message: T,
    }

    #[derive(Serialize, Deserialize)]
    struct WireContext {
        deadline: Duration,
        trace_context: tarpc::trace::Context,
    }

    /// What tarpc's own client writes for `message` with `deadline`.
    fn tarpc_frame(deadline: Duration, message: &str) -> Vec<u8> {
        let mut context = tarpc::context::current();
        context.deadline = Instant::now() + deadline;
        let request = ClientMessage::Request(tarpc::Request {
            context,
            id: 42,
            message: message.to_owned(),
        });
        bincode::DefaultOptions::new().serialize(&request).unwrap()
    }

    #[test]
    fn reads_what_tarpc_writes() {
        let frame = tarpc_frame(Duration::from_secs(5), "server");
        let ClientMessage::Request(request) = decode_request::<String>(&frame).unwrap() else {
            panic!("not a request");
        };
        assert_eq!((request.id, request.message.as_str()), (42, "server"));
        let left = request.context.deadline - Instant::now();
        assert!(left > Duration::from_secs(4) && left <= Duration::from_secs(5));
    }

    /// A request frame with any deadline, even one tarpc cannot write.
    fn frame_with_deadline(deadline: Duration, id: u64, message: &str) -> Vec<u8> {
        let wire = WireMessage::Request(WireRequest {
            context: WireContext {
                deadline,
                trace_context: tarpc::trace::Context::default(),
            },
            id,
            message: message.to_owned(),
        });
        bincode::DefaultOptions::new().serialize(&wire).unwrap()
    }

    #[test]
    fn tarpc_reads_what_the_mirror_writes() {
        let ours = frame_with_deadline(Duration::from_secs(3), 9, "x");
        let theirs: ClientMessage<String> =
            bincode::DefaultOptions::new().deserialize(&ours).unwrap();
        let ClientMessage::Request(request) = theirs else {
            panic!("not a request");
        };
        assert_eq!((request.id, request.message.as_str()), (9, "x"));
        assert!(request.context.deadline > Instant::now() + Duration::from_secs(2));
    }

    #[test]
    fn a_deadline_of_a_hundred_million_seconds_is_clamped() {
        for secs in [100_000_000, u64::MAX / 2, u64::MAX] {
            let frame = frame_with_deadline(Duration::new(secs, 999_999_999), 1, "x");
            let ClientMessage::Request(request) = decode_request::<String>(&frame).unwrap() else {
                panic!("not a request");
            };
            assert!(request.context.deadline <= Instant::now() + MAX_DEADLINE);
        }
    }

    /// The latest deadline a request may be granted: a deadline is capped
    /// to the second.
    fn latest() -> Instant {
        Instant::now() + MAX_DEADLINE + Duration::from_secs(1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn no_bytes_make_the_decoder_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request::<String>(&bytes);
            let _ = decode_request::<(String, std::net::SocketAddr, bool, u64)>(&bytes);
            let _ = decode_request::<Vec<String>>(&bytes);
        }

        #[test]
        fn any_request_with_any_deadline_decodes(
            secs in any::<u64>(), nanos in 0u32..1_000_000_000, id in any::<u64>(), name in ".{0,40}"
        ) {
            let frame = frame_with_deadline(Duration::new(secs, nanos), id, &name);
            let ClientMessage::Request(request) = decode_request::<String>(&frame).unwrap() else {
                panic!("not a request");
            };
            prop_assert_eq!(request.id, id);
            prop_assert_eq!(request.message, name);
            prop_assert!(request.context.deadline <= latest());
        }
    }
}
