//! SharedDicts: key/value stores that the BEAM and every Python context
//! share, living in Rust so that the BEAM reads and writes them without the
//! GIL.
//!
//! * Keys are strings; values are [`Stored`]: plain data as a GIL-free
//!   [`Value`], anything else as a pickle. A read hands out a shared pointer
//!   to the stored value, never the value itself to mutate.
//! * A [`SharedDict`] is the front: it checks the destroyed flag, raises
//!   events and counts them ([`SharedDict::raise`], the one place), and
//!   keeps the entries in a [`Backend`]: [`Memory`] (the default) or
//!   [`Sqlite`] (a file that survives restarts), chosen by
//!   [`DictOptions::backend`]. Stores outside the process keep values in
//!   the one encoding of [`codec`].
//! * Expiry: every read checks the key's expiry against the monotonic clock
//!   ([`clock`]), so an expired key is never seen; the [`sweeper`] thread
//!   removes expired keys in expiry order, in small batches, and raises their
//!   `Expire` events.
//! * Named dicts are found by name from anywhere ([`SharedDict::lookup`]).
//! * Per-key locks ([`locks`]) are advisory and separate from the store's
//!   own locking.

mod backend;
pub mod callbacks;
mod clock;
pub mod codec;
mod events;
mod locks;
pub mod python;
mod python_fast;
mod registry;
mod stats;
mod stored;
mod sweeper;
pub mod telemetry;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use num_bigint::BigInt;
use parking_lot::RwLock;

pub use backend::memory::{Bounds, Memory};
pub use backend::sqlite::Sqlite;
pub use backend::{Backend, BackendSpec, Condition, Expiry, Found, GetDone, Item, Millis, PutDone};
pub use clock::{now_ms, Now};
pub use events::{EventKind, Listener};
pub use locks::{forget_call_lock, note_call_lock, release_call_locks, Holder};
pub use stats::StatsSnapshot;
pub use stored::{DictError, Stored};

use crate::convert::Value;
use backend::{Events, RawEvent};
use locks::Locks;
use registry::{ids, names};
use stats::Stats;

/// How a dict is made.
#[derive(Debug, Clone)]
pub struct DictOptions {
    /// A name makes the dict reachable through [`SharedDict::lookup`].
    pub name: Option<String>,
    /// Only for the memory backend.
    pub bounds: Bounds,
    /// Where the entries live.
    pub backend: BackendSpec,
    /// Keeps this dict's keys apart from other dicts in the same file or
    /// server ("" when none).
    pub prefix: String,
    /// Connections to the backend (at least 1; the memory backend has none).
    pub pool_size: usize,
}

impl Default for DictOptions {
    fn default() -> Self {
        DictOptions {
            name: None,
            bounds: Bounds::default(),
            backend: BackendSpec::Memory,
            prefix: String::new(),
            pool_size: 1,
        }
    }
}

/// How long a key has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Infinity,
    Ms(u64),
}

/// One shared dict.
pub struct SharedDict {
    id: u64,
    name: Option<String>,
    backend: Box<dyn Backend>,
    /// Held shared by every operation and exclusively by `destroy`, so
    /// nothing is written into a dict after it was cleared, for a backend
    /// that does not close exactly itself ([`Backend::closes_exactly`]; the
    /// memory store does, under its shard locks, so its writers share no
    /// lock line here).
    gate: RwLock<()>,
    /// Whether operations take the gate (fixed).
    gated: bool,
    /// `true` once destroyed (set first thing by `destroy`). Reads check it
    /// and take no lock: a read that overlaps `destroy` reports the dict
    /// destroyed (see [`Self::get`]).
    destroyed: AtomicBool,
    /// Whether the backend may wait on a disk or network (fixed).
    blocking: bool,
    stats: Stats,
    listeners: RwLock<Vec<Arc<dyn Listener>>>,
    /// How many listeners want events now (an idle one, such as the BEAM
    /// side of a dict nobody subscribed to, does not count): at 0 a write
    /// does not look at the listeners at all.
    active: AtomicUsize,
    /// Set once the dict is known to the sweeper.
    swept: AtomicBool,
    /// Set once a listener wants `Access` events (reads then raise them).
    wants_access: AtomicBool,
    locks: Locks,
    /// Whether telemetry events of this dict carry the key
    /// (`telemetry_keys: true`); they never carry the value.
    telemetry_keys: AtomicBool,
}

