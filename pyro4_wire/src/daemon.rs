//! The server side: a Pyro4 daemon serving one object on a connection.
//!
//! A Python proxy connects, sends CONNECT naming the object, and expects
//! CONNECTOK listing the methods it may call (a proxy refuses any other);
//! then INVOKE and PING messages, answered in order with the request's
//! sequence number and serializer. One connection is served one request
//! at a time, as a Python daemon does (a Python proxy never sends a second
//! request before the first reply), which bounds what a connection holds.
//! A ring of servers still works: a re-entering call comes on a connection
//! of its own.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::call::{Call, PayloadError, PyroException, Serializer};
use crate::io::{MAX_REQUEST, ReadError, read_message, write_message};
use crate::message::{
    FLAG_COMPRESSED, FLAG_EXCEPTION, FLAG_META_ON_CONNECT, FLAG_ONEWAY, Message, MessageType,
};
use crate::serpent::Value;

/// Flags a daemon here does not handle: batched calls, results kept
/// serialized. A compressed message is refused too (zlib is off by default
/// in Pyro4).
const FLAG_BATCH: u16 = 8;
const FLAG_KEEP_SERIALIZED: u16 = 64;

/// An object a daemon serves.
pub trait Object: Send + Sync + 'static {
    /// The methods a proxy may call.
    fn methods(&self) -> &[&'static str];

    /// Runs `call` (its method is one of [`Object::methods`]).
    fn invoke(&self, call: Call) -> impl Future<Output = Result<Value, PyroException>> + Send;

    /// Annotations the CONNECTOK answer carries besides the object's
    /// metadata (Pyro4's daemons may add their own; a Python proxy hands
    /// unknown ones to `_pyroResponseAnnotations` and otherwise ignores
    /// them). None by default.
    fn connect_annotations(&self) -> Vec<([u8; 4], Vec<u8>)> {
        Vec::new()
    }
}

/// What a daemon tells the program serving it about a connection, and how
/// that program may close it while it is idle (to make room for another,
/// say). `()` watches nothing and never closes.
pub trait Watch: Send + Sync {
    /// A request has come in.
    fn active(&self);

    /// Completes when the connection should be closed. It is awaited only
    /// while the connection waits for its next request.
    fn closing(&self) -> impl Future<Output = ()> + Send;
}

impl Watch for () {
    fn active(&self) {}

    async fn closing(&self) {
        std::future::pending().await
    }
}

/// `AttributeError` for a method the object does not expose.
fn no_such_method(object: &str, method: &str) -> PyroException {
    PyroException::new(
        "builtins.AttributeError",
        format!("remote object '{object}' has no exposed attribute or method '{method}'"),
    )
}

fn pyro_error(message: impl Into<String>) -> PyroException {
    PyroException::new("Pyro4.errors.PyroError", message)
}

/// The metadata CONNECTOK carries.
fn metadata(methods: &[&str]) -> Value {
    Value::Dict(vec![
        (
            Value::str("methods"),
            Value::List(methods.iter().map(|m| Value::str(m)).collect()),
        ),
        (Value::str("oneway"), Value::List(vec![])),
        (Value::str("attrs"), Value::List(vec![])),
    ])
}

/// A reply to `request` carrying `payload`, in the request's serializer
/// (serpent when that one is refused).
fn reply(request: &Message, kind: MessageType, flags: u16, payload: &Value) -> Message {
    let serializer = Serializer::from_id(request.serializer).unwrap_or(Serializer::Serpent);
    Message {
        kind,
        flags,
        seq: request.seq,
        serializer: serializer.id(),
        annotations: Vec::new(),
        payload: serializer.dumps(payload),
    }
}

