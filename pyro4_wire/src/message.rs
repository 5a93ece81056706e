//! The Pyro4 message frame.
//!
//! A 24-byte big-endian header (`!4sHHHHiHHHH`): magic `PYRO`, protocol
//! version 48, message type, flags, sequence number, payload length,
//! serializer id, annotations length, a reserved 0, and a checksum; then
//! the annotation chunks (4 ASCII bytes, a u16 length, the data), then the
//! payload.

/// The magic every frame starts with.
pub const MAGIC: &[u8; 4] = b"PYRO";
/// Pyro4 4.82's protocol version.
pub const VERSION: u16 = 48;
/// Header length.
pub const HEADER_LEN: usize = 24;
/// The serializer ids.
pub const SERIALIZER_SERPENT: u16 = 1;
pub const SERIALIZER_JSON: u16 = 2;
pub const SERIALIZER_MARSHAL: u16 = 3;
/// Flags.
pub const FLAG_EXCEPTION: u16 = 1;
pub const FLAG_COMPRESSED: u16 = 2;
pub const FLAG_ONEWAY: u16 = 4;
pub const FLAG_META_ON_CONNECT: u16 = 16;

const CHECKSUM_MAGIC: u32 = 0x34E9;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Connect,
    ConnectOk,
    ConnectFail,
    Invoke,
    Result,
    Ping,
}

impl MessageType {
    pub fn code(self) -> u16 {
        match self {
            MessageType::Connect => 1,
            MessageType::ConnectOk => 2,
            MessageType::ConnectFail => 3,
            MessageType::Invoke => 4,
            MessageType::Result => 5,
            MessageType::Ping => 6,
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => MessageType::Connect,
            2 => MessageType::ConnectOk,
            3 => MessageType::ConnectFail,
            4 => MessageType::Invoke,
            5 => MessageType::Result,
            6 => MessageType::Ping,
            _ => return None,
        })
    }
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("more bytes are needed: {0} in all")]
    Incomplete(usize),
    #[error("not a Pyro message (no PYRO magic)")]
    BadMagic,
    #[error("protocol version {0}; only Pyro4's 48 is spoken here")]
    BadVersion(u16),
    #[error("unknown message type {0}")]
    BadType(u16),
    #[error("checksum mismatch")]
    BadChecksum,
    #[error("a message of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("a negative payload length")]
    NegativeLength,
    #[error("malformed annotations")]
    BadAnnotations,
}

/// One Pyro4 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageType,
    pub flags: u16,
    pub seq: u16,
    pub serializer: u16,
    /// Annotation chunks: a 4-byte key and its data.
    pub annotations: Vec<([u8; 4], Vec<u8>)>,
    pub payload: Vec<u8>,
}

/// The header fields a frame's length can be read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: MessageType,
    pub flags: u16,
    pub seq: u16,
    pub payload_len: usize,
    pub serializer: u16,
    pub annotations_len: usize,
}

impl Header {
    /// The whole frame's length.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.annotations_len + self.payload_len
    }

    /// Reads and checks a header; `limit` bounds the whole frame.
    ///
    /// ```
    /// use pyro4_wire::message::Header;
    /// // The chapter's client's CONNECT, as captured.
    /// let bytes = [0x50, 0x59, 0x52, 0x4f, 0x00, 0x30, 0x00, 0x01, 0x00, 0x10, 0x00, 0x00,
    ///              0x00, 0x00, 0x00, 0x5f, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x35, 0x8a];
    /// let header = Header::decode(&bytes, 1 << 20).unwrap();
    /// assert_eq!(header.payload_len, 0x5f);
    /// ```
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Header, FrameError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(FrameError::Incomplete(HEADER_LEN));
        };
        let u16_at = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
        if &head[..4] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(FrameError::BadVersion(version));
        }
        let code = u16_at(6);
        let flags = u16_at(8);
        let seq = u16_at(10);
        let payload_len = i32::from_be_bytes([head[12], head[13], head[14], head[15]]);
        let serializer = u16_at(16);
        let annotations_len = u16_at(18);
        let checksum = u16_at(22);
        // As Pyro4 computes it: the reserved field is not part of it.
        let expected = checksum_of(
            code,
            payload_len as u32,
            annotations_len,
            serializer,
            flags,
            seq,
        ) as u16;
        if checksum != expected {
            return Err(FrameError::BadChecksum);
        }
        let kind = MessageType::from_code(code).ok_or(FrameError::BadType(code))?;
        let payload_len = usize::try_from(payload_len).map_err(|_| FrameError::NegativeLength)?;
        let header = Header {
            kind,
            flags,
            seq,
            payload_len,
            serializer,
            annotations_len: usize::from(annotations_len),
        };
        if header.frame_len() > limit {
            return Err(FrameError::TooLarge(header.frame_len(), limit));
        }
        Ok(header)
    }
}

