//! The in-memory store: hash tables of one-allocation entries, split into
//! shards by key hash, each under its own mutex, with an index of expiries
//! ordered by time (so expired entries are found without scanning the
//! table) and, when asked for, an order of last use for LRU eviction.
//!
//! * An entry is one allocation ([`node`]): version, value (plain scalars
//!   inline, anything else the shared [`Item`]), the expiry and LRU links
//!   only when it has them, and the key's bytes. A table slot is one pointer.
//! * An unbounded store has [`SHARDS`] shards, so writers of different keys
//!   rarely wait for each other; a bounded one (`max_entries`, LRU) has one,
//!   so the bound and the LRU order are exact. Operations on one key lock
//!   its shard; those on the whole store (`len`, `keys`, `entries`,
//!   `clear`) lock every shard, in order, and so see one instant.
//! * The sweeper's step pops due entries from the shard whose expiry is the
//!   earliest (so keys are removed in expiry order across shards), and
//!   hands the shard's lock over fairly after each batch, so a waiting
//!   reader or writer gets it next.

mod node;
mod shard;
#[cfg(test)]
mod tests;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::{Backend, Condition, Events, Expiry, Found, Item, Millis};
use crate::shared_dict::clock::Now;
use crate::shared_dict::{DictError, Stored};
use node::Held;
use shard::Shard;

/// The entries' hasher: foldhash, seeded per store, several times faster
/// than the standard SipHash on short keys. One hash picks the shard and
/// the slot in its table.
type Hasher = foldhash::quality::RandomState;

/// Shards of an unbounded store.
pub const SHARDS: usize = 8;

/// How a memory store is bounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Most live keys; a new key beyond it is [`DictError::Full`] unless
    /// `evict_lru`.
    pub max_entries: Option<usize>,
    /// Make room by removing the least recently used key instead.
    pub evict_lru: bool,
}

/// A shard on a cache line of its own, so that writers on different
/// shards do not contend for the line holding the locks.
#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// The memory backend.
pub struct Memory {
    shards: Box<[Padded]>,
    hasher: Hasher,
    /// Set by [`Backend::close`] under every shard's lock: each operation
    /// checks it under the lock of the shard it works on, so none lands
    /// after `close` returned (the front then takes no gate of its own).
    closed: AtomicBool,
}

impl Memory {
    pub fn new(bounds: Bounds) -> Self {
        let bounded = bounds.max_entries.is_some() || bounds.evict_lru;
        Self::with_shards(bounds, if bounded { 1 } else { SHARDS })
    }

    /// A store of `n` shards (a power of two; 1 for a bounded store).
    fn with_shards(bounds: Bounds, n: usize) -> Self {
        debug_assert!(n.is_power_of_two());
        debug_assert!(n == 1 || bounds.max_entries.is_none() && !bounds.evict_lru);
        Memory {
            shards: (0..n)
                .map(|_| Padded(Mutex::new(Shard::new(bounds))))
                .collect(),
            hasher: Hasher::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// The hash of `key` and its shard, locked; [`DictError::Destroyed`]
    /// once the store is closed.
    #[inline]
    fn shard(&self, key: &str) -> Result<(u64, MutexGuard<'_, Shard>), DictError> {
        let hash = self.hasher.hash_one(key);
        // Bits the tables do not use for small sizes (they take the low
        // bits for the slot and the top seven for the tag).
        let i = (hash >> 40) as usize & (self.shards.len() - 1);
        let shard = self.shards[i].0.lock();
        // Relaxed: `close` sets the flag before it takes this lock, so a
        // holder of the lock after `close` had it sees the flag.
        if self.closed.load(Ordering::Relaxed) {
            return Err(DictError::Destroyed);
        }
        Ok((hash, shard))
    }

    /// Every shard, locked in order: the whole store at one instant.
    fn all(&self) -> Result<Vec<MutexGuard<'_, Shard>>, DictError> {
        let shards: Vec<_> = self.shards.iter().map(|s| s.0.lock()).collect();
        if self.closed.load(Ordering::Relaxed) {
            return Err(DictError::Destroyed);
        }
        Ok(shards)
    }
}

fn check_key(key: &str) -> Result<(), DictError> {
    if u32::try_from(key.len()).is_err() {
        return Err(DictError::Unstorable(
            "a key of 4 GiB or more cannot be stored".into(),
        ));
    }
    Ok(())
}

impl Backend for Memory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get(&self, key: &str, now: Millis) -> Result<Option<(Found, u64)>, DictError> {
        self.get_now(key, &Now::at(now))
    }

    /// Reads the clock only for a key that has an expiry.
    fn get_now(&self, key: &str, now: &Now) -> Result<Option<(Found, u64)>, DictError> {
        let (hash, mut shard) = self.shard(key)?;
        // An inline scalar is copied out as it is: no allocation, no
        // reference count.
        Ok(shard
            .get(hash, key, now)
            .map(|(held, version)| (held.into_found(), version)))
    }

    fn put(
        &self,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: Millis,
        events: &mut Events,
    ) -> Result<u64, DictError> {
        self.put_now(key, item, expiry, cond, &Now::at(now), events)
    }

