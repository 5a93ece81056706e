//! Serpent: Python values as Python literals, Pyro4's default serializer.
//!
//! A payload is a header line (`# serpent utf-8 python3.2`) and one Python
//! literal, which Python reads with `ast.literal_eval`. [`loads`] accepts
//! what that accepts for the values Pyro4 sends (None, bools, integers of
//! any size, floats, strings with every escape form, tuples, lists, dicts,
//! sets), with nesting bounded by [`MAX_DEPTH`] so that no input can
//! overflow the stack; [`dumps`] writes what Python's serpent writes.

use num_bigint::BigInt;

/// The header line serpent writes before the literal.
pub const HEADER: &str = "# serpent utf-8 python3.2\n";
/// The deepest nesting [`loads`] accepts.
pub const MAX_DEPTH: usize = 256;

/// A Python value as serpent carries it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Set(Vec<Value>),
    /// A dict, its items in order.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// A string value.
    pub fn str(text: &str) -> Value {
        Value::Str(text.to_owned())
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python's name for its type, as `type(x).__name__`.
    pub fn python_type(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
        }
    }

    /// The value under string key `key`, if this is a dict with one.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why a payload is not serpent Pyro4 could have sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SerpentError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("at byte {at}: {what}")]
    Syntax { at: usize, what: String },
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Reads a serpent payload (the header line is optional).
///
/// ```
/// use pyro4_wire::serpent::{loads, Value};
/// let value = loads(b"# serpent utf-8 python3.2\n('a',[1,2.5],{'k':None},True)").unwrap();
/// assert_eq!(value, Value::Tuple(vec![
///     Value::str("a"),
///     Value::List(vec![Value::Int(1.into()), Value::Float(2.5)]),
///     Value::Dict(vec![(Value::str("k"), Value::None)]),
///     Value::Bool(true),
/// ]));
/// ```
pub fn loads(payload: &[u8]) -> Result<Value, SerpentError> {
    let text = std::str::from_utf8(payload).map_err(|_| SerpentError::NotUtf8)?;
    let body = match text.strip_prefix("# serpent") {
        Some(rest) => rest.split_once('\n').map_or("", |(_, body)| body),
        None => text,
    };
    let offset = text.len() - body.len();
    let mut parser = Parser {
        text: body,
        pos: 0,
        offset,
    };
    let value = parser.value(0)?;
    parser.skip_space();
    if parser.pos != body.len() {
        return Err(parser.error("text after the value"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    offset: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> SerpentError {
        SerpentError::Syntax {
            at: self.offset + self.pos,
            what: what.to_owned(),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, SerpentError> {
        if depth > MAX_DEPTH {
            return Err(SerpentError::TooDeep);
        }
        self.skip_space();
        match self.peek() {
            None => Err(self.error("a value was expected")),
            Some('(') => self.tuple(depth),
            Some('[') => {
                self.pos += 1;
                Ok(Value::List(self.items(']', depth)?))
            }
            Some('{') => self.dict_or_set(depth),
            Some('\'' | '"') => self.string().map(Value::Str),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(_) => self.word(),
        }
    }

    fn word(&mut self) -> Result<Value, SerpentError> {
        for (word, value) in [
            ("None", Value::None),
            ("True", Value::Bool(true)),
            ("False", Value::Bool(false)),
        ] {
            if let Some(after) = self.rest().strip_prefix(word)
                && !after.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(self.error("not a literal"))
    }

    /// Comma-separated values up to `close` (a trailing comma allowed).
    fn items(&mut self, close: char, depth: usize) -> Result<Vec<Value>, SerpentError> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            if !self.eat(',') {
                if self.eat(close) {
                    return Ok(items);
                }
                return Err(self.error(&format!("',' or '{close}' was expected")));
            }
        }
    }

    fn tuple(&mut self, depth: usize) -> Result<Value, SerpentError> {
        self.pos += 1;
        if self.eat(')') {
            return Ok(Value::Tuple(Vec::new()));
        }
        let first = self.value(depth + 1)?;
        if self.eat(')') {
            return Ok(first); // parenthesised, not a tuple
        }
        if !self.eat(',') {
            return Err(self.error("',' or ')' was expected"));
        }
        let mut items = vec![first];
        items.extend(self.items(')', depth)?);
        Ok(Value::Tuple(items))
    }

    fn dict_or_set(&mut self, depth: usize) -> Result<Value, SerpentError> {
        self.pos += 1;
        if self.eat('}') {
            return Ok(Value::Dict(Vec::new()));
        }
        let first = self.value(depth + 1)?;
        if !self.eat(':') {
            let mut items = vec![first];
            if self.eat(',') {
                items.extend(self.items('}', depth)?);
            } else if !self.eat('}') {
                return Err(self.error("',' or '}' was expected"));
            }
            return Ok(Value::Set(items));
        }
        let mut pairs = vec![(first, self.value(depth + 1)?)];
        loop {
            if self.eat('}') {
                return Ok(Value::Dict(pairs));
            }
            if !self.eat(',') {
                return Err(self.error("',' or '}' was expected"));
            }
            if self.eat('}') {
                return Ok(Value::Dict(pairs));
            }
            let key = self.value(depth + 1)?;
            if !self.eat(':') {
                return Err(self.error("':' was expected"));
            }
            pairs.push((key, self.value(depth + 1)?));
        }
    }

    fn number(&mut self) -> Result<Value, SerpentError> {
        let text = self.text;
        let rest = &text[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_')))
            .unwrap_or(rest.len());
        // A sign belongs to the number only at its start or after an 'e'.
        let mut end = len;
        for (i, c) in rest[..len].char_indices().skip(1) {
            if matches!(c, '+' | '-') && !matches!(rest.as_bytes()[i - 1], b'e' | b'E') {
                end = i;
                break;
            }
        }
        let text = &rest[..end];
        self.pos += end;
        let digits = text.trim_start_matches(['+', '-']);
        if digits.is_empty() {
            return Err(self.error("a number was expected"));
        }
        if digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') && !digits.starts_with('_') {
            let clean: String = text.chars().filter(|&c| c != '_' && c != '+').collect();
            return clean
                .parse::<BigInt>()
                .map(Value::Int)
                .map_err(|_| self.error("not an integer"));
        }
        if text.ends_with(['j', 'J']) {
            return Err(self.error("complex numbers are not supported"));
        }
        text.parse::<f64>()
            .map(Value::Float)
            .map_err(|_| self.error(&format!("{text:?} is not a number")))
    }

    fn string(&mut self) -> Result<String, SerpentError> {
        let quote = self.peek().expect("called on a quote");
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("a string without its closing quote"));
            };
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(out),
                '\n' => return Err(self.error("a line break inside a string")),
                '\\' => self.escape(&mut out)?,
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), SerpentError> {
        let Some(c) = self.peek() else {
            return Err(self.error("a string ends in a backslash"));
        };
        self.pos += c.len_utf8();
        let hex = |parser: &mut Self, n: usize| -> Result<char, SerpentError> {
            let digits = parser
                .rest()
                .get(..n)
                .ok_or_else(|| parser.error("a short escape"))?;
            let code =
                u32::from_str_radix(digits, 16).map_err(|_| parser.error("a bad hex escape"))?;
            parser.pos += n;
            char::from_u32(code).ok_or_else(|| parser.error("an escape that is not a character"))
        };
        match c {
            '\\' | '\'' | '"' => out.push(c),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\n' => {}
            'x' => out.push(hex(self, 2)?),
            'u' => out.push(hex(self, 4)?),
            'U' => out.push(hex(self, 8)?),
            '0'..='7' => {
                let mut code = c.to_digit(8).expect("an octal digit");
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            code = code * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(code).expect("at most 0o777"));
            }
            // Python keeps an unknown escape as it is.
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }
}

/// Writes `value` as serpent: the header line and the literal, as Python's
/// serpent writes them.
///
/// ```
/// use pyro4_wire::serpent::{dumps, Value};
/// let reply = Value::str("Buku dengan judul Programming GO berhasil dibeli!");
/// assert_eq!(
///     dumps(&reply),
///     b"# serpent utf-8 python3.2\n'Buku dengan judul Programming GO berhasil dibeli!'"
/// );
/// ```
pub fn dumps(value: &Value) -> Vec<u8> {
    let mut out = String::from(HEADER);
    write(value, &mut out);
    out.into_bytes()
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) if f.is_nan() => out.push_str("{'__class__':'float','value':'nan'}"),
        Value::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "1e30000" } else { "-1e30000" })
        }
        Value::Float(f) => out.push_str(&format!("{f:?}")),
        // serpent writes a string as Python's repr does.
        Value::Str(s) => out.push_str(&python_text::repr(s)),
        Value::Tuple(items) => {
            out.push('(');
            write_items(items, out);
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Value::List(items) => {
            out.push('[');
            write_items(items, out);
            out.push(']');
        }
        // serpent writes an empty set as an empty tuple (Python 2 had no `{}` set).
        Value::Set(items) if items.is_empty() => out.push_str("()"),
        Value::Set(items) => {
            out.push('{');
            write_items(items, out);
            out.push('}');
        }
        Value::Dict(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(k, out);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
    }
}

