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
use crate::correlation;
use crate::io::{MAX_REQUEST, ReadError, read_message, write_message};
use crate::message::{FLAG_EXCEPTION, FLAG_META_ON_CONNECT, FLAG_ONEWAY, Message, MessageType};
use crate::serpent::Value;

/// Several calls in one message (`Pyro4.batch(proxy)`): run in order, their
/// results (or the first exception, wrapped, after which the rest are not
/// run) returned as one list.
const FLAG_BATCH: u16 = 8;
/// Arguments passed on still serialized (`SerializedBlob`): not handled.
const FLAG_KEEP_SERIALIZED: u16 = 64;

/// An object a daemon serves.
pub trait Object: Send + Sync + 'static {
    /// The Python class it stands for, as Python's messages name it
    /// (`'Server' object has no attribute 'buy'`).
    fn class_name(&self) -> &'static str;

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
    // Every answer carries the request's correlation id, or a new one, as
    // Python's daemon answers.
    let correlation_id = correlation::of(&connect).unwrap_or_else(correlation::fresh);
    answer
        .annotations
        .push(correlation::annotation(correlation_id));
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
        let correlation_id = correlation::of(&request).unwrap_or_else(correlation::fresh);
        let answer = match request.kind {
            MessageType::Ping => Some(Message {
                payload: b"pong".to_vec(),
                ..reply(&request, MessageType::Ping, 0, &Value::None)
            }),
            MessageType::Invoke => {
                let invoked = invoke(&request, object_id, object);
                correlation::scope(Some(correlation_id), invoked).await
            }
            other => {
                return Err(ReadError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected {other:?} message"),
                )));
            }
        };
        if let Some(mut answer) = answer {
            answer
                .annotations
                .push(correlation::annotation(correlation_id));
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
    let payload = match payload_of(connect) {
        Ok(payload) => payload,
        Err(err) => return fail(err.message),
    };
    let data = match Serializer::from_id(connect.serializer)
        .and_then(|serializer| serializer.loads(&payload))
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

/// A request's payload, inflated if it came compressed.
fn payload_of(message: &Message) -> Result<std::borrow::Cow<'_, [u8]>, PyroException> {
    message.inflated_payload(MAX_REQUEST).map_err(pyro_error)
}

