//! Python's `marshal` format (version 4, what Python 3 writes), for the
//! values Pyro4 sends with it: Pyro4's `marshal` serializer (id 3) is in
//! its default accepted set, so a Python program configured with
//! `SERIALIZER = "marshal"` must be answered in it.
//!
//! Each value is a type byte and its data, little-endian: `N` None, `T`/`F`
//! booleans, `i` a 32-bit int, `l` a long (a signed count of 15-bit
//! digits, then the digits), `g` a float, `u`/`t`/`a`/`A` a string with a
//! 32-bit length, `z`/`Z` one with an 8-bit length, `(`/`)` a tuple with a
//! 32- or 8-bit count, `[` a list, `<`/`>` a set, `{` a dict (pairs up to a
//! `0`). A type byte with bit 0x80 set is remembered, in the order met;
//! `r` and an index repeats a remembered value.
//!
//! Reading is bounded, because the bytes come from a peer: nesting depth,
//! and the number of values a message expands to (repeats could otherwise
//! make a small message into an exponentially large tree). Bytes, code
//! objects and complex numbers are refused. Writing uses no repeats.
//!
//! ```
//! use pyro4_wire::marshal;
//! use pyro4_wire::serpent::Value;
//! let call = Value::Tuple(vec![Value::str("obj"), Value::Int(7.into())]);
//! assert_eq!(marshal::loads(&marshal::dumps(&call)).unwrap(), call);
//! ```

use num_bigint::{BigInt, Sign};

use crate::serpent::Value;

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;
/// Most values one message expands to.
const MAX_VALUES: usize = 1 << 20;
const FLAG_REF: u8 = 0x80;

/// Why bytes are not a marshal value Pyro4 could have sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarshalError {
    #[error("the data ends too early")]
    Truncated,
    #[error("type {0:?} is not supported here")]
    Unsupported(char),
    #[error("unknown type byte {0:#04x}")]
    UnknownType(u8),
    #[error("a string is not UTF-8")]
    NotUtf8,
    #[error("a repeat refers to value {0}, which is not there (yet)")]
    BadRef(u32),
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("expands to more than {MAX_VALUES} values")]
    TooLarge,
    #[error("{0} bytes left over after the value")]
    Trailing(usize),
    #[error("a long has a digit out of range")]
    BadLong,
}