fn write_items(items: &[Value], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(item, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> Value {
        Value::str(text)
    }

    /// The payloads captured between the chapter's Python programs, read
    /// and written back byte for byte.
    #[test]
    fn the_captured_payloads_round_trip_exactly() {
        let captured: [&str; 4] = [
            "# serpent utf-8 python3.2\n{'handshake':'hello','object':'obj_7f28517ef9434be6805b645f52deda0a'}",
            "# serpent utf-8 python3.2\n{'handshake':'hello','meta':{'methods':['welcomeMessage'],'oneway':[],'attrs':[]}}",
            "# serpent utf-8 python3.2\n('obj_7f28517ef9434be6805b645f52deda0a','welcomeMessage',('Programming GO',),{})",
            "# serpent utf-8 python3.2\n'Buku dengan judul Programming GO berhasil dibeli!'",
        ];
        for payload in captured {
            let value = loads(payload.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(dumps(&value)).unwrap(), payload);
        }
        // And their lengths are the ones the captured headers announce.
        assert_eq!(captured.map(str::len), [0x5f, 0x6c, 0x6a, 0x4d]);
    }

    #[test]
    fn literals_read_as_python_reads_them() {
        let read = |text: &str| loads(text.as_bytes());
        assert_eq!(read("(1)").unwrap(), Value::Int(1.into()));
        assert_eq!(
            read("(1,)").unwrap(),
            Value::Tuple(vec![Value::Int(1.into())])
        );
        assert_eq!(read("()").unwrap(), Value::Tuple(vec![]));
        assert_eq!(
            read("{1,2,}").unwrap(),
            Value::Set(vec![Value::Int(1.into()), Value::Int(2.into())])
        );
        assert_eq!(
            read("[ 1 , -2 ]").unwrap(),
            Value::List(vec![Value::Int(1.into()), Value::Int((-2).into())])
        );
        assert_eq!(read("1e30000").unwrap(), Value::Float(f64::INFINITY));
        assert_eq!(read("-1.5e-3").unwrap(), Value::Float(-0.0015));
        let big = "1180591620717411303424";
        assert_eq!(read(big).unwrap(), Value::Int(big.parse().unwrap()));
        assert_eq!(
            read(r#"'a\'b\\c\n\t\x41\u00e9\U0001F600\101'"#).unwrap(),
            s("a'b\\c\n\tAé😀A")
        );
        assert_eq!(read(r#""it's""#).unwrap(), s("it's"));
        assert_eq!(read("'ñ日本'").unwrap(), s("ñ日本"));
        for bad in [
            "",
            "(",
            "[1 2]",
            "{1:}",
            "'open",
            "nope",
            "1j",
            "(1,2",
            "{'a':1 'b':2}",
            "'\\x4'",
            "1 2",
        ] {
            assert!(read(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn nesting_100000_deep_is_refused_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(loads(deep.as_bytes()), Err(SerpentError::TooDeep));
        let ok = format!("{}{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(loads(ok.as_bytes()).is_ok());
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::None),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Int(i.into())),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            any::<String>().prop_map(Value::Str),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::vec((any::<String>().prop_map(Value::Str), inner), 0..6)
                    .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn no_bytes_make_the_parser_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = loads(&bytes);
        }

        #[test]
        fn no_text_of_literal_characters_makes_it_panic(text in "[\\[\\](){}:,'\"\\\\ xuUN0-9.eE+-]{0,64}") {
            let _ = loads(text.as_bytes());
        }

        #[test]
        fn what_is_written_reads_back(v in value()) {
            prop_assert_eq!(loads(&dumps(&v)).unwrap(), v);
        }
    }
}
