//! A child process that cannot outlive the test that started it.

use std::process::Child;

/// Kills and reaps its child when dropped, on every path: a test that
/// fails half-way (a panic unwinds through the guard) leaves no Python
/// worker or server process behind.
///
/// ```
/// use plumbing::child::KillOnDrop;
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