/// Reads one marshal value, which must fill `bytes`.
pub fn loads(bytes: &[u8]) -> Result<Value, MarshalError> {
    let mut reader = Reader {
        bytes,
        at: 0,
        refs: Vec::new(),
        values: 0,
    };
    let value = reader.value(0)?;
    match bytes.len() - reader.at {
        0 => Ok(value),
        left => Err(MarshalError::Trailing(left)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Remembered values; `None` while a container is still being read.
    refs: Vec<Option<Value>>,
    values: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], MarshalError> {
        let end = self.at.checked_add(len).ok_or(MarshalError::Truncated)?;
        let taken = self
            .bytes
            .get(self.at..end)
            .ok_or(MarshalError::Truncated)?;
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, MarshalError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, MarshalError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self, wide: bool) -> Result<usize, MarshalError> {
        let n = if wide {
            self.u32()? as usize
        } else {
            usize::from(self.byte()?)
        };
        // Each item takes at least one byte: a count past what is left is a lie.
        if n > self.bytes.len() - self.at {
            return Err(MarshalError::Truncated);
        }
        Ok(n)
    }

    fn text(&mut self, len: usize) -> Result<Value, MarshalError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Value::str)
            .map_err(|_| MarshalError::NotUtf8)
    }

    fn value(&mut self, depth: usize) -> Result<Value, MarshalError> {
        if depth > MAX_DEPTH {
            return Err(MarshalError::TooDeep);
        }
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(MarshalError::TooLarge);
        }
        let code = self.byte()?;
        let remembered = code & FLAG_REF != 0;
        // Its place among the remembered values, taken before its items.
        let slot = remembered.then(|| {
            self.refs.push(None);
            self.refs.len() - 1
        });
        let value = match code & !FLAG_REF {
            b'N' => Value::None,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' => Value::Int((self.u32()? as i32).into()),
            b'l' => self.long()?,
            b'g' => {
                let b = self.take(8)?;
                Value::Float(f64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            b'u' | b't' | b'a' | b'A' => {
                let len = self.u32()? as usize;
                self.text(len)?
            }
            b'z' | b'Z' => {
                let len = usize::from(self.byte()?);
                self.text(len)?
            }
            code @ (b'(' | b')' | b'[' | b'<' | b'>') => {
                let n = self.count(code != b')')?;
                let items = (0..n)
                    .map(|_| self.value(depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                match code {
                    b'(' | b')' => Value::Tuple(items),
                    b'[' => Value::List(items),
                    _ => Value::Set(items),
                }
            }
            b'{' => {
                let mut pairs = Vec::new();
                loop {
                    if self.bytes.get(self.at) == Some(&b'0') {
                        self.at += 1;
                        break;
                    }
                    let key = self.value(depth + 1)?;
                    let value = self.value(depth + 1)?;
                    pairs.push((key, value));
                }
                Value::Dict(pairs)
            }
            b'r' => {
                let index = self.u32()?;
                let value = self
                    .refs
                    .get(index as usize)
                    .cloned()
                    .flatten()
                    .ok_or(MarshalError::BadRef(index))?;
                self.values = self
                    .values
                    .checked_add(size(&value))
                    .filter(|n| *n <= MAX_VALUES)
                    .ok_or(MarshalError::TooLarge)?;
                value
            }
            code @ (b's' | b'c' | b'x' | b'y' | b'f' | b'S' | b'.' | b'?') => {
                return Err(MarshalError::Unsupported(char::from(code)));
            }
            other => return Err(MarshalError::UnknownType(other)),
        };
        if let Some(slot) = slot {
            self.refs[slot] = Some(value.clone());
        }
        Ok(value)
    }

    /// A long: its digit count (negative for a negative number), then
    /// 15-bit digits, least significant first.
    fn long(&mut self) -> Result<Value, MarshalError> {
        let n = self.u32()? as i32;
        let digits = n.unsigned_abs() as usize;
        if digits > (self.bytes.len() - self.at) / 2 {
            return Err(MarshalError::Truncated);
        }
        let mut magnitude = BigInt::from(0);
        let raw = self.take(digits * 2)?;
        for pair in raw.chunks_exact(2).rev() {
            let digit = u16::from_le_bytes([pair[0], pair[1]]);
            if digit >= 1 << 15 {
                return Err(MarshalError::BadLong);
            }
            magnitude = (magnitude << 15) + digit;
        }
        Ok(Value::Int(if n < 0 { -magnitude } else { magnitude }))
    }
}

/// How many values `value` counts for.
fn size(value: &Value) -> usize {
    1 + match value {
        Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
            items.iter().map(size).sum()
        }
        Value::Dict(pairs) => pairs.iter().map(|(k, v)| size(k) + size(v)).sum(),
        _ => 0,
    }
}

/// Writes `value` as Python's `marshal.dumps` reads it.
pub fn dumps(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    let items = |code: u8, items: &[Value], out: &mut Vec<u8>| {
        out.push(code);
        out.extend_from_slice(&(items.len() as u32).to_le_bytes());
        for item in items {
            write(item, out);
        }
    };
    match value {
        Value::None => out.push(b'N'),
        Value::Bool(true) => out.push(b'T'),
        Value::Bool(false) => out.push(b'F'),
        Value::Int(i) => match i32::try_from(i) {
            Ok(small) => {
                out.push(b'i');
                out.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => write_long(i, out),
        },
        Value::Float(f) => {
            out.push(b'g');
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(b'u');
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Tuple(v) => items(b'(', v, out),
        Value::List(v) => items(b'[', v, out),
        Value::Set(v) => items(b'<', v, out),
        Value::Dict(pairs) => {
            out.push(b'{');
            for (key, value) in pairs {
                write(key, out);
                write(value, out);
            }
            out.push(b'0');
        }
    }
}

fn write_long(i: &BigInt, out: &mut Vec<u8>) {
    let (sign, bits) = i.to_u32_digits();
    let mut magnitude = num_bigint::BigUint::from_slice(&bits);
    let mut digits = Vec::new();
    let mask = num_bigint::BigUint::from(0x7fffu32);
    while magnitude > num_bigint::BigUint::ZERO {
        let digit = &magnitude & &mask;
        digits.push(u16::try_from(digit).expect("15 bits"));
        magnitude >>= 15;
    }
    let count = digits.len() as i32;
    out.push(b'l');
    let signed = if sign == Sign::Minus { -count } else { count };
    out.extend_from_slice(&signed.to_le_bytes());
    for digit in digits {
        out.extend_from_slice(&digit.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes Python 3.11's `marshal.dumps` wrote, read back.
    #[test]
    fn pythons_own_bytes_read() {
        // marshal.dumps(("obj_1", "welcomeMessage", ["Go"], {}))
        let call = b")\x04\xda\x05obj_1\xda\x0ewelcomeMessage[\x01\x00\x00\x00\xda\x02Go{0";
        assert_eq!(
            loads(call).unwrap(),
            Value::Tuple(vec![
                Value::str("obj_1"),
                Value::str("welcomeMessage"),
                Value::List(vec![Value::str("Go")]),
                Value::Dict(vec![]),
            ])
        );
        // marshal.dumps([2**70, -2**70, "x", "x"]): a long, and a repeat
        let long = b"[\x04\x00\x00\x00l\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04l\xfb\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\xda\x01xr\x00\x00\x00\x00";
        let big: BigInt = BigInt::from(1) << 70;
        assert_eq!(
            loads(long).unwrap(),
            Value::List(vec![
                Value::Int(big.clone()),
                Value::Int(-big),
                Value::str("x"),
                Value::str("x"),
            ])
        );
    }

    #[test]
    fn repeats_cannot_blow_up() {
        // (v0, v1, ..., v40) where v0 = [] and each next = [prev, prev],
        // by repeats: 2^40 values from a few hundred bytes.
        let mut message = vec![b'(', 41, 0, 0, 0, b'[' | FLAG_REF, 0, 0, 0, 0];
        for level in 0..40u32 {
            message.extend([b'[' | FLAG_REF, 2, 0, 0, 0, b'r']);
            message.extend(level.to_le_bytes());
            message.push(b'r');
            message.extend(level.to_le_bytes());
        }
        assert_eq!(loads(&message), Err(MarshalError::TooLarge));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::None),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Int(BigInt::from(i) * BigInt::from(i))),
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".*".prop_map(Value::Str),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Tuple),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]
        #[test]
        fn written_values_read_back(value in value()) {
            prop_assert_eq!(loads(&dumps(&value)).unwrap(), value);
        }

        /// Whatever a peer sends, a value or an error, never a panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = loads(&bytes);
        }
    }
}
