//! The Python peers the interop tests run against, brought by the tests
//! themselves.
//!
//! The interop tests run the chapter's own libraries (Celery, Pyro4,
//! Flower) from PyPI, pinned in `python-requirements.txt` at the top of the
//! workspace. The first test that needs Python creates a virtual environment
//! in `.venv` from that file; later tests, and later runs, reuse it until the
//! file changes. A file lock makes the creation happen once, however many
//! test processes and threads ask at the same time.
//!
//! `PEER_PYTHON` names a Python to use instead, as it is (one that already
//! has the requirements).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned requirements, as the environment is built from them.
pub const REQUIREMENTS: &str = include_str!("../../python-requirements.txt");
/// The environment variable naming a ready Python to use instead.
pub const PYTHON_ENV: &str = "PEER_PYTHON";

/// The top of the workspace.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A Python with the pinned requirements, creating `.venv` on first use.
///
/// Panics with one line that says what is missing when it cannot (tests
/// that need Python fail; none is skipped).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(prepare) {
        Ok(python) => python.clone(),
        Err(err) => panic!("{err}"),
    }
}

fn prepare() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os(PYTHON_ENV) {
        return Ok(PathBuf::from(python));
    }
    let root = workspace_root();
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
