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
mod locks;
pub mod python;
mod stats;
mod sweeper;
pub mod telemetry;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use num_bigint::BigInt;
use parking_lot::{Mutex, RwLock};

pub use backend::memory::{Bounds, Memory};
pub use backend::sqlite::Sqlite;
pub use backend::{Backend, BackendSpec, Condition, Expiry, Item, Millis};
pub use clock::now_ms;
pub use locks::{forget_call_lock, note_call_lock, release_call_locks, Holder};
pub use stats::StatsSnapshot;

use crate::convert::Value;
use backend::RawEvent;
use locks::Locks;
use stats::Stats;

/// A stored value.
#[derive(Debug)]
pub enum Stored {
    /// Plain data (never [`Value::Object`]).
    Plain(Value),
    /// A Python object that is not plain data, pickled: its type
    /// (`"module.Class"`) and the pickle.
    Pickled { type_name: String, data: Vec<u8> },
}

impl Drop for Stored {
    fn drop(&mut self) {
        if let Stored::Plain(v) = self {
            if v.is_container() {
                // Deep values would recurse once per level in plain drop.
                std::mem::replace(v, Value::None).dispose();
            }
        }
    }
}

impl Stored {
    /// `value` as plain data to store; a Python object inside it cannot be.
    pub fn plain(value: Value) -> Result<Stored, DictError> {
        let mut pending = vec![&value];
        while let Some(v) = pending.pop() {
            match v {
                Value::Object(o) => {
                    return Err(DictError::Unstorable(format!(
                        "a Python object ({}) cannot be stored from the BEAM: \
                         store plain data, or store it from Python, where it is pickled",
                        o.type_name
                    )))
                }
                Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
                    pending.extend(items.iter())
                }
                Value::Map(pairs) => {
                    for (k, v) in pairs {
                        pending.push(k);
                        pending.push(v);
                    }
                }
                _ => {}
            }
        }
        Ok(Stored::Plain(value))
    }
}

/// Why an operation on a dict failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DictError {
    /// The dict was destroyed.
    Destroyed,
    /// `max_entries` reached and no eviction asked for.
    Full,
    /// `put_new` of a key that exists.
    Exists,
    /// A compare-and-set lost: the key changed since it was read.
    Conflict,
    /// `incr` of a value that is not an integer (its kind).
    NotInteger(&'static str),
    /// A value that cannot be stored (why).
    Unstorable(String),
    /// `new` with a name another live dict has.
    NameTaken(String),
    /// The backend failed (a full disk, a read-only or corrupt file, an
    /// unreachable server): what it said. Nothing was changed by the
    /// operation that got it.
    Backend(String),
}

impl std::fmt::Display for DictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DictError::Destroyed => f.write_str("the shared dict was destroyed"),
            DictError::Full => f.write_str("the shared dict is full (max_entries)"),
            DictError::Exists => f.write_str("the key exists"),
            DictError::Conflict => f.write_str("the key changed meanwhile"),
            DictError::NotInteger(kind) => write!(f, "cannot increment {kind}: not an integer"),
            DictError::Unstorable(why) => f.write_str(why),
            DictError::NameTaken(name) => write!(f, "a shared dict named {name:?} exists"),
            DictError::Backend(why) => f.write_str(why),
        }
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Written (put, update, incr).
    Put,
    /// Deleted, taken or evicted.
    Delete,
    /// Expired (found by a read-modify-write or by the sweeper).
    Expire,
    /// Read (a get that found the key). Raised only while a listener asked
    /// for it ([`SharedDict::listen_access`]), never counted.
    Access,
}

/// Something interested in a dict's events (BEAM subscribers, Python
/// callbacks, later telemetry). Called after the change, outside the store's
/// lock, on the thread that made the change (a scheduler, a Python thread,
/// the sweeper): it must only hand the event over, never block. `value` is
/// the value written or removed, when the backend reported it.
pub trait Listener: Send + Sync {
    fn event(&self, kind: EventKind, key: &str, value: Option<&Item>);

