//! The in-memory store: a hash table under one mutex, with an index of
//! expiries ordered by time (so expired entries are found without scanning
//! the table) and, when asked for, an order of last use for LRU eviction.

use std::collections::BTreeMap;

use hashbrown::HashMap;

/// The entries' hasher: foldhash, seeded per map, several times faster than
/// the standard SipHash on short keys.
type Hasher = foldhash::quality::RandomState;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Backend, Condition, Expiry, Item, Millis, RawEvent};
use crate::shared_dict::{DictError, EventKind, Stored};

/// How a memory store is bounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Most live keys; a new key beyond it is [`DictError::Full`] unless
    /// `evict_lru`.
    pub max_entries: Option<usize>,
    /// Make room by removing the least recently used key instead.
    pub evict_lru: bool,
}

struct Entry {
    item: Item,
    version: u64,
    /// `(at, seq)`: this entry's key in [`Inner::timers`].
    expires: Option<(Millis, u64)>,
    /// This entry's key in [`Inner::lru`] (0 when LRU is off).
    used: u64,
}

impl Entry {
    fn live(&self, now: Millis) -> bool {
        self.expires.is_none_or(|(at, _)| at > now)
    }
}

#[derive(Default)]
struct Inner {
    map: HashMap<Arc<str>, Entry, Hasher>,
    /// Every entry with an expiry, earliest first. `seq` tells apart entries
    /// expiring in the same millisecond.
    timers: BTreeMap<(Millis, u64), Arc<str>>,
    /// Last use of every entry, oldest first (only with LRU eviction).
    lru: BTreeMap<u64, Arc<str>>,
    /// Source of versions, timer sequence numbers and use ticks.
    counter: u64,
}

/// The memory backend.
pub struct Memory {
    inner: Mutex<Inner>,
    bounds: Bounds,
}

impl Memory {
    pub fn new(bounds: Bounds) -> Self {
        Memory {
            inner: Mutex::new(Inner::default()),
            bounds,
        }
    }
}

impl Inner {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Entries expired at `now` but not yet removed.
    fn expired_count(&self, now: Millis) -> usize {
        self.timers.range(..(now.saturating_add(1), 0)).count()
    }

    /// Removes `key`'s entry, with its timer and place in the LRU order.
    fn unlink(&mut self, key: &str) -> Option<(Arc<str>, Entry)> {
        let (key, entry) = self.map.remove_entry(key)?;
        if let Some(t) = entry.expires {
            self.timers.remove(&t);
        }
        if entry.used != 0 {
            self.lru.remove(&entry.used);
        }
        Some((key, entry))
    }

    /// The live entry of `key`; an expired one is removed and reported.
    fn live(&mut self, key: &str, now: Millis, events: &mut Vec<RawEvent>) -> Option<&mut Entry> {
        let expired = self.map.get(key).is_some_and(|e| !e.live(now));
        if expired {
            if let Some((key, entry)) = self.unlink(key) {
                events.push(RawEvent::new(EventKind::Expire, key, Some(entry.item)));
            }
            return None;
        }
        self.map.get_mut(key)
    }

    fn touch(&mut self, key: &str, lru: bool) {
        if !lru {
            return;
        }
        let tick = self.next();
        if let Some(entry) = self.map.get_mut(key) {
            // With LRU on, every entry has its place in `lru`.
            let old = std::mem::replace(&mut entry.used, tick);
            if let Some(k) = self.lru.remove(&old) {
                self.lru.insert(tick, k);
            }
        }
    }