/// Serves `object`, known to proxies as `object_id`, on `stream` until the
/// peer closes it, breaks the protocol, or `watch` closes it between
/// requests. Returns why it ended, for the log (`Ok` when the peer or the
/// watch closed it).
pub async fn serve<S, O>(
    mut stream: S,
    object_id: &str,
    object: &O,
    watch: &impl Watch,
) -> Result<(), ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Object,
{
    let Some(connect) = read_message(&mut stream, MAX_REQUEST).await? else {
        return Ok(());
    };
    let mut answer = handshake(&connect, object_id, object.methods());
    if answer.kind == MessageType::ConnectOk {
        answer.annotations = object.connect_annotations();
    }
    write_message(&mut stream, &answer).await?;
    if answer.kind != MessageType::ConnectOk {
        return Ok(());
    }
    loop {
        let next = tokio::select! {
            next = read_message(&mut stream, MAX_REQUEST) => next?,
            () = watch.closing() => return Ok(()),
        };
        let Some(request) = next else {
            return Ok(());
        };
        watch.active();
        let answer = match request.kind {
            MessageType::Ping => Some(Message {
                payload: b"pong".to_vec(),
                ..reply(&request, MessageType::Ping, 0, &Value::None)
            }),
            MessageType::Invoke => invoke(&request, object_id, object).await,
            other => {
                return Err(ReadError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected {other:?} message"),
                )));
            }
        };
        if let Some(answer) = answer {
            write_message(&mut stream, &answer).await?;
        }
    }
}

/// Turns a connection away: its CONNECT is answered with CONNECTFAIL
/// giving `reason` (which a Python proxy raises as `CommunicationError`).
pub async fn refuse<S>(mut stream: S, reason: &str) -> Result<(), ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(connect) = read_message(&mut stream, MAX_REQUEST).await? {
        let fail = reply(&connect, MessageType::ConnectFail, 0, &Value::str(reason));
        write_message(&mut stream, &fail).await?;
    }
    Ok(())
}

/// The answer to the first message: CONNECTOK with the object's methods, or
/// CONNECTFAIL saying why not.
fn handshake(connect: &Message, object_id: &str, methods: &[&str]) -> Message {
    let fail = |why: String| reply(connect, MessageType::ConnectFail, 0, &Value::Str(why));
    if connect.kind != MessageType::Connect {
        return fail(format!(
            "expected a CONNECT message first, got {:?}",
            connect.kind
        ));
    }
    if connect.flags & FLAG_COMPRESSED != 0 {
        return fail("compressed messages are not supported here".into());
    }
    let data = match Serializer::from_id(connect.serializer)
        .and_then(|serializer| serializer.loads(&connect.payload))
    {
        Ok(data) => data,
        Err(err) => return fail(err.to_string()),
    };
    let Some(requested) = data.get("object").and_then(Value::as_str) else {
        return fail("the handshake names no object".into());
    };
    if requested != object_id {
        return fail("unknown object".into());
    }
    let hello = Value::str("hello");
    if connect.flags & FLAG_META_ON_CONNECT != 0 {
        let data = Value::Dict(vec![
            (Value::str("handshake"), hello),
            (Value::str("meta"), metadata(methods)),
        ]);
        reply(connect, MessageType::ConnectOk, FLAG_META_ON_CONNECT, &data)
    } else {
        reply(connect, MessageType::ConnectOk, 0, &hello)
    }
}

/// Runs one INVOKE; `None` for a oneway call, which gets no reply.
async fn invoke<O: Object>(request: &Message, object_id: &str, object: &O) -> Option<Message> {
    let outcome = run(request, object_id, object).await;
    if request.flags & FLAG_ONEWAY != 0 {
        return None;
    }
    Some(match outcome {
        Ok(value) => reply(request, MessageType::Result, 0, &value),
        Err(err) => reply(
            request,
            MessageType::Result,
            FLAG_EXCEPTION,
            &err.to_value(),
        ),
    })
}