    /// Whether this listener uses the events' values (a backend that must
    /// fetch or decode them does so only when one does).
    fn wants_values(&self) -> bool {
        false
    }

    /// `key`'s per-key lock was released (waiters may try again).
    fn unlocked(&self, _key: &str) {}

    /// The dict was destroyed (from whichever side); no event follows.
    fn destroyed(&self) {}
}

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
    /// `true` once destroyed. Held shared by every operation and exclusively
    /// by `destroy`, so nothing is written into a dict after it was cleared.
    gate: RwLock<bool>,
    stats: Stats,
    listeners: RwLock<Vec<Arc<dyn Listener>>>,
    /// Set once the dict is known to the sweeper.
    swept: AtomicBool,
    /// Set once a listener wants `Access` events (reads then raise them).
    wants_access: AtomicBool,
    locks: Locks,
    /// Whether telemetry events of this dict carry the key
    /// (`telemetry_keys: true`); they never carry the value.
    telemetry_keys: AtomicBool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Every live dict by id (for Python, which holds ids, not handles).
fn ids() -> &'static Mutex<HashMap<u64, std::sync::Weak<SharedDict>>> {
    static IDS: OnceLock<Mutex<HashMap<u64, std::sync::Weak<SharedDict>>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
}

fn names() -> &'static Mutex<HashMap<String, Arc<SharedDict>>> {
    static NAMES: OnceLock<Mutex<HashMap<String, Arc<SharedDict>>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

impl SharedDict {
    /// A new dict on the backend `opts` names; a named one is registered
    /// (and fails when the name is taken, before the backend is opened).
    /// A durable backend's keys that expired while it was closed are not
    /// removed yet: [`expire_due`](Self::expire_due) does that, once
    /// listeners are in place.
    pub fn new(opts: DictOptions) -> Result<Arc<SharedDict>, DictError> {
        if let Some(name) = &opts.name {
            if names().lock().contains_key(name) {
                return Err(DictError::NameTaken(name.clone()));
            }
        }
        let backend = backend::open(&opts)?;
        Self::with_backend(opts.name, backend)
    }

    /// A new dict on any backend.
    pub fn with_backend(
        name: Option<String>,
        backend: Box<dyn Backend>,
    ) -> Result<Arc<SharedDict>, DictError> {
        let dict = Arc::new(SharedDict {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.clone(),
            backend,
            gate: RwLock::new(false),
            stats: Stats::default(),
            listeners: RwLock::new(Vec::new()),
            swept: AtomicBool::new(false),
            wants_access: AtomicBool::new(false),
            locks: Locks::default(),
            telemetry_keys: AtomicBool::new(false),
        });
        if let Some(name) = name {
            let mut names = names().lock();
            if names.contains_key(&name) {
                return Err(DictError::NameTaken(name));
            }
            names.insert(name, dict.clone());
        }
        ids().lock().insert(dict.id, Arc::downgrade(&dict));
        dict.backend.attach(Arc::downgrade(&dict));
        Ok(dict)
    }

    /// The live dict with this id.
    pub fn by_id(id: u64) -> Option<Arc<SharedDict>> {
        let weak = ids().lock().get(&id).cloned()?;
        weak.upgrade().filter(|d| !d.is_destroyed())
    }

    /// The live dict named `name`.
    pub fn lookup(name: &str) -> Option<Arc<SharedDict>> {
        names().lock().get(name).cloned()
    }

