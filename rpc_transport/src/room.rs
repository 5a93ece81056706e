//! Room for one more: when a server is full, its least recently active
//! connection is closed, so that a newcomer gets in.
//!
//! A server holds at most [`MAX_CONNECTIONS`](crate::MAX_CONNECTIONS).
//! Without more, 256 idle clients, or 256 that each announce a large frame
//! and trickle it, would lock every other client out (tarpc's idle timeout
//! takes a minute, and Pyro4 connections are never closed for idleness:
//! Python's proxies do not reconnect). So each connection, of either
//! protocol, is known here with the time of its last whole request, and a
//! newcomer turned away for want of room closes one and takes its place: a
//! connection that has never sent a whole request (silent, or trickling a
//! frame it never finishes) before any that has, the oldest of those
//! first; otherwise the one whose last request is oldest.
//!
//! That is fair to every client that uses its connection: whoever holds a
//! place without ever asking anything goes first, so a flood of them cannot
//! push out a long-lived link that is merely quiet (a ring server's link to
//! its next hop); among clients that did ask, the one idle longest goes,
//! never one that asked since; a Pyro4 connection is closed between its
//! requests, never in the middle of one, and a Python proxy that is closed
//! connects again on its next call only if its program asks, as after any
//! network failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The connections of one server, both protocols.
#[derive(Clone, Debug, Default)]
pub struct Room {
    members: Arc<Mutex<Members>>,
}

#[derive(Debug, Default)]
struct Members {
    next_id: u64,
    by_id: HashMap<u64, Arc<Member>>,
}

#[derive(Debug)]
struct Member {
    /// When it joined, and when its last whole request came, if any.
    joined: Instant,
    last_request: Mutex<Option<Instant>>,
    close: Notify,
}

/// One connection's place among them: a Pyro4 daemon's
/// [`Watch`](pyro4_wire::daemon::Watch), or a tarpc connection's (see
/// [`Membership::activity`]). Dropping it removes the connection.
#[derive(Debug)]
pub struct Membership {
    id: u64,
    member: Arc<Member>,
    connections: Room,
}

impl Membership {
    /// What marks the connection active: call it on each whole request.
    pub fn activity(&self) -> impl Fn() + Send + Sync + 'static {
        let member = Arc::clone(&self.member);
        move || member.touch()
    }
}

impl Member {
    fn touch(&self) {
        *self.last_request.lock().expect("poisoned") = Some(Instant::now());
    }

    /// Which goes first to make room: a connection that never sent a whole
    /// request before any that did, then the one idle longest.
    fn eviction_order(&self) -> (bool, Instant) {
        match *self.last_request.lock().expect("poisoned") {
            Some(last) => (true, last),
            None => (false, self.joined),
        }
    }
}

impl Room {
    fn members(&self) -> std::sync::MutexGuard<'_, Members> {
        self.members.lock().expect("connections poisoned")
    }

    /// Adds a connection, which has asked nothing yet.
    pub fn join(&self) -> Membership {
        let member = Arc::new(Member {
            joined: Instant::now(),
            last_request: Mutex::new(None),
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

    /// Closes the connection that goes first to make room (one that never
    /// asked anything, oldest first; else the one idle longest), as soon as
    /// it is between requests; false if there is none.
    pub fn close_least_active(&self) -> bool {
        let mut members = self.members();
        let oldest = members
            .by_id
            .iter()
            // Ties (joined at the same instant) go to the one that joined
            // first.
            .min_by_key(|(id, member)| (member.eviction_order(), **id))
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
        self.member.touch();
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
        let connections = Room::default();
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

    #[tokio::test(start_paused = true)]
    async fn one_that_never_asked_goes_before_a_quiet_one_that_did() {
        let connections = Room::default();
        let quiet_link = connections.join();
        quiet_link.active();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let silent = connections.join();
        let trickler = connections.join();
        assert!(connections.close_least_active());
        tokio::time::timeout(Duration::from_secs(1), silent.closing())
            .await
            .expect("the oldest that never asked goes first");
        drop(silent);
        assert!(connections.close_least_active());
        tokio::time::timeout(Duration::from_secs(1), trickler.closing())
            .await
            .expect("then the next that never asked");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), quiet_link.closing())
                .await
                .is_err(),
            "the quiet link that once asked stays"
        );
    }
}