/// Runs one INVOKE; `None` for a oneway call, which gets no reply.
async fn invoke<O: Object>(request: &Message, object_id: &str, object: &O) -> Option<Message> {
    let outcome = run(request, object_id, object).await;
    if request.flags & FLAG_ONEWAY != 0 {
        return None;
    }
    let batch = request.flags & FLAG_BATCH;
    Some(match outcome {
        Ok(value) => reply(request, MessageType::Result, batch, &value),
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
    if request.flags & FLAG_KEEP_SERIALIZED != 0 {
        return Err(pyro_error("keep-serialized calls are not supported here"));
    }
    let payload = payload_of(request)?;
    let call = Serializer::from_id(request.serializer)
        .and_then(|serializer| serializer.loads_call(&payload))
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
    if request.flags & FLAG_BATCH != 0 {
        return run_batch(call, object_id, object).await;
    }
    if !object.methods().contains(&call.method.as_str()) {
        return Err(no_such_method(object_id, &call.method));
    }
    object.invoke(call).await
}

/// Runs a batch: its arguments are `(method, args, kwargs)` triples. As in
/// Python's daemon, a method the object lacks fails the whole batch, and
/// an exception ends it, wrapped in the list where its result would be.
async fn run_batch<O: Object>(
    batch: Call,
    object_id: &str,
    object: &O,
) -> Result<Value, PyroException> {
    let mut calls = Vec::with_capacity(batch.args.len());
    for item in batch.args {
        let call = batched_call(item, object_id)?;
        if !object.methods().contains(&call.method.as_str()) {
            // Python's own message: the daemon looks the method up itself.
            return Err(PyroException::new(
                "builtins.AttributeError",
                format!(
                    "'{}' object has no attribute '{}'",
                    object.class_name(),
                    call.method
                ),
            ));
        }
        calls.push(call);
    }
    let mut results = Vec::with_capacity(calls.len());
    for call in calls {
        match object.invoke(call).await {
            Ok(value) => results.push(value),
            Err(err) => {
                results.push(Value::Dict(vec![
                    (
                        Value::str("__class__"),
                        Value::str("Pyro4.futures._ExceptionWrapper"),
                    ),
                    (Value::str("exception"), err.to_value()),
                ]));
                break;
            }
        }
    }
    Ok(Value::List(results))
}

/// One `(method, args, kwargs)` triple of a batch, as a call.
fn batched_call(item: Value, object_id: &str) -> Result<Call, PyroException> {
    let malformed = || pyro_error("a batched call is not (method, args, kwargs)");
    let (Value::Tuple(parts) | Value::List(parts)) = item else {
        return Err(malformed());
    };
    let Ok([method, args, kwargs]) = <[Value; 3]>::try_from(parts) else {
        return Err(malformed());
    };
    let (Value::Str(method), Value::Tuple(args) | Value::List(args), Value::Dict(kwargs)) =
        (method, args, kwargs)
    else {
        return Err(malformed());
    };
    let kwargs = kwargs
        .into_iter()
        .map(|(key, value)| match key {
            Value::Str(key) => Ok((key, value)),
            _ => Err(malformed()),
        })
        .collect::<Result<_, _>>()?;
    Ok(Call {
        object: object_id.to_owned(),
        method,
        args,
        kwargs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serpent;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Echo;

    impl Object for Echo {
        fn class_name(&self) -> &'static str {
            "Echo"
        }

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
        serve_bytes_to(Echo, bytes)
    }

    /// [`serve_bytes`] with `object` as `echo_1`.
    fn serve_bytes_to(object: impl Object, bytes: Vec<u8>) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let serving = tokio::spawn(async move { serve(server, "echo_1", &object, &()).await });
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

    /// As Python's daemon: a call's correlation id is current while the
    /// object runs it and comes back on the answer; a call without one
    /// gets a new one, also on the answer.
    #[test]
    fn a_calls_correlation_id_is_current_in_the_object_and_answered() {
        struct Current;
        impl Object for Current {
            fn class_name(&self) -> &'static str {
                "Current"
            }
            fn methods(&self) -> &[&'static str] {
                &["current"]
            }
            async fn invoke(&self, _call: Call) -> Result<Value, PyroException> {
                let id = correlation::current().expect("a current id");
                Ok(Value::Str(format!("{id:032x}")))
            }
        }
        let call = Call {
            object: "echo_1".into(),
            method: "current".into(),
            args: vec![],
            kwargs: vec![],
        };
        for sent in [Some(0x1234_u128), None] {
            let mut invoke = Message::new(
                MessageType::Invoke,
                1,
                Serializer::Serpent.dumps_call(&call),
            );
            invoke.annotations.extend(sent.map(correlation::annotation));
            let mut bytes = connect_bytes();
            bytes.extend(invoke.encode());
            let written = serve_bytes_to(Current, bytes);
            let ok = Message::decode(&written, MAX_REQUEST).unwrap();
            assert!(correlation::of(&ok).is_some(), "CONNECTOK carries one");
            let result = Message::decode(&written[ok.encode().len()..], MAX_REQUEST).unwrap();
            let answered = correlation::of(&result).expect("the answer carries the id");
            if let Some(sent) = sent {
                assert_eq!(answered, sent);
            }
            let seen = Serializer::Serpent.loads(&result.payload).unwrap();
            assert_eq!(seen, Value::Str(format!("{answered:032x}")));
        }
    }

    /// A small compressed message that would inflate past the request
    /// limit is refused, not inflated.
    #[test]
    fn a_compressed_message_cannot_unfold_past_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 2 * MAX_REQUEST]).unwrap();
        let mut bomb = Message::new(MessageType::Invoke, 1, encoder.finish().unwrap());
        bomb.flags = crate::message::FLAG_COMPRESSED;
        assert!(bomb.payload.len() < 10_000);
        let err = bomb.inflated_payload(MAX_REQUEST).unwrap_err();
        assert!(err.contains("more than"), "{err}");
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

        /// Random payloads flagged compressed, batched or both (what a
        /// peer sends is inflated and unpacked here) get an answer or none,
        /// never a panic.
        #[test]
        fn random_compressed_and_batched_payloads_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            deflate in any::<bool>(),
            flags in 0u16..16,
        ) {
            use std::io::Write;
            let payload = if deflate {
                let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&payload).unwrap();
                encoder.finish().unwrap()
            } else {
                payload
            };
            let mut invoke = Message::new(MessageType::Invoke, 1, payload);
            invoke.flags = flags & (crate::message::FLAG_COMPRESSED | FLAG_BATCH | FLAG_ONEWAY);
            let mut stream = connect_bytes();
            stream.extend(invoke.encode());
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