    /// Every live dict (named or not, made by the BEAM or by Python), in
    /// the order they were made.
    pub fn all() -> Vec<Arc<SharedDict>> {
        let mut all: Vec<Arc<SharedDict>> = ids()
            .lock()
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        all.retain(|d| !d.is_destroyed());
        all.sort_by_key(|d| d.id);
        all
    }

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
        f: impl FnOnce(&dyn Backend, &mut Vec<RawEvent>) -> Result<T, DictError>,
    ) -> Result<T, DictError> {
        thread_local! {
            /// This thread's event buffer, reused so that a write does not
            /// allocate one (taken, so a nested use just makes its own).
            static EVENTS: std::cell::Cell<Vec<RawEvent>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut events = EVENTS.take();
        let out = {
            let destroyed = self.gate.read();
            if *destroyed {
                return Err(DictError::Destroyed);
            }
            f(&*self.backend, &mut events)
        };
        if !events.is_empty() {
            self.raise(&events);
            events.clear();
        }
        if events.capacity() <= 64 {
            EVENTS.set(events);
        }
        out
    }

    /// Whether a listener uses the events' values (a backend that must
    /// fetch or decode an event's value skips that when none does).
    pub(crate) fn wants_values(&self) -> bool {
        self.listeners.read().iter().any(|l| l.wants_values())
    }

    /// The one place events are raised: counted, then handed to listeners
    /// (all of a batch counted first: a listener never sees an event that
    /// `stats` does not count yet).
    fn raise(&self, events: &[RawEvent]) {
        if events.is_empty() {
            return;
        }
        // The wall clock only dates expiries.
        let wall = if events.iter().any(|e| e.kind == EventKind::Expire) {
            clock::wall_ms()
        } else {
            0
        };
        self.stats
            .record(events.iter().map(|e| (e.kind, &*e.key)), wall);
        // One relaxed load when nobody listens to telemetry.
        if telemetry::enabled() {
            telemetry::emit(self, events);
        }
        let listeners = self.listeners.read();
        if listeners.is_empty() {
            return;
        }
        for e in events {
            for listener in listeners.iter() {
                listener.event(e.kind, &e.key, e.value.as_ref());
            }
        }
    }

    /// The value of `key` and its version (an `Access` event when a
    /// listener asked for them).
    pub fn get(&self, key: &str) -> Result<Option<(Item, u64)>, DictError> {
        let now = now_ms();
        let found = self.with(|b, _| b.get(key, now))?;
        if self.wants_access.load(Ordering::Relaxed) {
            if let Some((item, _)) = &found {
                let event = RawEvent::new(EventKind::Access, Arc::from(key), Some(item.clone()));
                self.raise(&[event]);
            }
        }
        Ok(found)
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
        let now = now_ms();
        let expiry = match ttl_ms {
            Some(ms) => Expiry::At(now.saturating_add(ms)),
            None => Expiry::Never,
        };
        self.put_with(key, value, expiry, cond, now)
    }

    /// Like [`put`](Self::put) with an explicit [`Expiry`] (`Keep` for a
    /// read-modify-write).
    pub fn put_with(
        self: &Arc<Self>,
        key: &str,
        value: Stored,
        expiry: Expiry,
        cond: Condition,
        now: Millis,
    ) -> Result<u64, DictError> {
        let item = Arc::new(value);
        let version = self.with(|b, ev| b.put(key, item, expiry, cond, now, ev))?;
        if let Expiry::At(_) = expiry {
            self.watch();
        }
        Ok(version)
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
            let mut destroyed = self.gate.write();
            if *destroyed {
                return false;
            }
            *destroyed = true;
        }
        if let Some(name) = &self.name {
            let mut names = names().lock();
            if names.get(name).is_some_and(|d| d.id == self.id) {
                names.remove(name);
            }
        }
        ids().lock().remove(&self.id);
        if self.backend.durable() {
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

    // ── Per-key locks ───────────────────────────────────────────────────

    /// Takes `key`'s lock if it is free (or already `holder`'s); else who
    /// holds it.
    pub fn try_lock(&self, key: &str, holder: Holder) -> Result<Result<(), Holder>, DictError> {
        self.with(|b, _| match b.shared_locks() {
            Some(shared) => shared.try_lock(key, holder),
            None => Ok(self.locks.try_lock(key, holder)),
        })
    }

    /// Takes `key`'s lock, waiting up to `deadline`. Blocks the thread:
    /// for Python threads (with the GIL released), never a BEAM scheduler.
    pub fn lock_wait(
        &self,
        key: &str,
        holder: Holder,
        deadline: Option<std::time::Instant>,
    ) -> Result<bool, DictError> {
        if self.is_destroyed() {
            return Err(DictError::Destroyed);
        }
        if self.backend.shared_locks().is_none() {
            return Ok(self.locks.lock_wait(key, holder, deadline));
        }
        // Shared locks: try, then wait for a release the backend announces
        // (or a short while, in case an announcement was lost with a
        // connection), and try again.
        loop {
            if self.try_lock(key, holder)?.is_ok() {
                return Ok(true);
            }
            let now = std::time::Instant::now();
            let next = now + crate::limits::SHARED_LOCK_POLL;
            let until = match deadline {
                Some(d) if d <= now => return Ok(false),
                Some(d) => d.min(next),
                None => next,
            };
            self.locks.wait_released(until);
        }
    }

    /// Releases `key`'s lock if `holder` holds it.
    pub fn unlock(&self, key: &str, holder: Holder) -> Result<bool, DictError> {
        let released = self.with(|b, _| match b.shared_locks() {
            Some(shared) => shared.unlock(key, holder),
            None => Ok(self.locks.unlock(key, holder)),
        })?;
        if released {
            self.unlocked(&[key.to_owned()]);
        }
        Ok(released)
    }

    /// Releases every lock of `holder` (it died). Works on a destroyed
    /// dict too (there is nothing to release then). Never waits: a backend
    /// with shared locks releases them on a thread of its own.
    pub fn release_all(&self, holder: Holder) -> usize {
        let keys = match self.backend.shared_locks() {
            Some(shared) => shared.release_all(holder),
            None => self.locks.release_all(holder),
        };
        self.unlocked(&keys);
        keys.len()
    }

    /// Who holds `key`'s lock (`None` also when the backend cannot tell).
    pub fn lock_holder(&self, key: &str) -> Option<Holder> {
        match self.backend.shared_locks() {
            Some(shared) => shared.holder(key).ok().flatten(),
            None => self.locks.holder(key),
        }
    }

    /// Locks of a shared-lock backend released elsewhere (another node, a
    /// lapsed lease): wakes this node's waiters.
    fn remote_unlocked(&self, keys: &[String]) {
        self.locks.notify();
        self.unlocked(keys);
    }

    /// Releases `key`'s lock for `holder` even on a destroyed dict, where
    /// it is already free (for [`release_call_locks`]).
    fn release(&self, key: &str, holder: Holder) {
        let released = match self.backend.shared_locks() {
            Some(shared) => shared.unlock(key, holder).unwrap_or(false),
            None => self.locks.unlock(key, holder),
        };
        if released {
            self.unlocked(&[key.to_owned()]);
        }
    }

    fn unlocked(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let listeners = self.listeners.read();
        for key in keys {
            for listener in listeners.iter() {
                listener.unlocked(key);
            }
        }
    }

    pub fn is_destroyed(&self) -> bool {
        *self.gate.read()
    }

    /// The dict's counters.
    pub fn stats(&self) -> Result<StatsSnapshot, DictError> {
        let size = self.len()?;
        Ok(self.stats.snapshot(size))
    }

    /// Makes reads raise `Access` events from now on (for the listeners
    /// that want them; the others ignore them).
    pub fn listen_access(&self) {
        self.wants_access.store(true, Ordering::Relaxed);
    }

    /// Counts a Python callback that raised or ran out of time.
    pub fn count_callback_failure(&self, timed_out: bool) {
        self.stats.callback_failed(timed_out);
    }

    /// Adds a listener for every later event.
    pub fn listen(&self, listener: Arc<dyn Listener>) -> Result<(), DictError> {
        let destroyed = self.gate.read();
        if *destroyed {
            return Err(DictError::Destroyed);
        }
        self.listeners.write().push(listener);
        Ok(())
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
        self.backend.blocking()
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
