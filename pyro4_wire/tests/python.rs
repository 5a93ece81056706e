//! The serpent codec against Python's own serpent (the pinned one Pyro4
//! 4.82 uses): what Rust writes Python reads as the same value, and what
//! Python writes Rust reads.

use std::process::Command;

use pyro4_wire::serpent::{Value, dumps, loads};

/// Runs `code` in the tests' Python with `input` on stdin; returns stdout.
fn python(code: &str, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(test_support::python::python())
        .args(["-c", code])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    output.stdout
}

fn samples() -> Vec<Value> {
    vec![
        Value::str("Buku dengan judul Programming GO berhasil dibeli!"),
        Value::str("it's \"quoted\" \\ \n\t\r\u{7}\u{1b} ñ 日本 😀"),
        Value::Int("-1180591620717411303424".parse().unwrap()),
        Value::Float(0.1),
        Value::Float(f64::INFINITY),
        Value::Tuple(vec![Value::str("x")]),
        Value::Set(vec![Value::Int(1.into()), Value::Int(2.into())]),
        Value::Dict(vec![
            (Value::str("handshake"), Value::str("hello")),
            (
                Value::str("meta"),
                Value::Dict(vec![(
                    Value::str("methods"),
                    Value::List(vec![Value::str("welcomeMessage")]),
                )]),
            ),
        ]),
        Value::Tuple(vec![
            Value::None,
            Value::Bool(true),
            Value::Bool(false),
            Value::Tuple(vec![]),
        ]),
    ]
}

#[test]
fn python_reads_what_rust_writes_and_writes_what_rust_reads() {
    for value in samples() {
        let written = dumps(&value);
        // Python reads it, and writes it back with its own serpent.
        let again = python(
            "import sys, serpent; sys.stdout.buffer.write(serpent.dumps(serpent.loads(sys.stdin.buffer.read())))",
            &written,
        );
        assert_eq!(
            loads(&again).unwrap(),
            value,
            "{}",
            String::from_utf8_lossy(&again)
        );
    }
}