impl SharedDict {
    /// The name of the backend keeping the entries (`"memory"`, ...).
    pub fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Whether telemetry events of this dict name their key.
    pub fn set_telemetry_keys(&self, on: bool) {
        self.telemetry_keys.store(on, Ordering::Relaxed);
    }

    /// See [`SharedDict::set_telemetry_keys`].
    pub fn telemetry_keys(&self) -> bool {
        self.telemetry_keys.load(Ordering::Relaxed)
    }

    /// A number unique to this dict in this OS process.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Runs `f` unless the dict is destroyed, then raises the events it
    /// reported.
    fn with<T>(
        &self,
        f: impl FnOnce(&dyn Backend, &mut Events) -> Result<T, DictError>,
    ) -> Result<T, DictError> {
        self.with_events(false, f)
    }

    /// [`with`](Self::with); `counting`: the writes are only counted
    /// ([`Events::counting`]), for when nothing hears of them.
    #[inline]
    fn with_events<T>(
        &self,
        counting: bool,
        f: impl FnOnce(&dyn Backend, &mut Events) -> Result<T, DictError>,
    ) -> Result<T, DictError> {
        thread_local! {
            /// This thread's event buffer, reused so that a write does not
            /// allocate one (taken, so a nested use just makes its own).
            static EVENTS: std::cell::Cell<Vec<RawEvent>> = const { std::cell::Cell::new(Vec::new()) };
        }
        // A backend that closes exactly fails an operation that overlaps
        // `destroy` itself; this check only answers early.
        if self.destroyed.load(Ordering::Acquire) {
            return Err(DictError::Destroyed);
        }
        let mut events = if counting {
            // Nothing to list but a write that meets an expired key.
            Events::counting()
        } else {
            let mut events = Events::listing(EVENTS.with(std::cell::Cell::take));
            // Read before the operation, as for a put (see `put_at`): a
            // backend whose events come back later waits for them only
            // when something hears of them.
            if self.blocking && !self.heard() {
                events.unheard();
            }
            events
        };
        let out = if self.gated {
            let _open = self.gate.read();
            if self.destroyed.load(Ordering::Acquire) {
                return Err(DictError::Destroyed);
            }
            f(&*self.backend, &mut events)
        } else {
            f(&*self.backend, &mut events)
        };
        // Counted before any listener hears of an event (see `raise`);
        // none left when the backend counted them itself.
        self.stats.count_puts(events.counted());
        if !events.is_empty() {
            self.raise(&events);
        }
        if !counting {
            let mut list = events.into_list();
            list.clear();
            // Kept up to a sweep's batch, so the sweeper (and a write that
            // meets expired keys) reuses it too.
            if list.capacity() <= crate::limits::SWEEP_BATCH {
                EVENTS.with(|cell| cell.set(list));
            }
        }
        out
    }

    /// The value of `key` and its version (an `Access` event when a
    /// listener asked for them).
    pub fn get(&self, key: &str) -> Result<Option<(Found, u64)>, DictError> {
        // No gate: a read changes nothing, so it need not exclude `destroy`;
        // one that overlapped it (which sets the flag, then empties or closes
        // the store) and found nothing reports the dict destroyed instead.
        if self.destroyed.load(Ordering::Acquire) {
            return Err(DictError::Destroyed);
        }
        // The clock is read only for a key that has an expiry.
        let found = match self.backend.get_now(key, &Now::lazy()) {
            Ok(Some(found)) => Some(found),
            _ if self.destroyed.load(Ordering::Acquire) => return Err(DictError::Destroyed),
            other => other?,
        };
        if self.wants_access.load(Ordering::Relaxed) {
            if let Some((item, _)) = &found {
                let event = RawEvent::new(EventKind::Access, Arc::from(key), Some(item.to_item()));
                self.raise(&[event]);
            }
        }
        Ok(found)
    }

