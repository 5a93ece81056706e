//! The name table both faces of the name server share: the tarpc
//! [`Naming`](crate::Naming) service and Pyro4's `Pyro.NameServer` object
//! read and write the same registrations.
//!
//! Leased entries carry an expiry time and are dropped lazily: a lookup of an
//! expired name fails as unknown, and listing or registering purges every
//! expired entry. No timer task is needed, and an expired name is never
//! served.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Location, MAX_NAME_LEN, MAX_PATTERN_LEN, NAME_SERVER_ID, NamingError, validate_name};
use regex::{Regex, RegexBuilder};

const MIN_LEASE: Duration = Duration::from_millis(100);
const MAX_LEASE: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug)]
struct LeaseState {
    id: u64,
    ttl: Duration,
    expires: Instant,
    /// The connection that took it: the lease ends when that connection
    /// closes, as a ZooKeeper ephemeral node does with its session.
    holder: ConnectionId,
}

/// Which connection to the name server took a lease (see
/// [`NameTable::release_held_by`]).
pub type ConnectionId = u64;

/// A registration's metadata: Pyro4's "yellow pages" tags, searched by
/// `list(metadata_all=...)` / `list(metadata_any=...)`.
pub type Metadata = BTreeSet<String>;
/// Most metadata strings one registration carries.
pub const MAX_METADATA: usize = 64;
/// What the name server registers itself with, as Python's does.
pub const NAME_SERVER_CLASS: &str = "class:Pyro4.naming.NameServer";