fn checksum_of(
    code: u16,
    payload_len: u32,
    annotations_len: u16,
    serializer: u16,
    flags: u16,
    seq: u16,
) -> u32 {
    u32::from(code)
        .wrapping_add(u32::from(VERSION))
        .wrapping_add(payload_len)
        .wrapping_add(u32::from(annotations_len))
        .wrapping_add(u32::from(serializer))
        .wrapping_add(u32::from(flags))
        .wrapping_add(u32::from(seq))
        .wrapping_add(CHECKSUM_MAGIC)
        & 0xFFFF
}

impl Message {
    /// The payload, inflated if the message came compressed (Pyro4's
    /// `COMPRESSION=True`: zlib), and no longer than `limit` bytes either
    /// way: a small compressed message cannot unfold into a huge one.
    pub fn inflated_payload(&self, limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, String> {
        use std::io::Read;
        if self.flags & FLAG_COMPRESSED == 0 {
            return Ok(std::borrow::Cow::Borrowed(&self.payload));
        }
        let mut inflated = Vec::new();
        flate2::read::ZlibDecoder::new(self.payload.as_slice())
            .take(limit as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|err| format!("cannot decompress the message: {err}"))?;
        if inflated.len() > limit {
            return Err(format!(
                "the message decompresses to more than {limit} bytes"
            ));
        }
        Ok(std::borrow::Cow::Owned(inflated))
    }

    /// A serpent message of type `kind` with sequence number `seq`.
    pub fn new(kind: MessageType, seq: u16, payload: Vec<u8>) -> Self {
        Message {
            kind,
            flags: 0,
            seq,
            serializer: SERIALIZER_SERPENT,
            annotations: Vec::new(),
            payload,
        }
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let annotations_len: usize = self.annotations.iter().map(|(_, d)| 6 + d.len()).sum();
        let annotations_len = u16::try_from(annotations_len).unwrap_or(u16::MAX);
        let payload_len = self.payload.len() as u32;
        let code = self.kind.code();
        let checksum = checksum_of(
            code,
            payload_len,
            annotations_len,
            self.serializer,
            self.flags,
            self.seq,
        ) as u16;
        let mut out =
            Vec::with_capacity(HEADER_LEN + usize::from(annotations_len) + self.payload.len());
        out.extend_from_slice(MAGIC);
        for field in [VERSION, code, self.flags, self.seq] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        out.extend_from_slice(&payload_len.to_be_bytes());
        for field in [self.serializer, annotations_len, 0, checksum] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        for (key, data) in &self.annotations {
            out.extend_from_slice(key);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes one whole frame from the front of `bytes`; `limit` bounds
    /// its length. [`FrameError::Incomplete`] says how many bytes it needs.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Message, FrameError> {
        let header = Header::decode(bytes, limit)?;
        let frame = bytes
            .get(..header.frame_len())
            .ok_or(FrameError::Incomplete(header.frame_len()))?;
        let mut rest = &frame[HEADER_LEN..HEADER_LEN + header.annotations_len];
        let mut annotations = Vec::new();
        while !rest.is_empty() {
            let (Some(key), Some(len)) = (rest.get(..4), rest.get(4..6)) else {
                return Err(FrameError::BadAnnotations);
            };
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let data = rest.get(6..6 + len).ok_or(FrameError::BadAnnotations)?;
            annotations.push(([key[0], key[1], key[2], key[3]], data.to_vec()));
            rest = &rest[6 + len..];
        }
        Ok(Message {
            kind: header.kind,
            flags: header.flags,
            seq: header.seq,
            serializer: header.serializer,
            annotations,
            payload: frame[HEADER_LEN + header.annotations_len..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// The four headers captured between the chapter's pyro_client.py and
    /// pyro_server.py (the spec), with the payload lengths they announce.
    #[test]
    fn the_captured_headers_decode_and_encode_byte_for_byte() {
        let captured = [
            (
                "50 59 52 4f 00 30 00 01 00 10 00 00 00 00 00 5f 00 01 00 00 00 00 35 8a",
                MessageType::Connect,
                16,
                0,
                0x5f,
                0,
            ),
            (
                "50 59 52 4f 00 30 00 02 00 10 00 00 00 00 00 6c 00 01 00 16 00 00 35 ae",
                MessageType::ConnectOk,
                16,
                0,
                0x6c,
                0x16,
            ),
            (
                "50 59 52 4f 00 30 00 04 00 00 00 01 00 00 00 6a 00 01 00 00 00 00 35 89",
                MessageType::Invoke,
                0,
                1,
                0x6a,
                0,
            ),
            (
                "50 59 52 4f 00 30 00 05 00 00 00 01 00 00 00 4d 00 01 00 16 00 00 35 83",
                MessageType::Result,
                0,
                1,
                0x4d,
                0x16,
            ),
        ];
        for (bytes, kind, flags, seq, payload_len, annotations_len) in captured {
            let bytes = hex(bytes);
            let header = Header::decode(&bytes, 1 << 20).unwrap();
            assert_eq!(
                (
                    header.kind,
                    header.flags,
                    header.seq,
                    header.payload_len,
                    header.annotations_len
                ),
                (kind, flags, seq, payload_len, annotations_len)
            );
            let message = Message {
                kind,
                flags,
                seq,
                serializer: SERIALIZER_SERPENT,
                annotations: if annotations_len > 0 {
                    vec![(*b"CORR", vec![0; 16])]
                } else {
                    vec![]
                },
                payload: vec![b'x'; payload_len],
            };
            assert_eq!(message.encode()[..HEADER_LEN], bytes[..], "{kind:?}");
        }
    }

    #[test]
    fn bad_frames_are_refused_with_the_reason() {
        let good = Message::new(MessageType::Invoke, 7, b"()".to_vec()).encode();
        assert_eq!(Message::decode(&good, 100).unwrap().seq, 7);
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Message::decode(&bad, 100), Err(FrameError::BadMagic));
        let mut bad = good.clone();
        bad[5] = 47;
        assert_eq!(Message::decode(&bad, 100), Err(FrameError::BadVersion(47)));
        let mut bad = good.clone();
        bad[23] ^= 1;
        assert_eq!(Message::decode(&bad, 100), Err(FrameError::BadChecksum));
        assert_eq!(
            Message::decode(&good[..25], 100),
            Err(FrameError::Incomplete(26))
        );
        assert!(matches!(
            Message::decode(&good, 10),
            Err(FrameError::TooLarge(26, 10))
        ));
        // A tarpc length prefix is never mistaken for a Pyro frame.
        assert_eq!(Header::decode(&[0u8; 24], 100), Err(FrameError::BadMagic));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn no_bytes_make_the_decoder_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Message::decode(&bytes, 1 << 20);
        }

        #[test]
        fn valid_headers_with_any_fields_decode(
            flags in any::<u16>(), seq in any::<u16>(), serializer in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            data in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let message = Message {
                kind: MessageType::Result, flags, seq, serializer,
                annotations: vec![(*b"CORR", data)], payload,
            };
            prop_assert_eq!(Message::decode(&message.encode(), 1 << 20).unwrap(), message);
        }
    }
}
