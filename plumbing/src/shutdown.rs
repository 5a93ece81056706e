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
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        });
        async move {
            match handlers {
                Ok((mut interrupt, mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
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
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        });
        if let Ok((mut interrupt, mut terminate)) = handlers {
            let (first, first_seen) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                let _ = first.send(());
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                force();
            });
            return Box::pin(async move {
                let _ = first_seen.await;
            });
        }
    }
    let _ = force;
    Box::pin(signal())
}