/// Checks metadata against the limits: nothing grows without bound.
pub fn validate_metadata(metadata: &Metadata) -> Result<(), NamingError> {
    if metadata.len() > MAX_METADATA || metadata.iter().any(|m| m.len() > MAX_NAME_LEN) {
        return Err(NamingError::TooMuchMetadata);
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct Entry {
    location: Location,
    lease: Option<LeaseState>,
    metadata: Metadata,
}

impl Entry {
    fn alive(&self, now: Instant) -> bool {
        self.lease.is_none_or(|lease| lease.expires > now)
    }
}

#[derive(Debug)]
struct Table {
    names: BTreeMap<String, Entry>,
    max_names: usize,
    next_lease: u64,
    next_connection: ConnectionId,
}

impl Table {
    fn purge_expired(&mut self, now: Instant) {
        self.names.retain(|name, entry| {
            let alive = entry.alive(now);
            if !alive {
                tracing::info!(%name, location = %entry.location, "lease expired");
            }
            alive
        });
    }

    /// How many names are registered besides the name server's own.
    fn others(&self) -> usize {
        self.names.len() - usize::from(self.names.contains_key(NAME_SERVER_ID))
    }

    /// The live entry for `name`, dropping it if its lease has run out.
    fn live(&mut self, name: &str, now: Instant) -> Option<Entry> {
        let entry = self.names.get(name)?.clone();
        if entry.alive(now) {
            Some(entry)
        } else {
            self.names.remove(name);
            None
        }
    }

    fn insert(&mut self, name: String, entry: Entry, safe: bool) -> Result<(), NamingError> {
        validate_name(&name)?;
        validate_metadata(&entry.metadata)?;
        let now = Instant::now();
        if self.live(&name, now).is_some() {
            if safe {
                return Err(NamingError::AlreadyRegistered(name));
            }
        } else if name != NAME_SERVER_ID {
            if self.others() >= self.max_names {
                self.purge_expired(now);
            }
            if self.others() >= self.max_names {
                return Err(NamingError::TableFull(self.max_names));
            }
        }
        tracing::info!(%name, location = %entry.location, leased = entry.lease.is_some(), "registered");
        self.names.insert(name, entry);
        Ok(())
    }

    /// Up to `most` live names that `keep` accepts, after `after`.
    fn page(
        &mut self,
        after: Option<&str>,
        most: usize,
        keep: impl Fn(&str, &Metadata) -> bool,
    ) -> Vec<(String, Location)> {
        use std::ops::Bound;
        self.purge_expired(Instant::now());
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.names
            .range::<str, _>((start, Bound::Unbounded))
            .filter(|(name, entry)| keep(name, &entry.metadata))
            .take(most)
            .map(|(name, entry)| (name.clone(), entry.location.clone()))
            .collect()
    }

    /// Removes what `remove` accepts, never the name server's own entry
    /// (as Python's name server).
    fn remove_where(&mut self, remove: impl Fn(&str) -> bool) -> usize {
        let before = self.names.len();
        self.names
            .retain(|name, _| name == NAME_SERVER_ID || !remove(name));
        before - self.names.len()
    }
}

pub fn compile(pattern: &str) -> Result<Regex, NamingError> {
    let invalid = |reason: String| NamingError::InvalidPattern {
        pattern: pattern.chars().take(MAX_PATTERN_LEN).collect(),
        reason,
    };
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(invalid(format!("longer than {MAX_PATTERN_LEN} bytes")));
    }
    // Anchored at the start, like Python's re.match in Pyro4.
    RegexBuilder::new(&format!("^(?:{pattern})"))
        .size_limit(1 << 20)
        .build()
        .map_err(|err| invalid(err.to_string()))
}

/// The name table, shared: clone it per connection.
#[derive(Clone, Debug)]
pub struct NameTable {
    table: Arc<Mutex<Table>>,
}

impl NameTable {
    /// A name server holding at most `max_names` names.
    pub fn new(max_names: usize) -> Self {
        // Lease ids start from the clock so that ids from before a restart
        // do not match new ones.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        NameTable {
            table: Arc::new(Mutex::new(Table {
                names: BTreeMap::new(),
                max_names,
                next_lease: seed,
                next_connection: 0,
            })),
        }
    }

    fn with_table<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        f(&mut self.table.lock().expect("name table poisoned"))
    }

    /// Registers `name` for good (what Pyro4 clients do), with `metadata`.
    pub fn insert(
        &self,
        name: String,
        location: Location,
        safe: bool,
        metadata: Metadata,
    ) -> Result<(), NamingError> {
        self.with_table(|t| {
            t.insert(
                name,
                Entry {
                    location,
                    lease: None,
                    metadata,
                },
                safe,
            )
        })
    }

    /// Registers the name server itself as `Pyro.NameServer` at `addr`,
    /// with Python's metadata: it lists, counts and looks up as Python's.
    /// It takes no room from the names the table holds for others.
    pub fn insert_name_server(&self, addr: std::net::SocketAddr) {
        let metadata = Metadata::from([NAME_SERVER_CLASS.to_owned()]);
        let entry = Entry {
            location: addr.into(),
            lease: None,
            metadata,
        };
        self.with_table(|t| t.insert(NAME_SERVER_ID.to_owned(), entry, false))
            .expect("the name server's own entry is valid");
    }

    /// Where the live registration `name` leads.
    pub fn location(&self, name: &str) -> Option<Location> {
        self.lookup(name).map(|(location, _)| location)
    }

    /// Where the live registration `name` leads, and its metadata.
    pub fn lookup(&self, name: &str) -> Option<(Location, Metadata)> {
        self.with_table(|t| t.live(name, Instant::now()))
            .map(|entry| (entry.location, entry.metadata))
    }

    /// Replaces the metadata of the live registration `name`.
    pub fn set_metadata(&self, name: &str, metadata: Metadata) -> Result<(), NamingError> {
        validate_metadata(&metadata)?;
        self.with_table(|t| match t.live(name, Instant::now()) {
            Some(entry) => {
                t.names.insert(name.to_owned(), Entry { metadata, ..entry });
                Ok(())
            }
            None => Err(NamingError::UnknownName(name.to_owned())),
        })
    }

    /// Every live registration, with its metadata, that `keep` accepts,
    /// sorted by name.
    pub fn all_with_metadata(
        &self,
        keep: impl Fn(&str, &Metadata) -> bool,
    ) -> Vec<(String, Location, Metadata)> {
        self.with_table(|t| {
            t.purge_expired(Instant::now());
            t.names
                .iter()
                .filter(|(name, entry)| keep(name, &entry.metadata))
                .map(|(name, entry)| (name.clone(), entry.location.clone(), entry.metadata.clone()))
                .collect()
        })
    }

    /// Every live registration `keep` accepts, sorted by name.
    pub fn all(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, Location)> {
        self.with_table(|t| t.page(None, usize::MAX, |name, _| keep(name)))
    }

    /// Removes every name `remove` accepts; returns how many.
    pub fn remove_where(&self, remove: impl Fn(&str) -> bool) -> usize {
        self.with_table(|t| t.remove_where(remove))
    }

    /// Removes every name leased through connection `holder`, which has
    /// closed: a server killed outright frees its name at once, not when
    /// its time to live runs out. Returns how many.
    pub fn release_held_by(&self, holder: ConnectionId) -> usize {
        self.with_table(|t| {
            let before = t.names.len();
            t.names.retain(|name, entry| {
                let held = entry.lease.is_some_and(|lease| lease.holder == holder);
                if held {
                    tracing::info!(%name, "released: its server's connection closed");
                }
                !held
            });
            before - t.names.len()
        })
    }

    /// A new connection's id, for the leases it takes.
    pub fn connection_id(&self) -> ConnectionId {
        self.with_table(|t| {
            t.next_connection += 1;
            t.next_connection
        })
    }

    /// Registers `name` at `addr` with a lease of `ttl_ms`, held by
    /// connection `holder`; returns its id.
    pub fn insert_leased(
        &self,
        name: String,
        addr: std::net::SocketAddr,
        safe: bool,
        ttl_ms: u64,
        holder: ConnectionId,
    ) -> Result<u64, NamingError> {
        let ttl = Duration::from_millis(ttl_ms);
        if !(MIN_LEASE..=MAX_LEASE).contains(&ttl) {
            return Err(NamingError::InvalidLease(ttl_ms));
        }
        self.with_table(|t| {
            t.next_lease = t.next_lease.wrapping_add(1);
            let id = t.next_lease;
            let lease = LeaseState {
                id,
                ttl,
                expires: Instant::now() + ttl,
                holder,
            };
            t.insert(
                name,
                Entry {
                    location: Location::Rust(addr),
                    lease: Some(lease),
                    metadata: Metadata::new(),
                },
                safe,
            )?;
            Ok(id)
        })
    }

    /// Extends the lease `lease` on `name` by its time to live.
    pub fn renew(&self, name: String, lease: u64) -> Result<(), NamingError> {
        self.with_table(|t| {
            let now = Instant::now();
            let Some(entry) = t.live(&name, now) else {
                return Err(NamingError::UnknownName(name));
            };
            match entry.lease {
                Some(held) if held.id == lease => {
                    let renewed = LeaseState {
                        expires: now + held.ttl,
                        ..held
                    };
                    t.names.insert(
                        name,
                        Entry {
                            lease: Some(renewed),
                            ..entry
                        },
                    );
                    Ok(())
                }
                _ => Err(NamingError::LeaseLost(name)),
            }
        })
    }

    /// Removes `name` if it is still held by `lease`; true if it was.
    pub fn release(&self, name: &str, lease: u64) -> bool {
        self.with_table(|t| {
            let held = t
                .names
                .get(name)
                .and_then(|e| e.lease)
                .is_some_and(|l| l.id == lease);
            if held {
                t.names.remove(name);
                tracing::info!(%name, "released");
            }
            held
        })
    }

    /// Up to `most` live registrations `keep` accepts (given each name and
    /// its metadata), sorted by name, after the name `after`.
    pub fn page(
        &self,
        after: Option<&str>,
        most: usize,
        keep: impl Fn(&str, &Metadata) -> bool,
    ) -> Vec<(String, Location)> {
        self.with_table(|t| t.page(after, most, keep))
    }
}
