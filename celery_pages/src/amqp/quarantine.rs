//! Setting aside a message the AMQP library cannot read.
//!
//! A message whose AMQP properties are not valid UTF-8 (a `correlation_id`
//! of raw bytes, say) cannot be parsed by lapin: the whole connection fails,
//! the broker hands the message back, and the next connection fails on it
//! again, while the good tasks queued behind it wait. (Python's Celery
//! worker crashes on the same message.) Celery declares its queue without a
//! dead-letter exchange, and a worker cannot add one (a second declaration
//! with other arguments is refused), so the worker moves the message itself.
//!
//! [`set_aside_unreadable`] opens a connection of its own that speaks just
//! enough AMQP 0-9-1 to consume raw frames, checks each delivery in the
//! prefetch window with the very parser lapin uses, and copies each one that
//! fails, byte for byte (properties and body), to the durable queue
//! `<queue>.unreadable` with a publisher confirm, and only then acks it. The
//! readable deliveries are left unacked and go back to the queue when the
//! connection closes. Nothing is lost: a message is removed only once its
//! copy is confirmed.

use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, connection, queue};
use amq_protocol::types::FieldTable;
use bytes::{Buf, BytesMut};
use lapin::uri::AMQPUri;
use plumbing::tls::ClientStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Broker, Error, Result};

/// How long the raw consumer waits for more deliveries before it judges
/// what it has.
const QUIET: Duration = Duration::from_millis(500);
/// A bound on the whole operation.
const DEADLINE: Duration = Duration::from_secs(30);
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xce;
const CHANNEL: u16 = 1;
/// Largest frame this client accepts or sends.
const FRAME_MAX: u32 = 128 * 1024;

/// The queue unreadable messages from `queue` are moved to.
pub fn side_queue(queue: &str) -> String {
    format!("{queue}.unreadable")
}

/// A message that was moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// What it was, for the log: its readable properties and why it could
    /// not be read.
    pub description: String,
}

/// Moves every delivery in the first `window` messages of `queue` that
/// lapin cannot parse to [`side_queue`]; returns what it moved.
pub async fn set_aside_unreadable(
    broker: &Broker,
    queue: &str,
    window: u16,
) -> Result<Vec<SetAside>> {
    let failed = |reason: String| Error::Quarantine {
        url: broker.current(),
        reason,
    };
    let work = async {
        let (stream, uri) = broker.connect_raw().await?;
        let mut raw = Raw::connect(stream, &uri).await?;
        let moved = raw.move_unreadable(queue, window).await?;
        raw.close().await;
        Ok::<_, std::io::Error>(moved)
    };
    match tokio::time::timeout(DEADLINE, work).await {
        Ok(done) => done.map_err(|err| failed(err.to_string())),
        Err(_) => Err(failed(format!("no result within {DEADLINE:?}"))),
    }
}

/// One frame as it came off the wire.
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

impl Frame {
    /// The frame's bytes as they were on the wire, to copy it verbatim.
    fn wire(&self) -> Vec<u8> {
        encode_frame(self.kind, CHANNEL, &self.payload)
    }

    /// The method this frame carries, parsed by amq-protocol (as lapin
    /// parses it); `None` for a content frame.
    fn method(&self) -> std::io::Result<Option<AMQPClass>> {
        if self.kind != FRAME_METHOD {
            return Ok(None);
        }
        match parse_frame(self.wire().as_slice()) {
            Ok((_, AMQPFrame::Method(_, method))) => Ok(Some(method)),
            _ => Err(protocol_error("a method frame that does not parse")),
        }
    }
}

/// A delivery: its tag, and its header and body frames as they came.
struct Delivery {
    tag: u64,
    header: Frame,
    body: Vec<Frame>,
}

fn encode_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(kind);
    out.extend(channel.to_be_bytes());
    out.extend((payload.len() as u32).to_be_bytes());
    out.extend(payload);
    out.push(FRAME_END);
    out
}

