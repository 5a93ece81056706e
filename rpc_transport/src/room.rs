//! Room for one more: when a server is full, its least recently active
//! Pyro4 connection is closed.
//!
//! tarpc connections are closed after a minute of silence, so a server full
//! of idle tarpc clients empties by itself. Pyro4 connections cannot be:
//! Python's proxies keep theirs for life and do not reconnect. Left at that,
//! 256 idle Pyro4 clients (or one hostile program) would hold a server full
//! for ever. Instead each Pyro4 connection is known here with the time of
//! its last request, and a connection turned away for want of room closes
//! the one idle longest (between its requests, never in the middle of
//! one), so the next attempt gets in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The Pyro4 connections of one server.
#[derive(Clone, Debug, Default)]
pub struct PyroConnections {
    members: Arc<Mutex<Members>>,
}

#[derive(Debug, Default)]
struct Members {
    next_id: u64,
    by_id: HashMap<u64, Arc<Member>>,
}

#[derive(Debug)]
struct Member {
    last_request: Mutex<Instant>,
    close: Notify,
}

/// One connection's place among them: its daemon's
/// [`Watch`](pyro4_wire::daemon::Watch). Dropping it removes the connection.
#[derive(Debug)]
pub struct Membership {
    id: u64,
    member: Arc<Member>,
    connections: PyroConnections,
}

impl PyroConnections {
    fn members(&self) -> std::sync::MutexGuard<'_, Members> {
        self.members.lock().expect("Pyro4 connections poisoned")
    }

    /// Adds a connection, active as of now.
    pub fn join(&self) -> Membership {
        let member = Arc::new(Member {
            last_request: Mutex::new(Instant::now()),
            close: Notify::new(),
        });
        let mut members = self.members();
        let id = members.next_id;
        members.next_id += 1;
        members.by_id.insert(id, member.clone());
        Membership {
            id,
            member,
            connections: self.clone(),
        }
    }

    /// Closes the connection whose last request is oldest (as soon as it is
    /// between requests); false if there is none.
    pub fn close_least_active(&self) -> bool {
        let mut members = self.members();
        let oldest = members
            .by_id
            .iter()
            .min_by_key(|(_, member)| *member.last_request.lock().expect("poisoned"))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| members.by_id.remove(&id)) {
            Some(member) => {
                member.close.notify_one();
                true
            }
            None => false,
        }
    }
}

impl pyro4_wire::daemon::Watch for Membership {
    fn active(&self) {
        *self.member.last_request.lock().expect("poisoned") = Instant::now();
    }

    async fn closing(&self) {
        self.member.close.notified().await
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.connections.members().by_id.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyro4_wire::daemon::Watch;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_least_recently_active_connection_is_closed_first() {
        let connections = PyroConnections::default();
        let old = connections.join();
        tokio::time::advance(Duration::from_secs(1)).await;
        let young = connections.join();
        tokio::time::advance(Duration::from_secs(1)).await;
        old.active(); // the old one made a request: the young one is now idle longest
        assert!(connections.close_least_active());
        tokio::time::timeout(Duration::from_secs(1), young.closing())
            .await
            .expect("the idle one is closed");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), old.closing())
                .await
                .is_err(),
            "the active one stays"
        );
        drop(young);
        assert!(connections.close_least_active());
        drop(old);
        assert!(!connections.close_least_active());
        assert!(connections.members().by_id.is_empty());
    }
}
