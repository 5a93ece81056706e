//! The signal a program stops on: Ctrl-C (SIGINT) or, on Unix, SIGTERM.
//!
//! Servers take a shutdown *future* rather than listening for signals
//! themselves, so that tests and demos can stop them with a channel; `main`
//! passes this one.

use std::future::Future;

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