    /// Reads the clock only when the key has an expiry or a bounded store
    /// is full.
    fn put_now(
        &self,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
        events: &mut Events,
    ) -> Result<u64, DictError> {
        check_key(key)?;
        let (version, garbage) = {
            let (hash, mut shard) = self.shard(key)?;
            let out = shard.put(hash, key, item, expiry, cond, now, &self.hasher, events);
            // Counted on the shard's line, which the lock already wrote.
            shard.count_puts(events.take_counted());
            out?
        };
        drop(garbage);
        Ok(version)
    }

    fn modify(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&Stored>) -> Result<Stored, DictError>,
        now: Millis,
        events: &mut Events,
    ) -> Result<Item, DictError> {
        check_key(key)?;
        let (item, garbage) = {
            let (hash, mut shard) = self.shard(key)?;
            shard.modify(hash, key, f, now, &self.hasher, events)?
        };
        drop(garbage);
        Ok(item)
    }

    fn remove(
        &self,
        key: &str,
        now: Millis,
        events: &mut Events,
    ) -> Result<Option<Item>, DictError> {
        let (hash, mut shard) = self.shard(key)?;
        Ok(shard.remove(hash, key, now, events))
    }

    fn keys(&self, now: Millis) -> Result<Vec<Arc<str>>, DictError> {
        let shards = self.all()?;
        let mut out = Vec::with_capacity(shards.iter().map(|s| s.len(now)).sum());
        for shard in &shards {
            shard.keys(now, &mut out);
        }
        Ok(out)
    }

    fn entries(&self, now: Millis) -> Result<Vec<(Arc<str>, Item)>, DictError> {
        let mut held = Vec::new();
        {
            let shards = self.all()?;
            held.reserve(shards.iter().map(|s| s.len(now)).sum());
            for shard in &shards {
                shard.entries(now, &mut held);
            }
        }
        Ok(held
            .into_iter()
            .map(|(k, v): (Arc<str>, Held)| (k, v.into_item()))
            .collect())
    }

    fn len(&self, now: Millis) -> Result<usize, DictError> {
        Ok(self.all()?.iter().map(|s| s.len(now)).sum())
    }

    fn expiry(&self, key: &str, now: Millis) -> Result<Option<Option<Millis>>, DictError> {
        let (hash, shard) = self.shard(key)?;
        Ok(shard.expiry(hash, key, now))
    }

    fn set_expiry(&self, key: &str, at: Option<Millis>, now: Millis) -> Result<bool, DictError> {
        let (hash, mut shard) = self.shard(key)?;
        Ok(shard.set_expiry(hash, key, at, now))
    }

    fn clear(&self, now: Millis) -> Result<usize, DictError> {
        let (live, old): (usize, Vec<Shard>) = {
            let mut shards = self.all()?;
            let live = shards.iter().map(|s| s.len(now)).sum();
            (live, shards.iter_mut().map(|s| s.take()).collect())
        };
        // The entries are freed outside the locks.
        drop(old);
        Ok(live)
    }

    fn sweep(&self, now: Millis, max: usize, events: &mut Events) -> Result<usize, DictError> {
        // Expiry order across shards: each step sweeps the shard with the
        // earliest due expiry, up to the next shard's earliest.
        if self.closed.load(Ordering::Relaxed) {
            return Err(DictError::Destroyed);
        }
        let mut removed = 0;
        let mut due: Vec<(Millis, usize)> = Vec::with_capacity(self.shards.len());
        while removed < max {
            due.clear();
            for (i, s) in self.shards.iter().enumerate() {
                if let Some(at) = s.0.lock().next_expiry().filter(|&at| at <= now) {
                    due.push((at, i));
                }
            }
            due.sort_unstable();
            let Some(&(_, first)) = due.first() else {
                break;
            };
            let until = due.get(1).map_or(now, |&(at, _)| at);
            let mut shard = self.shards[first].0.lock();
            if self.closed.load(Ordering::Relaxed) {
                return Err(DictError::Destroyed);
            }
            removed += shard.sweep(until, max - removed, &self.hasher, events);
            // A reader or writer that waited for this batch gets the lock
            // now, before the sweeper can take it again.
            MutexGuard::unlock_fair(shard);
        }
        Ok(removed)
    }

    /// The writes the shards counted ([`Events::take_counted`] in
    /// `put_now`), summed shard by shard.
    fn counted_puts(&self) -> Result<u64, DictError> {
        Ok(self.shards.iter().map(|s| s.0.lock().puts()).sum())
    }

    /// Both under one hold of every shard's lock (as `len`, so the size is
    /// of one instant).
    fn len_and_counted_puts(&self, now: Millis) -> Result<(usize, u64), DictError> {
        let shards = self.all()?;
        let len = shards.iter().map(|s| s.len(now)).sum();
        let puts = shards.iter().map(|s| s.puts()).sum();
        Ok((len, puts))
    }

    fn closes_exactly(&self) -> bool {
        true
    }

    /// Empties the store and refuses every later operation: the flag is
    /// set before the shards are locked, so an operation either held its
    /// shard before (its write is emptied here) or sees the flag.
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let old: Vec<Shard> = self.shards.iter().map(|s| s.0.lock().take()).collect();
        // The entries are freed outside the locks.
        drop(old);
    }

    fn next_expiry(&self) -> Option<Millis> {
        self.shards
            .iter()
            .filter_map(|s| s.0.lock().next_expiry())
            .min()
    }
}
