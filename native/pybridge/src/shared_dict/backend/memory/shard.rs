//! One shard of the memory store: a hash table of nodes, the expiry index
//! and (with LRU eviction) the order of last use. Always used under its
//! mutex, by [`super::Memory`].
//!
//! * The table holds one pointer per entry ([`NodeRef`]); the key is
//!   compared and rehashed through the node.
//! * The expiry index maps each millisecond that has expiries to the array
//!   of the nodes expiring then (each node knows its place in it): adding,
//!   moving or removing an expiry is O(1) plus one map lookup, the sweeper
//!   takes due nodes a batch at a time from the earliest millisecond (an
//!   array, so their memory is fetched in parallel rather than by chasing
//!   links), and counting the expired but not yet removed entries (for
//!   `len`) walks the due milliseconds, not the entries.
//! * The LRU order is one list through the nodes' LRU sections: a read or
//!   write moves its node to the back, eviction pops the front.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use super::node::{Chain, Held, List, NodeRef, LRU, TIMER};
use super::{Bounds, Hasher};
use crate::shared_dict::backend::{
    Condition, EventKey, Events, Expiry, Found, Item, Millis, RawEvent,
};
use crate::shared_dict::clock::Now;
use crate::shared_dict::{DictError, EventKind, Stored};

/// The nodes expiring in one millisecond.
#[derive(Default)]
struct Slot {
    nodes: Vec<NodeRef>,
}

pub(super) struct Shard {
    table: HashTable<NodeRef>,
    timers: BTreeMap<Millis, Slot>,
    lru: Chain,
    /// The store's bounds (the one place they are kept); with
    /// `evict_lru`, nodes have LRU links and reads and writes keep the
    /// order of last use.
    bounds: Bounds,
    /// The sweep's batch, kept between sweeps (allocating a batch-sized
    /// array each time made glibc consolidate its free lists).
    due: Vec<NodeRef>,
    /// Source of versions (kept across `clear`, so a version is never
    /// given twice to a key).
    counter: u64,
    /// Writes nobody heard of, counted here (under the lock the write
    /// holds) rather than in a counter every writer shares; kept across
    /// `clear`.
    puts: u64,
}

/// What a write leaves to drop once the shard's lock is released (an old
/// value may be large).
pub(super) type Garbage = Option<Held>;

impl Shard {
    pub(super) fn new(bounds: Bounds) -> Shard {
        Shard {
            table: HashTable::new(),
            timers: BTreeMap::new(),
            lru: Chain::default(),
            bounds,
            due: Vec::new(),
            counter: 0,
            puts: 0,
        }
    }

    /// Whether the shard keeps the order of last use.
    #[inline]
    fn lru_on(&self) -> bool {
        self.bounds.evict_lru
    }

    /// Counts `n` writes nobody heard of (the store's own count of them).
    #[inline]
    pub(super) fn count_puts(&mut self, n: u64) {
        self.puts += n;
    }