fn protocol_error(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// The broker's reason when `method` closes the connection or the channel.
fn closed_by_broker(method: &AMQPClass) -> Option<String> {
    match method {
        AMQPClass::Connection(connection::AMQPMethod::Close(close)) => {
            Some(close.reply_text.to_string())
        }
        AMQPClass::Channel(channel::AMQPMethod::Close(close)) => Some(close.reply_text.to_string()),
        _ => None,
    }
}

/// Just enough of an AMQP 0-9-1 client to move raw messages: methods are
/// amq-protocol's typed frames; content frames are kept as raw bytes, since
/// the unreadable ones are exactly what no parser takes.
struct Raw {
    stream: ClientStream,
    buf: BytesMut,
}

impl Raw {
    /// Opens the AMQP connection on `stream`, a connection to `uri`.
    async fn connect(stream: ClientStream, uri: &AMQPUri) -> std::io::Result<Raw> {
        use connection::AMQPMethod as C;
        let mut raw = Raw {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        raw.stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        raw.expect("connection.start", |m| {
            matches!(m, AMQPClass::Connection(C::Start(_)))
        })
        .await?;
        let user = &uri.authority.userinfo;
        let start_ok = C::StartOk(connection::StartOk {
            client_properties: FieldTable::default(),
            mechanism: "PLAIN".into(),
            response: format!("\0{}\0{}", user.username, user.password)
                .as_str()
                .into(),
            locale: "en_US".into(),
        });
        let tuned = raw.call(0, AMQPClass::Connection(start_ok), "connection.tune", |m| {
            matches!(m, AMQPClass::Connection(C::Tune(_)))
        });
        let AMQPClass::Connection(C::Tune(tune)) = tuned.await? else {
            unreachable!("call returns the method it was asked for")
        };
        let tune_ok = C::TuneOk(connection::TuneOk {
            channel_max: tune.channel_max,
            frame_max: FRAME_MAX,
            heartbeat: 0, // a short session
        });
        raw.send(0, AMQPClass::Connection(tune_ok)).await?;
        let open = C::Open(connection::Open {
            virtual_host: uri.vhost.as_str().into(),
        });
        raw.call(0, AMQPClass::Connection(open), "connection.open-ok", |m| {
            matches!(m, AMQPClass::Connection(C::OpenOk(_)))
        })
        .await?;
        let open = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
        raw.call(CHANNEL, open, "channel.open-ok", |m| {
            matches!(m, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        })
        .await?;
        Ok(raw)
    }

    /// Sends `method` on `channel` and waits for its answer, which `wanted`
    /// accepts (`what` names it); returns the answer.
    async fn call(
        &mut self,
        channel: u16,
        method: AMQPClass,
        what: &str,
        wanted: impl Fn(&AMQPClass) -> bool,
    ) -> std::io::Result<AMQPClass> {
        self.send(channel, method).await?;
        self.expect(what, wanted).await
    }

    /// Sends `method` on `channel`, encoded by amq-protocol.
    async fn send(&mut self, channel: u16, method: AMQPClass) -> std::io::Result<()> {
        let frame = AMQPFrame::Method(channel, method);
        let encoded = gen_frame(&frame)(WriteContext::from(Vec::new()))
            .map_err(|err| protocol_error(format!("cannot encode a method: {err:?}")))?
            .write;
        self.stream.write_all(&encoded).await
    }

    async fn read_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]);
                if size > FRAME_MAX {
                    return Err(protocol_error(format!("a frame of {size} bytes")));
                }
                let whole = 7 + size as usize + 1;
                if self.buf.len() >= whole {
                    let kind = self.buf[0];
                    let mut frame = self.buf.split_to(whole);
                    frame.advance(7);
                    if frame[frame.len() - 1] != FRAME_END {
                        return Err(protocol_error("a frame without its end marker"));
                    }
                    frame.truncate(frame.len() - 1);
                    return Ok(Frame {
                        kind,
                        payload: frame.to_vec(),
                    });
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads frames until a method `wanted` accepts comes (`what` names it);
    /// returns it. A connection or channel close is an error with its reason.
    async fn expect(
        &mut self,
        what: &str,
        wanted: impl Fn(&AMQPClass) -> bool,
    ) -> std::io::Result<AMQPClass> {
        loop {
            let Some(method) = self.read_frame().await?.method()? else {
                continue;
            };
            if wanted(&method) {
                return Ok(method);
            }
            if let Some(reason) = closed_by_broker(&method) {
                return Err(protocol_error(format!(
                    "the broker closed the connection while we waited for {what}: {reason}"
                )));
            }
        }
    }

    /// Consumes up to `window` deliveries and moves the unreadable ones.
    async fn move_unreadable(
        &mut self,
        queue: &str,
        window: u16,
    ) -> std::io::Result<Vec<SetAside>> {
        let side = side_queue(queue);
        self.start_consuming(queue, &side, window).await?;
        let mut deliveries = Vec::new();
        while deliveries.len() < usize::from(window.max(1)) {
            match tokio::time::timeout(QUIET, self.next_delivery()).await {
                Ok(delivery) => deliveries.push(delivery?),
                Err(_) => break,
            }
        }
        let mut moved = Vec::new();
        let mut published = 0u64;
        for delivery in deliveries {
            let wire = delivery.header.wire();
            if parse_frame(wire.as_slice()).is_ok() {
                continue; // readable: it goes back to the queue on close
            }
            let description = describe(&delivery.header.payload);
            self.send(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: "".into(),
                    routing_key: side.as_str().into(),
                    mandatory: false,
                    immediate: false,
                })),
            )
            .await?;
            let mut frames = wire;
            for body in &delivery.body {
                frames.extend(body.wire());
            }
            self.stream.write_all(&frames).await?;
            published += 1;
            self.await_confirm(published).await?;
            self.send(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: delivery.tag,
                    multiple: false,
                })),
            )
            .await?;
            moved.push(SetAside { description });
        }
        Ok(moved)
    }

    /// Declares the side queue, turns publisher confirms on, and consumes
    /// `queue` with a prefetch of `window`.
    async fn start_consuming(
        &mut self,
        queue: &str,
        side: &str,
        window: u16,
    ) -> std::io::Result<()> {
        use basic::AMQPMethod as B;
        let declare = queue::AMQPMethod::Declare(queue::Declare {
            queue: side.into(),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        });
        self.call(
            CHANNEL,
            AMQPClass::Queue(declare),
            "queue.declare-ok",
            |m| matches!(m, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))),
        )
        .await?;
        let select = confirm::AMQPMethod::Select(confirm::Select { nowait: false });
        self.call(
            CHANNEL,
            AMQPClass::Confirm(select),
            "confirm.select-ok",
            |m| matches!(m, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))),
        )
        .await?;
        let qos = B::Qos(basic::Qos {
            prefetch_count: window.max(1),
            global: false,
        });
        self.call(CHANNEL, AMQPClass::Basic(qos), "basic.qos-ok", |m| {
            matches!(m, AMQPClass::Basic(B::QosOk(_)))
        })
        .await?;
        let consume = B::Consume(basic::Consume {
            queue: queue.into(),
            consumer_tag: "celery_pages-quarantine".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        });
        self.call(
            CHANNEL,
            AMQPClass::Basic(consume),
            "basic.consume-ok",
            |m| matches!(m, AMQPClass::Basic(B::ConsumeOk(_))),
        )
        .await?;
        Ok(())
    }

    /// The next basic.deliver with its header and body frames.
    async fn next_delivery(&mut self) -> std::io::Result<Delivery> {
        let tag = loop {
            let method = self.read_frame().await?.method()?;
            if let Some(AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver))) = method {
                break deliver.delivery_tag;
            }
        };
        let header = self.read_frame().await?;
        if header.kind != FRAME_HEADER || header.payload.len() < 14 {
            return Err(protocol_error("a delivery without its content header"));
        }
        let size = u64::from_be_bytes(header.payload[4..12].try_into().expect("8 bytes"));
        let mut body = Vec::new();
        let mut got = 0u64;
        while got < size {
            let frame = self.read_frame().await?;
            if frame.kind != FRAME_BODY {
                return Err(protocol_error("a delivery with its body cut short"));
            }
            got += frame.payload.len() as u64;
            body.push(frame);
        }
        Ok(Delivery { tag, header, body })
    }

    /// Waits for the broker's confirm of publish number `seq`.
    async fn await_confirm(&mut self, seq: u64) -> std::io::Result<()> {
        loop {
            let Some(method) = self.read_frame().await?.method()? else {
                continue;
            };
            match method {
                AMQPClass::Basic(basic::AMQPMethod::Ack(ack))
                    if ack.delivery_tag == seq || (ack.multiple && ack.delivery_tag >= seq) =>
                {
                    return Ok(());
                }
                AMQPClass::Basic(basic::AMQPMethod::Nack(_)) => {
                    return Err(protocol_error("the broker refused the copy (basic.nack)"));
                }
                other => {
                    if let Some(reason) = closed_by_broker(&other) {
                        return Err(protocol_error(format!(
                            "the broker closed the channel: {reason}"
                        )));
                    }
                }
            }
        }
    }

    async fn close(mut self) {
        let close = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "done".into(),
            class_id: 0,
            method_id: 0,
        }));
        if self.send(0, close).await.is_ok() {
            let closed = self.expect("connection.close-ok", |m| {
                matches!(m, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))
            });
            let _ = tokio::time::timeout(QUIET, closed).await;
        }
    }
}

