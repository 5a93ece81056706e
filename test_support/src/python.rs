//! The Python peers the interop tests run against, brought by the tests
//! themselves.
//!
//! The interop tests run the chapter's own libraries (Celery, Pyro4,
//! Flower) from PyPI, pinned in `python-requirements.txt` beside this
//! crate. The first test that needs Python creates a virtual environment
//! in `test_support/.venv` from that file; later tests, and later runs, reuse it until the
//! file changes. A file lock makes the creation happen once, however many
//! test processes and threads ask at the same time.
//!
//! `PEER_PYTHON` names a Python to use instead, as it is (one that already
//! has the requirements).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::child::{KillOnDrop, line_with, spawn_lines};

/// The pinned requirements, as the environment is built from them.
pub const REQUIREMENTS: &str = include_str!("../python-requirements.txt");
/// The environment variable naming a ready Python to use instead.
pub const PYTHON_ENV: &str = "PEER_PYTHON";

/// Where the environment lives: beside its requirements, in this crate's
/// folder.
fn home() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Python with the pinned requirements, creating `.venv` on first use.
///
/// Panics with one line that says what is missing when it cannot (tests
/// that need Python fail; none is skipped).
pub fn python() -> PathBuf {
    try_python().unwrap_or_else(|err| panic!("{err}"))
}

/// [`python`], for a program rather than a test: what is missing comes back
/// as an error.
pub fn try_python() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON.get_or_init(prepare).clone()
}

fn prepare() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os(PYTHON_ENV) {
        return Ok(PathBuf::from(python));
    }
    let root = home();
    let venv = root.join(".venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join(".requirements-installed");
    let lock_path = root.join(".venv.lock");
    let lock = File::create(&lock_path)
        .map_err(|err| format!("cannot create {}: {err}", lock_path.display()))?;
    // Blocks while another test process builds the environment.
    lock.lock()
        .map_err(|err| format!("cannot lock {}: {err}", lock_path.display()))?;
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == REQUIREMENTS) {
        return Ok(python);
    }
    eprintln!(
        "creating the tests' Python environment in {} from python-requirements.txt (once)",
        venv.display()
    );
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv failed: install python3 and its venv module (apt-get install python3-venv)",
    )?;
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(root.join("python-requirements.txt")),
        "pip could not install python-requirements.txt (is PyPI reachable?)",
    )?;
    std::fs::write(&stamp, REQUIREMENTS)
        .map_err(|err| format!("cannot write {}: {err}", stamp.display()))?;
    Ok(python)
}

fn run(command: &mut Command, what_failed: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|err| format!("{what_failed}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what_failed}\n{}",
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }
}

/// Python's Pyro4 name server, `python -m Pyro4.naming`, on a free port.
#[derive(Debug)]
pub struct PythonNameServer {
    /// Killed with the guard.
    pub process: KillOnDrop,
    pub port: u16,
}

impl PythonNameServer {
    /// Starts one (on `localhost`, Pyro4's default host) with `env` (Pyro4
    /// settings) and waits until it says where it runs. Panics when it
    /// cannot (a test that needs it fails).
    pub fn start(env: &[(&str, String)]) -> Self {
        let mut command = Command::new(python());
        command.args(["-u", "-m", "Pyro4.naming", "-p", "0"]);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let (process, lines) = spawn_lines(command).expect("cannot start python -m Pyro4.naming");
        // "NS running on localhost:39373 (127.0.0.1)"
        let line = line_with(&lines, &["NS running on"]);
        let port = line
            .split_once("localhost:")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PythonNameServer { process, port }
    }

    /// Its address, for `--ns`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A command running the Python script `script` (unbuffered, so its lines
/// can be read as they come) in `dir`, with Pyro4 told that the name server
/// is `ns`'s port (`PYRO_NS_PORT`; the host stays Pyro4's default,
/// `localhost`), and given its peers' settings (TLS, if `ns` is).
pub fn pyro4_script(dir: &Path, script: &str, ns: &crate::TestNameServer) -> Command {
    let mut command = Command::new(python());
    command
        .arg("-u")
        .arg(script)
        .current_dir(dir)
        .env("PYRO_NS_PORT", ns.port().to_string())
        .envs(ns.peer_env());
    command
}

/// Runs `command`, a script of cases that prints one line per case (the
/// value, or the exception's type and message) through
/// `test_support/python/cases.py`, checks that it ran to the end, and
/// returns its lines.
pub fn case_lines(command: &mut Command) -> Vec<String> {
    // Where the scripts find `cases.py`, their shared reporting.
    let output = command
        .env("PYTHONPATH", home().join("python"))
        .output()
        .expect("cannot run the case script");
    assert!(
        output.status.success(),
        "the case script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    crate::child::stdout_of(&output)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A differential test's verdict: `cases` outcomes from the Python side,
/// and the Rust side's the same, case by case (the first that differs is
/// shown alone).
pub fn assert_alike(python: &[String], rust: &[String], cases: usize) {
    assert_eq!(python.len(), cases, "{python:#?}");
    for (python, rust) in python.iter().zip(rust) {
        assert_eq!(rust, python);
    }
    assert_eq!(rust.len(), python.len(), "{rust:#?}");
}