    /// Whether [`get_later`](Self::get_later) would likely queue a read now
    /// (see [`Backend::would_queue_get`]).
    pub fn would_queue_get(&self) -> bool {
        self.backend.would_queue_get()
    }

    /// Like [`get`](Self::get) without waiting, where the backend can
    /// ([`Backend::get_later`]): queues the read and returns `true`; `done`
    /// then gets what `get` would have returned, on another thread (`None`:
    /// not read, use `get`). Does no I/O. `false`: not queued (a destroyed
    /// dict, or a backend that does not queue reads now), and `done` is
    /// dropped uncalled: use `get`.
    pub fn get_later(self: &Arc<Self>, key: &str, done: GetDone) -> bool {
        if self.destroyed.load(Ordering::Acquire) {
            return false;
        }
        let dict = self.clone();
        let event_key: Arc<str> = Arc::from(key);
        let wrapped: GetDone = Box::new(move |out| {
            let out = out.map(|found| {
                // As `get`: a read that overlapped `destroy` and found
                // nothing reports the dict destroyed.
                let found = match found {
                    Ok(Some(found)) => Some(found),
                    _ if dict.destroyed.load(Ordering::Acquire) => {
                        return Err(DictError::Destroyed)
                    }
                    other => other?,
                };
                if dict.wants_access.load(Ordering::Relaxed) {
                    if let Some((item, _)) = &found {
                        let event =
                            RawEvent::new(EventKind::Access, event_key, Some(item.to_item()));
                        dict.raise(&[event]);
                    }
                }
                Ok(found)
            });
            done(out)
        });
        self.backend.get_later(key, wrapped)
    }

    /// Stores `value` under `key`; `ttl_ms` sets its expiry, `None` removes
    /// any. `cond` makes it a put-if-absent or a compare-and-set.
    pub fn put(
        self: &Arc<Self>,
        key: &str,
        value: Stored,
        ttl_ms: Option<u64>,
        cond: Condition,
    ) -> Result<u64, DictError> {
        // The clock is read now for a TTL, else only if the key has an
        // expiry (or a bounded store is full).
        let (expiry, now) = match ttl_ms {
            Some(ms) => {
                let now = now_ms();
                (Expiry::At(now.saturating_add(ms)), Now::at(now))
            }
            None => (Expiry::Never, Now::lazy()),
        };
        self.put_at(key, value, expiry, cond, &now)
    }

    /// Like [`put`](Self::put) with an explicit [`Expiry`] (`Keep` for a
    /// read-modify-write) and "now" (an `At` expiry counts from it; else
    /// [`Now::lazy`] reads the clock only if a rule needs it).
    pub fn put_with(
        self: &Arc<Self>,
        key: &str,
        value: Stored,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
    ) -> Result<u64, DictError> {
        self.put_at(key, value, expiry, cond, now)
    }

    #[inline]
    fn put_at(
        self: &Arc<Self>,
        key: &str,
        value: Stored,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
    ) -> Result<u64, DictError> {
        // A scalar is passed by value: the memory store keeps it inline, so
        // a put of one allocates nothing.
        let item = Found::new(value);
        // A put nobody hears of is only counted. Whether anybody does is
        // read before the write: a listener added before the put began
        // hears of it.
        let counting = !self.heard();
        let version = self.with_events(counting, |b, ev| {
            b.put_now(key, item, expiry, cond, now, ev)
        })?;
        if let Expiry::At(_) = expiry {
            self.watch();
        }
        Ok(version)
    }

    /// Whether [`put_later`](Self::put_later) would likely queue a put
    /// now (see [`Backend::would_queue_put`]).
    pub fn would_queue_put(&self) -> bool {
        self.backend.would_queue_put()
    }

