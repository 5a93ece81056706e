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

use bytes::{Buf, BytesMut};
use lapin::uri::AMQPUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let uri: AMQPUri = broker.current_url().parse().map_err(&failed)?;
    let work = async {
        let mut raw = Raw::connect(&uri).await?;
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

    fn method(&self) -> Option<(u16, u16, &[u8])> {
        if self.kind != FRAME_METHOD || self.payload.len() < 4 {
            return None;
        }
        let class = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let method = u16::from_be_bytes([self.payload[2], self.payload[3]]);
        Some((class, method, &self.payload[4..]))
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

fn shortstr(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend(bytes);
}

fn protocol_error(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Just enough of an AMQP 0-9-1 client to move raw messages.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(uri: &AMQPUri) -> std::io::Result<Raw> {
        let stream = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port)).await?;
        let mut raw = Raw {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        raw.stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        raw.expect(10, 10).await?; // connection.start
        let mut start_ok = Vec::new();
        start_ok.extend(0u32.to_be_bytes()); // client properties: none
        shortstr(&mut start_ok, "PLAIN");
        let user = &uri.authority.userinfo;
        let response = format!("\0{}\0{}", user.username, user.password);
        start_ok.extend((response.len() as u32).to_be_bytes());
        start_ok.extend(response.as_bytes());
        shortstr(&mut start_ok, "en_US");
        raw.send_method(0, 10, 11, &start_ok).await?;
        let tune = raw.expect(10, 30).await?; // connection.tune
        let channel_max = u16::from_be_bytes([tune[0], tune[1]]);
        let mut tune_ok = Vec::new();
        tune_ok.extend(channel_max.to_be_bytes());
        tune_ok.extend(FRAME_MAX.to_be_bytes());
        tune_ok.extend(0u16.to_be_bytes()); // no heartbeats: a short session
        raw.send_method(0, 10, 31, &tune_ok).await?;
        let mut open = Vec::new();
        shortstr(&mut open, &uri.vhost);
        shortstr(&mut open, "");
        open.push(0);
        raw.send_method(0, 10, 40, &open).await?;
        raw.expect(10, 41).await?;
        raw.send_method(CHANNEL, 20, 10, &[0]).await?; // channel.open
        raw.expect(20, 11).await?;
        Ok(raw)
    }

    async fn send_method(
        &mut self,
        channel: u16,
        class: u16,
        method: u16,
        args: &[u8],
    ) -> std::io::Result<()> {
        let mut payload = Vec::with_capacity(args.len() + 4);
        payload.extend(class.to_be_bytes());
        payload.extend(method.to_be_bytes());
        payload.extend(args);
        self.stream
            .write_all(&encode_frame(FRAME_METHOD, channel, &payload))
            .await
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

    /// Reads frames until the method `class.method` comes; returns its
    /// arguments. A connection or channel close is an error with its reason.
    async fn expect(&mut self, class: u16, method: u16) -> std::io::Result<Vec<u8>> {
        loop {
            let frame = self.read_frame().await?;
            match frame.method() {
                Some((c, m, args)) if (c, m) == (class, method) => return Ok(args.to_vec()),
                Some((20, 40, args)) | Some((10, 50, args)) => {
                    let text_len = args.get(2).copied().unwrap_or(0) as usize;
                    let text = args.get(3..3 + text_len).unwrap_or_default();
                    return Err(protocol_error(format!(
                        "the broker closed the connection: {}",
                        String::from_utf8_lossy(text)
                    )));
                }
                _ => {}
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
            if amq_protocol::frame::parse_frame(wire.as_slice()).is_ok() {
                continue; // readable: it goes back to the queue on close
            }
            let description = describe(&delivery.header.payload);
            let mut publish = vec![0, 0];
            shortstr(&mut publish, "");
            shortstr(&mut publish, &side);
            publish.push(0);
            self.send_method(CHANNEL, 60, 40, &publish).await?;
            let mut frames = wire;
            for body in &delivery.body {
                frames.extend(body.wire());
            }
            self.stream.write_all(&frames).await?;
            published += 1;
            self.await_confirm(published).await?;
            let mut ack = delivery.tag.to_be_bytes().to_vec();
            ack.push(0);
            self.send_method(CHANNEL, 60, 80, &ack).await?;
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
        // queue.declare: durable, not exclusive, not auto-delete.
        let mut declare = vec![0, 0];
        shortstr(&mut declare, side);
        declare.push(0b0000_0010);
        declare.extend(0u32.to_be_bytes());
        self.send_method(CHANNEL, 50, 10, &declare).await?;
        self.expect(50, 11).await?;
        self.send_method(CHANNEL, 85, 10, &[0]).await?; // confirm.select
        self.expect(85, 11).await?;
        let mut qos = 0u32.to_be_bytes().to_vec();
        qos.extend(window.max(1).to_be_bytes());
        qos.push(0);
        self.send_method(CHANNEL, 60, 10, &qos).await?;
        self.expect(60, 11).await?;
        let mut consume = vec![0, 0];
        shortstr(&mut consume, queue);
        shortstr(&mut consume, "celery_pages-quarantine");
        consume.push(0); // acks on
        consume.extend(0u32.to_be_bytes());
        self.send_method(CHANNEL, 60, 20, &consume).await?;
        self.expect(60, 21).await?;
        Ok(())
    }

    /// The next basic.deliver with its header and body frames.
    async fn next_delivery(&mut self) -> std::io::Result<Delivery> {
        let tag = loop {
            let frame = self.read_frame().await?;
            if let Some((60, 60, args)) = frame.method() {
                // consumer tag (shortstr), then the delivery tag.
                let skip = 1 + usize::from(*args.first().unwrap_or(&0));
                let tag = args
                    .get(skip..skip + 8)
                    .ok_or_else(|| protocol_error("a short basic.deliver"))?;
                break u64::from_be_bytes(tag.try_into().expect("8 bytes"));
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
            let frame = self.read_frame().await?;
            match frame.method() {
                Some((60, 80, args)) if args.len() >= 9 => {
                    let tag = u64::from_be_bytes(args[..8].try_into().expect("8 bytes"));
                    let multiple = args[8] & 1 == 1;
                    if tag == seq || (multiple && tag >= seq) {
                        return Ok(());
                    }
                }
                Some((60, 120, _)) => {
                    return Err(protocol_error("the broker refused the copy (basic.nack)"));
                }
                Some((20, 40, _)) | Some((10, 50, _)) => {
                    return Err(protocol_error("the broker closed the channel"));
                }
                _ => {}
            }
        }
    }

    async fn close(mut self) {
        let mut close = 200u16.to_be_bytes().to_vec();
        shortstr(&mut close, "done");
        close.extend([0, 0, 0, 0]);
        if self.send_method(0, 10, 50, &close).await.is_ok() {
            let _ = tokio::time::timeout(QUIET, self.expect(10, 51)).await;
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