/// What a content header says, read leniently, for the log line.
fn describe(header: &[u8]) -> String {
    const SHORTSTR_FIELDS: [(u16, &str); 10] = [
        (15, "content_type"),
        (14, "content_encoding"),
        (10, "correlation_id"),
        (9, "reply_to"),
        (8, "expiration"),
        (7, "message_id"),
        (5, "type"),
        (4, "user_id"),
        (3, "app_id"),
        (2, "cluster_id"),
    ];
    let body_size = header
        .get(4..12)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
    let flags = header
        .get(12..14)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let mut fields = Vec::new();
    let mut rest = header.get(14..).unwrap_or_default();
    for bit in (2..=15).rev() {
        if flags & (1 << bit) == 0 {
            continue;
        }
        match bit {
            13 => {
                // headers: a table, skipped by its length
                let len = rest
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4")));
                fields.push(format!("headers ({len} bytes)"));
                rest = rest.get(4 + len as usize..).unwrap_or_default();
            }
            12 | 11 => rest = rest.get(1..).unwrap_or_default(),
            6 => rest = rest.get(8..).unwrap_or_default(),
            _ => {
                let len = usize::from(rest.first().copied().unwrap_or(0));
                let value = rest.get(1..1 + len).unwrap_or_default();
                rest = rest.get(1 + len..).unwrap_or_default();
                let name = SHORTSTR_FIELDS
                    .iter()
                    .find(|(b, _)| *b == bit)
                    .map_or("?", |(_, name)| *name);
                match std::str::from_utf8(value) {
                    Ok(text) => fields.push(format!("{name}={text:?}")),
                    Err(_) => fields.push(format!(
                        "{name}=<{} bytes, not UTF-8: {}>",
                        value.len(),
                        value.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    )),
                }
            }
        }
    }
    format!("{body_size}-byte message with {}", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_header_is_described_with_its_bytes() {
        let mut header = vec![0, 60, 0, 0];
        header.extend(16u64.to_be_bytes());
        header.extend(((1u16 << 15) | (1 << 10)).to_be_bytes());
        header.push(16);
        header.extend(b"application/json");
        header.extend([3, 0xff, 0xfe, b'x']);
        assert_eq!(
            describe(&header),
            "16-byte message with content_type=\"application/json\", \
             correlation_id=<3 bytes, not UTF-8: fffe78>"
        );
        // And lapin's parser refuses the frame, which is how it is found.
        let frame = encode_frame(FRAME_HEADER, 1, &header);
        assert!(amq_protocol::frame::parse_frame(frame.as_slice()).is_err());
    }

    #[test]
    fn a_readable_header_parses() {
        let mut header = vec![0, 60, 0, 0];
        header.extend(2u64.to_be_bytes());
        header.extend((1u16 << 10).to_be_bytes());
        header.extend([2, b'o', b'k']);
        let frame = encode_frame(FRAME_HEADER, 1, &header);
        assert!(amq_protocol::frame::parse_frame(frame.as_slice()).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        #[test]
        fn no_header_bytes_make_the_description_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)
        ) {
            let _ = describe(&bytes);
        }
    }
}