    fn sweep(&mut self, now: Millis, max: usize, events: &mut Vec<RawEvent>) -> usize {
        let mut removed = 0;
        while removed < max {
            match self.timers.first_key_value() {
                Some((&(at, _), key)) if at <= now => {
                    let key = key.clone();
                    let item = self.unlink(&key).map(|(_, entry)| entry.item);
                    events.push(RawEvent::new(EventKind::Expire, key, item));
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    /// Makes room for one new key, or says the store is full.
    fn make_room(
        &mut self,
        bounds: Bounds,
        now: Millis,
        events: &mut Vec<RawEvent>,
    ) -> Result<(), DictError> {
        let Some(max) = bounds.max_entries else {
            return Ok(());
        };
        if self.map.len() < max {
            return Ok(());
        }
        // Expired entries hold no place: one of them, if any, gives the
        // slot (the earliest, in O(log n); the sweeper takes the rest).
        self.sweep(now, 1, events);
        if self.map.len() < max {
            return Ok(());
        }
        if !bounds.evict_lru {
            return Err(DictError::Full);
        }
        let oldest = self.lru.first_key_value().map(|(_, k)| k.clone());
        match oldest {
            Some(key) => {
                let item = self.unlink(&key).map(|(_, entry)| entry.item);
                events.push(RawEvent::new(EventKind::Delete, key, item));
                Ok(())
            }
            None => Err(DictError::Full),
        }
    }

    /// Stores `item` under `key` (whose live entry, if any, is `current`'s).
    fn insert(
        &mut self,
        key: &str,
        item: Item,
        expires_at: Option<Millis>,
        lru: bool,
        events: &mut Vec<RawEvent>,
    ) -> u64 {
        let version = self.next();
        let expires = expires_at.map(|at| (at, version));
        let used = if lru { version } else { 0 };
        // An existing entry is rewritten in place: one hash lookup, and its
        // key keeps its allocation.
        if let Some((k, entry)) = self.map.get_key_value_mut(key) {
            let key = k.clone();
            let old_expires = std::mem::replace(&mut entry.expires, expires);
            let old_used = std::mem::replace(&mut entry.used, used);
            let old_item = std::mem::replace(&mut entry.item, item.clone());
            entry.version = version;
            if let Some(t) = old_expires {
                self.timers.remove(&t);
            }
            if let Some(t) = expires {
                self.timers.insert(t, key.clone());
            }
            if old_used != 0 {
                self.lru.remove(&old_used);
            }
            if lru {
                self.lru.insert(version, key.clone());
            }
            drop(old_item);
            events.push(RawEvent::new(EventKind::Put, key, Some(item)));
            return version;
        }
        let key: Arc<str> = Arc::from(key);
        if let Some(t) = expires {
            self.timers.insert(t, key.clone());
        }
        if lru {
            self.lru.insert(version, key.clone());
        }
        self.map.insert(
            key.clone(),
            Entry {
                item: item.clone(),
                version,
                expires,
                used,
            },
        );
        events.push(RawEvent::new(EventKind::Put, key, Some(item)));
        version
    }
}

impl Backend for Memory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get(&self, key: &str, now: Millis) -> Result<Option<(Item, u64)>, DictError> {
        let mut inner = self.inner.lock();
        let found = inner
            .map
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| (e.item.clone(), e.version));
        if found.is_some() {
            inner.touch(key, self.bounds.evict_lru);
        }
        Ok(found)
    }

    fn put(
        &self,
        key: &str,
        item: Item,
        expiry: Expiry,
        cond: Condition,
        now: Millis,
        events: &mut Vec<RawEvent>,
    ) -> Result<u64, DictError> {
        let mut inner = self.inner.lock();
        let current = inner
            .live(key, now, events)
            .map(|e| (e.version, e.expires.map(|(at, _)| at)));
        match (cond, current) {
            (Condition::Absent, Some(_)) => return Err(DictError::Exists),
            (Condition::Version(want), have) if want != have.map(|(v, _)| v) => {
                return Err(DictError::Conflict)
            }
            _ => {}
        }
        if current.is_none() {
            inner.make_room(self.bounds, now, events)?;
        }
        let expires_at = match expiry {
            Expiry::Keep => current.and_then(|(_, at)| at),
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
        };
        Ok(inner.insert(key, item, expires_at, self.bounds.evict_lru, events))
    }

    fn modify(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&Stored>) -> Result<Stored, DictError>,
        now: Millis,
        events: &mut Vec<RawEvent>,
    ) -> Result<Item, DictError> {
        let mut inner = self.inner.lock();
        let current = inner
            .live(key, now, events)
            .map(|e| (e.item.clone(), e.expires.map(|(at, _)| at)));
        let item = Arc::new(f(current.as_ref().map(|(item, _)| &**item))?);
        if current.is_none() {
            inner.make_room(self.bounds, now, events)?;
        }
        let expires_at = current.and_then(|(_, at)| at);
        inner.insert(key, item.clone(), expires_at, self.bounds.evict_lru, events);
        Ok(item)
    }

    fn remove(
        &self,
        key: &str,
        now: Millis,
        events: &mut Vec<RawEvent>,
    ) -> Result<Option<Item>, DictError> {
        let mut inner = self.inner.lock();
        if inner.live(key, now, events).is_none() {
            return Ok(None);
        }
        let Some((key, entry)) = inner.unlink(key) else {
            return Ok(None);
        };
        events.push(RawEvent::new(
            EventKind::Delete,
            key,
            Some(entry.item.clone()),
        ));
        Ok(Some(entry.item))
    }

    fn keys(&self, now: Millis) -> Result<Vec<Arc<str>>, DictError> {
        let inner = self.inner.lock();
        Ok(inner
            .map
            .iter()
            .filter(|(_, e)| e.live(now))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn entries(&self, now: Millis) -> Result<Vec<(Arc<str>, Item)>, DictError> {
        let inner = self.inner.lock();
        Ok(inner
            .map
            .iter()
            .filter(|(_, e)| e.live(now))
            .map(|(k, e)| (k.clone(), e.item.clone()))
            .collect())
    }

    fn len(&self, now: Millis) -> Result<usize, DictError> {
        let inner = self.inner.lock();
        Ok(inner.map.len() - inner.expired_count(now))
    }

    fn expiry(&self, key: &str, now: Millis) -> Result<Option<Option<Millis>>, DictError> {
        let inner = self.inner.lock();
        let entry = inner.map.get(key).filter(|e| e.live(now));
        Ok(entry.map(|entry| entry.expires.map(|(at, _)| at)))
    }

    fn set_expiry(&self, key: &str, at: Option<Millis>, now: Millis) -> Result<bool, DictError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let Some(entry) = inner.map.get_mut(key).filter(|e| e.live(now)) else {
            return Ok(false);
        };
        if let Some(old) = entry.expires.take() {
            inner.timers.remove(&old);
        }
        if let Some(at) = at {
            let t = (at, entry.version);
            entry.expires = Some(t);
            if let Some((k, _)) = inner.map.get_key_value(key) {
                let k = k.clone();
                inner.timers.insert(t, k);
            }
        }
        Ok(true)
    }

    fn clear(&self, now: Millis) -> Result<usize, DictError> {
        let mut inner = self.inner.lock();
        let live = inner.map.len() - inner.expired_count(now);
        let old = std::mem::take(&mut *inner);
        inner.counter = old.counter;
        drop(inner);
        drop(old);
        Ok(live)
    }

    fn sweep(
        &self,
        now: Millis,
        max: usize,
        events: &mut Vec<RawEvent>,
    ) -> Result<usize, DictError> {
        Ok(self.inner.lock().sweep(now, max, events))
    }

    fn next_expiry(&self) -> Option<Millis> {
        let inner = self.inner.lock();
        inner.timers.first_key_value().map(|(&(at, _), _)| at)
    }
}
