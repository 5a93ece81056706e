//! The signal a program stops on: Ctrl-C (SIGINT) or, on Unix, SIGTERM.
//!
//! Servers take a shutdown *future* rather than listening for signals
//! themselves, so that tests and demos can stop them with a channel; `main`
//! passes this one.

use std::future::Future;
use std::pin::Pin;

/// A future that completes on Ctrl-C or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: call it before a server announces itself, or a signal sent
/// right after the announcement would kill the process uncleanly. Must be
/// called inside a tokio runtime.
///
/// ```no_run
/// # async fn example() {
/// let stop = plumbing::shutdown::signal();
/// println!("ready");
/// stop.await;
/// println!("stopping");
/// # }
/// ```
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        let handlers = unix::Handlers::install();
        async move {
            match handlers {
                Ok(mut handlers) => handlers.next().await,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Like [`signal`], for a program whose stop can take a while (a worker
/// finishing its tasks): the future completes on the first Ctrl-C or
/// SIGTERM, and a second one calls `force`, as a second Ctrl-C makes
/// Celery's worker stop at once (its cold shutdown). Must be called inside
/// a tokio runtime; the handlers are installed at once.
pub fn signal_twice(
    force: impl FnOnce() + Send + 'static,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
    #[cfg(unix)]
    if let Ok(mut handlers) = unix::Handlers::install() {
        let (first, first_seen) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            handlers.next().await;
            let _ = first.send(());
            handlers.next().await;
            force();
        });
        return Box::pin(async move {
            let _ = first_seen.await;
        });
    }
    let _ = force;
    Box::pin(signal())
}

#[cfg(unix)]
mod unix {
    use tokio::signal::unix::{Signal, SignalKind, signal};

    /// SIGINT and SIGTERM, listened for from the moment they are installed.
    pub(super) struct Handlers {
        interrupt: Signal,
        terminate: Signal,
    }

    impl Handlers {
        pub(super) fn install() -> std::io::Result<Self> {
            Ok(Handlers {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }

        /// The next SIGINT or SIGTERM.
        pub(super) async fn next(&mut self) {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
    }
}
