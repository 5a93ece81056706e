//! A child process that cannot outlive the test that started it.

use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Kills and reaps its child when dropped, on every path: a test that
/// fails half-way (a panic unwinds through the guard) leaves no Python
/// worker or server process behind.
///
/// ```
/// use test_support::child::KillOnDrop;
/// let sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
/// let guard = KillOnDrop::new(sleeper);
/// let pid = guard.id();
/// drop(guard);
/// assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
/// ```
#[derive(Debug)]
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> Self {
        KillOnDrop(Some(child))
    }

    /// The child, e.g. to signal it or take its pipes.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("present until dropped or released")
    }

    pub fn id(&self) -> u32 {
        self.0
            .as_ref()
            .expect("present until dropped or released")
            .id()
    }

    /// Hands the child back, for a test that waits for it to exit by itself.
    pub fn release(mut self) -> Child {
        self.0.take().expect("present until dropped or released")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines `out` prints, read on a thread of their own (so a test can
/// wait for one with a bound: [`line_with`]).
pub fn lines_of(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    use std::io::BufRead;
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    lines
}

/// Waits (up to 30 s) for a line with all of `words`; returns it. Panics
/// with what it was waiting for when none comes.
pub fn line_with(lines: &Receiver<String>, words: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if words.iter().all(|w| line.contains(w)) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line with {words:?}"),
        }
    }
}

/// Starts `command` with its stdout read line by line ([`lines_of`]) and its
/// stderr dropped; the child is killed with the guard.
pub fn spawn_lines(
    mut command: std::process::Command,
) -> std::io::Result<(KillOnDrop, Receiver<String>)> {
    use std::process::Stdio;
    let mut child = KillOnDrop::new(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = child.child().stdout.take().expect("stdout is piped");
    Ok((child, lines_of(stdout)))
}

/// What a finished child printed on stdout; panics with its whole output
/// unless it succeeded.
pub fn stdout_of(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