async fn run<O: Object>(
    request: &Message,
    object_id: &str,
    object: &O,
) -> Result<Value, PyroException> {
    if request.flags & (FLAG_COMPRESSED | FLAG_BATCH | FLAG_KEEP_SERIALIZED) != 0 {
        return Err(pyro_error(
            "compressed, batched and keep-serialized calls are not supported here",
        ));
    }
    let call = Serializer::from_id(request.serializer)
        .and_then(|serializer| serializer.loads_call(&request.payload))
        .map_err(|err| match err {
            PayloadError::Serializer(id) => PyroException::new(
                "Pyro4.errors.SerializeError",
                format!("message used serializer that is not accepted: {id}"),
            ),
            other => pyro_error(other.to_string()),
        })?;
    if call.object == "Pyro.Daemon" {
        // What a proxy without metadata-on-connect asks the daemon.
        return match call.method.as_str() {
            "get_metadata"
                if call.arg(0, "objectId").and_then(Value::as_str) == Some(object_id) =>
            {
                Ok(metadata(object.methods()))
            }
            "get_metadata" => Err(PyroException::new(
                "Pyro4.errors.DaemonError",
                "unknown object",
            )),
            "ping" => Ok(Value::None),
            method => Err(no_such_method("Pyro.Daemon", method)),
        };
    }
    if call.object != object_id {
        return Err(PyroException::new(
            "Pyro4.errors.DaemonError",
            "unknown object",
        ));
    }
    if !object.methods().contains(&call.method.as_str()) {
        return Err(no_such_method(object_id, &call.method));
    }
    object.invoke(call).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serpent;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Echo;

    impl Object for Echo {
        fn methods(&self) -> &[&'static str] {
            &["echo"]
        }

        async fn invoke(&self, call: Call) -> Result<Value, PyroException> {
            Ok(Value::Tuple(call.args))
        }
    }

    fn connect_bytes() -> Vec<u8> {
        let hello = Value::Dict(vec![
            (Value::str("handshake"), Value::str("hello")),
            (Value::str("object"), Value::str("echo_1")),
        ]);
        let mut connect = Message::new(MessageType::Connect, 0, serpent::dumps(&hello));
        connect.flags = FLAG_META_ON_CONNECT;
        connect.encode()
    }

    /// Serves one connection that sends `bytes` and closes; returns what
    /// the daemon wrote back.
    fn serve_bytes(bytes: Vec<u8>) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let serving = tokio::spawn(async move { serve(server, "echo_1", &Echo, &()).await });
            client.write_all(&bytes).await.unwrap();
            client.shutdown().await.unwrap();
            let mut written = Vec::new();
            client.read_to_end(&mut written).await.unwrap();
            let _ = serving.await.unwrap();
            written
        })
    }

    #[test]
    fn a_call_is_answered_with_its_sequence_number_and_serializer() {
        let call = Call {
            object: "echo_1".into(),
            method: "echo".into(),
            args: vec![Value::str("x")],
            kwargs: vec![],
        };
        for serializer in [Serializer::Serpent, Serializer::Json] {
            let mut invoke = Message::new(MessageType::Invoke, 7, serializer.dumps_call(&call));
            invoke.serializer = serializer.id();
            let mut bytes = connect_bytes();
            bytes.extend(invoke.encode());
            let written = serve_bytes(bytes);
            let ok = Message::decode(&written, MAX_REQUEST).unwrap();
            assert_eq!(ok.kind, MessageType::ConnectOk);
            let result = Message::decode(&written[ok.encode().len()..], MAX_REQUEST).unwrap();
            assert_eq!(
                (result.kind, result.seq, result.flags),
                (MessageType::Result, 7, 0)
            );
            assert_eq!(result.serializer, serializer.id());
            let value = serializer.loads(&result.payload).unwrap();
            assert!(
                matches!(value, Value::Tuple(_) | Value::List(_)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn an_unknown_object_fails_the_handshake() {
        let hello = Value::Dict(vec![
            (Value::str("handshake"), Value::str("hello")),
            (Value::str("object"), Value::str("someone_else")),
        ]);
        let connect = Message::new(MessageType::Connect, 0, serpent::dumps(&hello));
        let written = serve_bytes(connect.encode());
        let fail = Message::decode(&written, MAX_REQUEST).unwrap();
        assert_eq!(fail.kind, MessageType::ConnectFail);
        assert_eq!(
            serpent::loads(&fail.payload).unwrap(),
            Value::str("unknown object")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]
        /// Whatever a peer sends first, or after a proper handshake, the
        /// daemon answers or closes; it never panics.
        #[test]
        fn random_bytes_never_panic_the_daemon(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            after_handshake in any::<bool>(),
        ) {
            let mut stream = if after_handshake { connect_bytes() } else { Vec::new() };
            stream.extend(bytes);
            serve_bytes(stream);
        }

        /// Random payloads in a well-formed INVOKE are refused with an
        /// exception reply, never a panic.
        #[test]
        fn random_payloads_get_an_answer(
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            serializer in 0u16..8,
        ) {
            let mut invoke = Message::new(MessageType::Invoke, 1, payload);
            invoke.serializer = serializer;
            let mut stream = connect_bytes();
            stream.extend(invoke.encode());
            let written = serve_bytes(stream);
            prop_assert!(written.len() > 2 * crate::message::HEADER_LEN);
        }
    }
}