    /// Writes counted by [`count_puts`](Self::count_puts).
    pub(super) fn puts(&self) -> u64 {
        self.puts
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn find(&self, hash: u64, key: &str) -> Option<NodeRef> {
        self.table.find(hash, |n| n.key() == key).copied()
    }

    fn arm(&mut self, mut node: NodeRef, at: Millis) {
        node.set_expires(Some(at));
        let slot = self.timers.entry(at).or_default();
        node.set_timer_index(slot.nodes.len());
        slot.nodes.push(node);
    }

    fn disarm(&mut self, mut node: NodeRef) {
        let Some(at) = node.expires() else { return };
        if let Some(slot) = self.timers.get_mut(&at) {
            let i = node.timer_index();
            slot.nodes.swap_remove(i);
            if let Some(moved) = slot.nodes.get_mut(i) {
                moved.set_timer_index(i);
            }
            if slot.nodes.is_empty() {
                self.timers.remove(&at);
            }
        }
        node.set_expires(None);
    }

    /// Gives `node` the expiry `at`; returns the node, which moved when it
    /// needed a timer section it did not have.
    #[inline]
    fn set_expiry_of(&mut self, node: NodeRef, hash: u64, at: Option<Millis>) -> NodeRef {
        if node.expires() == at {
            return node;
        }
        self.disarm(node);
        let Some(at) = at else { return node };
        let node = if node.has_timer() {
            node
        } else {
            self.grow(node, hash)
        };
        self.arm(node, at);
        node
    }

    /// Moves `node` to a node with a timer section, in place in the table
    /// and the LRU order.
    fn grow(&mut self, node: NodeRef, hash: u64) -> NodeRef {
        let Ok(mut slot) = self.table.find_entry(hash, |n| *n == node) else {
            unreachable!("a live node is in its table");
        };
        let new = node.grow_timer();
        *slot.get_mut() = new;
        if self.lru_on() {
            self.lru.replace(node, new, List::Lru);
        }
        new
    }

    fn touch(&mut self, node: NodeRef) {
        if self.lru_on() {
            self.lru.unlink(node, List::Lru);
            self.lru.push_back(node, List::Lru);
        }
    }

    /// Takes `node` out of the table and every list, frees it and gives
    /// back its key and value.
    fn remove_node(&mut self, node: NodeRef, hash: u64) -> (EventKey, Found) {
        let (key, held) = self.remove_held(node, hash);
        (key, held.into_found())
    }

    /// [`remove_node`](Self::remove_node), with the value as kept.
    fn remove_held(&mut self, node: NodeRef, hash: u64) -> (EventKey, Held) {
        self.disarm(node);
        if self.lru_on() {
            self.lru.unlink(node, List::Lru);
        }
        if let Ok(slot) = self.table.find_entry(hash, |n| *n == node) {
            slot.remove();
        }
        let key = EventKey::from(node.key());
        (key, node.free())
    }

    /// The live node of `key`; an expired one is removed and reported.
    fn live(&mut self, hash: u64, key: &str, now: &Now, events: &mut Events) -> Option<NodeRef> {
        let node = self.find(hash, key)?;
        if node.live_now(now) {
            return Some(node);
        }
        let (key, value) = self.remove_node(node, hash);
        events.push(RawEvent::found(EventKind::Expire, key, Some(value)));
        None
    }

    pub(super) fn get(&mut self, hash: u64, key: &str, now: &Now) -> Option<(Held, u64)> {
        let node = self.find(hash, key).filter(|n| n.live_now(now))?;
        self.touch(node);
        Some((node.value().share(), node.version()))
    }

    /// Removes up to `max` entries expired at `now` (or earlier), earliest
    /// first. An inline value goes with its event by value (made into an
    /// item only if a listener is there when the event is raised).
    pub(super) fn sweep(
        &mut self,
        now: Millis,
        max: usize,
        hasher: &Hasher,
        events: &mut Events,
    ) -> usize {
        let mut removed = 0;
        while removed < max {
            let Some(mut first) = self.timers.first_entry() else {
                break;
            };
            if *first.key() > now {
                break;
            }
            let nodes = &mut first.get_mut().nodes;
            // The slot's last nodes, up to `max`, in one go.
            let take = nodes.len().min(max - removed);
            let mut due = std::mem::take(&mut self.due);
            due.extend(nodes.drain(nodes.len() - take..));
            if nodes.is_empty() {
                first.remove();
            }
            removed += due.len();
            events.reserve(due.len());
            for node in due.iter_mut() {
                node.set_expires(None);
                let hash = hasher.hash_one(node.key());
                let (key, held) = self.remove_held(*node, hash);
                // A shared value goes with the event (it is freed outside
                // the lock).
                events.push(RawEvent::found(
                    EventKind::Expire,
                    key,
                    Some(held.into_found()),
                ));
            }
            due.clear();
            self.due = due;
        }
        removed
    }

    /// Makes room for one new key, or says the store is full.
    fn make_room(
        &mut self,
        now: &Now,
        hasher: &Hasher,
        events: &mut Events,
    ) -> Result<(), DictError> {
        let Some(max) = self.bounds.max_entries else {
            return Ok(());
        };
        if self.table.len() < max {
            return Ok(());
        }
        // Expired entries hold no place: one of them, if any, gives the
        // slot (the earliest; the sweeper takes the rest).
        self.sweep(now.get(), 1, hasher, events);
        if self.table.len() < max {
            return Ok(());
        }
        if !self.bounds.evict_lru {
            return Err(DictError::Full);
        }
        let Some(oldest) = self.lru.head else {
            return Err(DictError::Full);
        };
        let hash = hasher.hash_one(oldest.key());
        let (key, value) = self.remove_node(oldest, hash);
        events.push(RawEvent::found(EventKind::Delete, key, Some(value)));
        Ok(())
    }

    /// Writes `item` under `key` (whose live node is `current`, if any) with
    /// the expiry `expires_at`; returns the new version and what to drop.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        hash: u64,
        key: &str,
        current: Option<NodeRef>,
        item: Found,
        expires_at: Option<Millis>,
        hasher: &Hasher,
        events: &mut Events,
    ) -> (u64, Garbage) {
        let version = self.next();
        // The event's copy, when it is listed: a scalar by value, else a
        // pointer.
        events.put(key, || item.share());
        let held = Held::of(item);
        let garbage = match current {
            Some(mut node) => {
                // Rewritten in place: one lookup, no allocation.
                let old = node.set(held, version);
                let node = self.set_expiry_of(node, hash, expires_at);
                self.touch(node);
                Some(old)
            }
            None => {
                let flags = if expires_at.is_some() { TIMER } else { 0 }
                    | if self.lru_on() { LRU } else { 0 };
                let Some(node) = NodeRef::new(key, held, version, flags) else {
                    unreachable!("the key's length was checked by the caller");
                };
                self.table
                    .insert_unique(hash, node, |n| hasher.hash_one(n.key()));
                if let Some(at) = expires_at {
                    self.arm(node, at);
                }
                if self.lru_on() {
                    self.lru.push_back(node, List::Lru);
                }
                None
            }
        };
        (version, garbage)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn put(
        &mut self,
        hash: u64,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
        hasher: &Hasher,
        events: &mut Events,
    ) -> Result<(u64, Garbage), DictError> {
        let current = self.live(hash, key, now, events);
        match (cond, current) {
            (Condition::Absent, Some(_)) => return Err(DictError::Exists),
            (Condition::Version(want), have) if want != have.map(|n| n.version()) => {
                return Err(DictError::Conflict)
            }
            _ => {}
        }
        if current.is_none() {
            self.make_room(now, hasher, events)?;
        }
        let expires_at = match expiry {
            Expiry::Keep => current.and_then(|n| n.expires()),
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
        };
        Ok(self.write(hash, key, current, item, expires_at, hasher, events))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn modify(
        &mut self,
        hash: u64,
        key: &str,
        f: &mut dyn FnMut(Option<&Stored>) -> Result<Stored, DictError>,
        now: Millis,
        hasher: &Hasher,
        events: &mut Events,
    ) -> Result<(Item, Garbage), DictError> {
        let now = &Now::at(now);
        let current = self.live(hash, key, now, events);
        let new = match current {
            Some(node) => node.value().with_stored(|s| f(Some(s)))?,
            None => f(None)?,
        };
        let item = Arc::new(new);
        if current.is_none() {
            self.make_room(now, hasher, events)?;
        }
        let expires_at = current.and_then(|n| n.expires());
        let (_, garbage) = self.write(
            hash,
            key,
            current,
            Found::Shared(item.clone()),
            expires_at,
            hasher,
            events,
        );
        Ok((item, garbage))
    }

    pub(super) fn remove(
        &mut self,
        hash: u64,
        key: &str,
        now: Millis,
        events: &mut Events,
    ) -> Option<Item> {
        let node = self.live(hash, key, &Now::at(now), events)?;
        let (key, value) = self.remove_node(node, hash);
        events.push(RawEvent::found(EventKind::Delete, key, Some(value.share())));
        Some(value.into_item())
    }

    /// Entries expired at `now` but not yet removed.
    fn expired_count(&self, now: Millis) -> usize {
        self.timers
            .range(..=now)
            .map(|(_, slot)| slot.nodes.len())
            .sum()
    }

    pub(super) fn len(&self, now: Millis) -> usize {
        self.table.len() - self.expired_count(now)
    }

    pub(super) fn keys(&self, now: Millis, out: &mut Vec<Arc<str>>) {
        out.extend(
            self.table
                .iter()
                .filter(|n| n.live(now))
                .map(|n| Arc::from(n.key())),
        );
    }

    pub(super) fn entries(&self, now: Millis, out: &mut Vec<(Arc<str>, Held)>) {
        out.extend(
            self.table
                .iter()
                .filter(|n| n.live(now))
                .map(|n| (Arc::from(n.key()), n.value().share())),
        );
    }

    pub(super) fn expiry(&self, hash: u64, key: &str, now: Millis) -> Option<Option<Millis>> {
        let node = self.find(hash, key).filter(|n| n.live(now))?;
        Some(node.expires())
    }

    pub(super) fn set_expiry(
        &mut self,
        hash: u64,
        key: &str,
        at: Option<Millis>,
        now: Millis,
    ) -> bool {
        let Some(node) = self.find(hash, key).filter(|n| n.live(now)) else {
            return false;
        };
        self.set_expiry_of(node, hash, at);
        true
    }

    /// Empties the shard (keeping its version and put counters); returns the old
    /// contents, to be dropped outside the lock.
    pub(super) fn take(&mut self) -> Shard {
        let mut fresh = Shard::new(self.bounds);
        fresh.counter = self.counter;
        fresh.puts = self.puts;
        std::mem::replace(self, fresh)
    }

    pub(super) fn next_expiry(&self) -> Option<Millis> {
        self.timers.first_key_value().map(|(&at, _)| at)
    }

    /// Entries in the table (expired ones not yet removed included).
    #[cfg(test)]
    pub(super) fn stored(&self) -> usize {
        self.table.len()
    }

    /// Bytes the shard takes: each node's malloc chunk (its usable size
    /// plus glibc's 8-byte header), the table, and the expiry index (its
    /// arrays, and about 48 bytes per millisecond in the B-tree) (tests
    /// only).
    #[cfg(test)]
    pub(super) fn footprint(&self) -> usize {
        let nodes: usize = self.table.iter().map(|n| n.usable_size() + 8).sum();
        let index: usize = self
            .timers
            .values()
            .map(|s| 48 + s.nodes.capacity() * std::mem::size_of::<NodeRef>())
            .sum();
        nodes + self.table.allocation_size() + index
    }

    /// Checks the links between the table and the lists (tests only).
    #[cfg(test)]
    pub(super) fn check(&self) {
        let mut armed = 0;
        for n in self.table.iter() {
            if n.expires().is_some() {
                armed += 1;
            }
        }
        let listed: usize = self.timers.values().map(|s| s.nodes.len()).sum();
        assert_eq!(armed, listed, "every armed node is in one expiry slot");
        for (&at, slot) in &self.timers {
            assert!(!slot.nodes.is_empty(), "no empty slot is kept");
            for (i, node) in slot.nodes.iter().enumerate() {
                assert_eq!(node.expires(), Some(at));
                assert_eq!(node.timer_index(), i, "a node knows its place");
            }
        }
        if self.lru_on() {
            let mut n = 0;
            let mut cur = self.lru.head;
            while let Some(node) = cur {
                n += 1;
                // SAFETY: as above.
                cur = node.links(List::Lru).and_then(|l| unsafe { (*l).next });
            }
            assert_eq!(n, self.table.len(), "every node is in the LRU order");
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        for node in self.table.drain() {
            drop(node.free());
        }
    }
}