    /// Like [`put_with`](Self::put_with) without waiting, where the backend
    /// can ([`Backend::put_later`]): queues the write and returns; `done`
    /// gets its outcome on another thread, once the write is as done as
    /// `put_with`'s return says. Does no I/O; reads the clock only if
    /// the write needs it (as `put_with`). `false`: not queued (a
    /// destroyed dict, or a backend that does not queue), `done` dropped
    /// uncalled: use `put_with`.
    pub fn put_later(
        self: &Arc<Self>,
        key: &str,
        value: Stored,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
        done: PutDone,
    ) -> bool {
        let _open = self.gated.then(|| self.gate.read());
        if self.destroyed.load(Ordering::Acquire) {
            return false;
        }
        // As `put_at`: read before the write.
        let heard = self.heard();
        if !self
            .backend
            .put_later(key, Found::new(value), expiry, cond, now, heard, done)
        {
            return false;
        }
        // As `put_with`: a key with an expiry needs the sweeper.
        if let Expiry::At(_) = expiry {
            self.watch();
        }
        true
    }

    /// Removes `key`, returning its value when it was there.
    pub fn take(&self, key: &str) -> Result<Option<Item>, DictError> {
        let now = now_ms();
        self.with(|b, ev| b.remove(key, now, ev))
    }

    /// Live keys, in no particular order.
    pub fn keys(&self) -> Result<Vec<Arc<str>>, DictError> {
        let now = now_ms();
        self.with(|b, _| b.keys(now))
    }

    /// Live entries, in no particular order.
    pub fn entries(&self) -> Result<Vec<(Arc<str>, Item)>, DictError> {
        let now = now_ms();
        self.with(|b, _| b.entries(now))
    }

    /// How many keys are live.
    pub fn len(&self) -> Result<usize, DictError> {
        let now = now_ms();
        self.with(|b, _| b.len(now))
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> Result<bool, DictError> {
        Ok(self.len()? == 0)
    }

    /// Adds `by` to the integer under `key` (0 when missing) in one step,
    /// keeping its expiry; returns the new value (a big integer past `i64`).
    pub fn incr(&self, key: &str, by: i64) -> Result<Value, DictError> {
        let now = now_ms();
        let mut add = |current: Option<&Stored>| -> Result<Stored, DictError> {
            let sum = match current {
                None => Value::Int(by),
                Some(Stored::Plain(Value::Int(i))) => match i.checked_add(by) {
                    Some(sum) => Value::Int(sum),
                    None => Value::BigInt(BigInt::from(*i) + by),
                },
                Some(Stored::Plain(Value::BigInt(i))) => {
                    let sum = i + by;
                    match i64::try_from(&sum) {
                        Ok(small) => Value::Int(small),
                        Err(_) => Value::BigInt(sum),
                    }
                }
                Some(Stored::Plain(other)) => return Err(DictError::NotInteger(other.kind())),
                Some(Stored::Pickled { .. }) => {
                    return Err(DictError::NotInteger("a pickled Python object"))
                }
            };
            Ok(Stored::Plain(sum))
        };
        let item = self.with(|b, ev| b.modify(key, &mut add, now, ev))?;
        match &*item {
            Stored::Plain(v) => Ok(v.clone()),
            Stored::Pickled { .. } => Err(DictError::NotInteger("a pickled Python object")),
        }
    }

    /// Time left before `key` expires; `None` when it is missing.
    pub fn ttl(&self, key: &str) -> Result<Option<Ttl>, DictError> {
        let now = now_ms();
        let expiry = self.with(|b, _| b.expiry(key, now))?;
        Ok(expiry.map(|at| match at {
            Some(at) => Ttl::Ms(at.saturating_sub(now)),
            None => Ttl::Infinity,
        }))
    }

    /// Makes `key` expire `ms` from now; false when it is missing.
    pub fn expire(self: &Arc<Self>, key: &str, ms: u64) -> Result<bool, DictError> {
        let now = now_ms();
        let at = now.saturating_add(ms);
        let set = self.with(|b, _| b.set_expiry(key, Some(at), now))?;
        if set {
            self.watch();
        }
        Ok(set)
    }

    /// Removes `key`'s expiry; false when it is missing.
    pub fn persist(&self, key: &str) -> Result<bool, DictError> {
        let now = now_ms();
        self.with(|b, _| b.set_expiry(key, None, now))
    }

    /// Removes every key (no per-key events); returns how many were live.
    pub fn clear(&self) -> Result<usize, DictError> {
        let now = now_ms();
        self.with(|b, _| b.clear(now))
    }

    /// Empties the dict, forgets its name and makes every later operation
    /// fail with [`DictError::Destroyed`]. True the first time.
    pub fn destroy(&self) -> bool {
        {
            // Gated: no operation is in flight while the flag is set.
            let _closing = self.gated.then(|| self.gate.write());
            if self.destroyed.swap(true, Ordering::AcqRel) {
                return false;
            }
        }
        if let Some(name) = &self.name {
            let mut names = names().lock();
            if names.get(name).is_some_and(|d| d.id == self.id) {
                names.remove(name);
            }
        }
        ids().lock().remove(&self.id);
        if self.backend.closes_exactly() || self.backend.durable() {
            self.backend.close();
        } else {
            let _ = self.backend.clear(now_ms());
        }
        let keys = self.locks.clear();
        self.unlocked(&keys);
        let listeners = std::mem::take(&mut *self.listeners.write());
        for listener in &listeners {
            listener.destroyed();
        }
        true
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// The dict's counters.
    pub fn stats(&self) -> Result<StatsSnapshot, DictError> {
        // The size first: a store that cannot answer fails here, before
        // any wait.
        let now = now_ms();
        let (size, counted) = self.with(|b, _| b.len_and_counted_puts(now))?;
        let mut stats = self.stats.snapshot(size);
        match self.backend.shared_counts()? {
            // Every node's writes, counted where they are stored.
            Some(c) => {
                stats.puts = c.puts;
                stats.deletes = c.deletes;
                stats.expired_total = c.expired_total;
                stats.recent_expiries = c.recent_expiries;
            }
            None => stats.puts += counted,
        }
        Ok(stats)
    }

    /// Counts a Python callback that raised or ran out of time.
    pub fn count_callback_failure(&self, timed_out: bool) {
        self.stats.callback_failed(timed_out);
    }

    /// Removes expired keys, at most `max`, raising their events (the
    /// sweeper's step; also usable on demand).
    pub fn sweep(&self, max: usize) -> Result<usize, DictError> {
        let now = now_ms();
        self.with(|b, ev| b.sweep(now, max, ev))
    }

    /// Removes every key expired by now, raising its `Expire` event once,
    /// and hands the dict to the sweeper if any key has an expiry: what
    /// opening a durable dict does once its listeners are in place (keys
    /// that expired while it was closed). Returns how many it removed.
    pub fn expire_due(self: &Arc<Self>) -> Result<usize, DictError> {
        let mut total = 0;
        loop {
            let n = self.sweep(crate::limits::SWEEP_BATCH)?;
            total += n;
            if n < crate::limits::SWEEP_BATCH {
                break;
            }
        }
        if self.next_expiry().is_some() {
            self.watch();
        }
        Ok(total)
    }

    /// Whether operations may wait on a disk or network.
    pub fn blocking(&self) -> bool {
        self.blocking
    }

    /// The earliest expiry of any key.
    fn next_expiry(&self) -> Option<Millis> {
        self.backend.next_expiry()
    }

    /// Makes sure the sweeper knows this dict (once it has an expiry).
    fn watch(self: &Arc<Self>) {
        if !self.swept.swap(true, Ordering::Relaxed) {
            sweeper::watch(self);
        }
    }
}

impl Drop for SharedDict {
    fn drop(&mut self) {
        ids().lock().remove(&self.id);
    }
}

impl std::fmt::Debug for SharedDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDict")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}
