//! What a store under a SharedDict must do: the [`Backend`] trait.
//!
//! The front ([`super::SharedDict`]) owns what every store shares (the
//! destroyed flag, counters, events, the sweeper's registration); a backend
//! only keeps entries: [`memory::Memory`] in this process, [`sqlite::Sqlite`]
//! in a file that outlives it. Stores outside the process keep values in the
//! one encoding of [`super::codec`].
//!
//! Every operation can fail with [`DictError::Backend`] (a disk that is full,
//! a file that is read-only or corrupt, a server that is gone): the memory
//! store never does, the others say why rather than panic.
//!
//! Time is passed in ([`Millis`] on the [`super::clock`]), so every rule about
//! expiry is decided by the caller's "now" and can be tested without waiting.

use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

mod events;
pub mod memory;
pub mod redis;
pub mod sqlite;
#[cfg(test)]
mod test_support;

pub use events::{EventKey, Events, RawEvent};

use super::clock::Now;
use super::{DictError, DictOptions, Holder, SharedDict, Stored};
use crate::convert::Value;

/// Where a dict keeps its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BackendSpec {
    /// In this OS process ([`memory::Memory`]).
    #[default]
    Memory,
    /// In a SQLite file ([`sqlite::Sqlite`]).
    Sqlite(PathBuf),
    /// In a Redis server at this URL ([`redis::Redis`]), shared by every
    /// node that opens the same name and prefix there.
    Redis(String),
}

/// Opens the backend `opts` names.
pub fn open(opts: &DictOptions) -> Result<Box<dyn Backend>, DictError> {
    match &opts.backend {
        BackendSpec::Memory => Ok(Box::new(memory::Memory::new(opts.bounds))),
        BackendSpec::Sqlite(path) => Ok(Box::new(sqlite::Sqlite::open(
            path,
            &opts.prefix,
            opts.pool_size,
        )?)),
        BackendSpec::Redis(url) => Ok(Box::new(redis::Redis::open(
            url,
            &opts.prefix,
            opts.name.as_deref(),
            opts.pool_size,
        )?)),
    }
}

/// Milliseconds on the store's monotonic clock ([`super::clock::now_ms`]).
pub type Millis = u64;

/// A stored value, shared so that a read copies a pointer, not the value.
pub type Item = Arc<Stored>;

/// Where a write queued with [`Backend::put_later`] reports its outcome
/// (the new version, or why not).
pub type PutDone = Box<dyn FnOnce(Result<u64, DictError>) + Send>;

/// Where a read queued with [`Backend::get_later`] reports what it found
/// (as [`Backend::get`] returns it); `None`: not read (a value too big to
/// share a round trip, or a dict closed meanwhile): read it with `get`.
pub type GetDone = Box<dyn FnOnce(Option<Result<Option<(Found, u64)>, DictError>>) + Send>;

/// A value as a read returns it: a plain scalar by value (the memory store
/// keeps those inline, so reading or writing one allocates nothing and
/// touches no reference count), or the shared item. Derefs to the
/// [`Stored`].
#[derive(Debug)]
pub enum Found {
    Scalar(Scalar),
    Shared(Item),
}

/// A plain scalar (`None`, a boolean, an integer or a float) as a
/// [`Stored`]. It owns nothing, so it is copied bit for bit and never
/// dropped (dropping a [`Stored`] checks for containers); only its
/// constructors below make one, so it never holds anything else.
#[derive(Debug)]
pub struct Scalar(ManuallyDrop<Stored>);

impl Scalar {
    /// `value` as a scalar; `None` for any other kind of value.
    #[inline]
    pub fn of(value: &Value) -> Option<Scalar> {
        Some(match value {
            Value::None => Scalar::none(),
            Value::Bool(b) => Scalar::bool(*b),
            Value::Int(i) => Scalar::int(*i),
            Value::Float(f) => Scalar::float(*f),
            _ => return None,
        })
    }

    #[inline]
    pub fn none() -> Scalar {
        Scalar(ManuallyDrop::new(Stored::Plain(Value::None)))
    }

    #[inline]
    pub fn bool(b: bool) -> Scalar {
        Scalar(ManuallyDrop::new(Stored::Plain(Value::Bool(b))))
    }

    #[inline]
    pub fn int(i: i64) -> Scalar {
        Scalar(ManuallyDrop::new(Stored::Plain(Value::Int(i))))
    }

    #[inline]
    pub fn float(f: f64) -> Scalar {
        Scalar(ManuallyDrop::new(Stored::Plain(Value::Float(f))))
    }

    /// A copy.
    #[inline]
    pub fn copy(&self) -> Scalar {
        // SAFETY: a `Scalar` is only made by the constructors above, each
        // of which holds a `None`, boolean, integer or float: plain bits
        // that own no memory, so the bitwise copy is a value of its own.
        // Neither copy is ever dropped (`ManuallyDrop`), and none would
        // free anything.
        Scalar(unsafe { std::ptr::read(&self.0) })
    }
}

impl std::ops::Deref for Scalar {
    type Target = Stored;
    #[inline]
    fn deref(&self) -> &Stored {
        &self.0
    }
}

impl Found {
    /// `value`, kept by value when it is a plain scalar.
    #[inline]
    pub fn new(value: Stored) -> Found {
        match value {
            // Moved in as it is (nothing to drop).
            Stored::Plain(Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_)) => {
                Found::Scalar(Scalar(ManuallyDrop::new(value)))
            }
            other => Found::Shared(Arc::new(other)),
        }
    }

    /// A copy as cheap as the value allows (a scalar, or a pointer).
    #[inline]
    pub fn share(&self) -> Found {
        match self {
            Found::Scalar(s) => Found::Scalar(s.copy()),
            Found::Shared(item) => Found::Shared(item.clone()),
        }
    }

    /// The value as a shared item (allocated for a scalar).
    pub fn into_item(self) -> Item {
        match self {
            Found::Scalar(s) => Arc::new(ManuallyDrop::into_inner(s.0)),
            Found::Shared(item) => item,
        }
    }

    /// A shared item of the value (allocated for a scalar).
    pub fn to_item(&self) -> Item {
        match self {
            Found::Scalar(s) => Arc::new(ManuallyDrop::into_inner(s.copy().0)),
            Found::Shared(item) => item.clone(),
        }
    }
}

impl Clone for Found {
    fn clone(&self) -> Found {
        self.share()
    }
}

impl From<Item> for Found {
    fn from(item: Item) -> Found {
        Found::Shared(item)
    }
}

impl std::ops::Deref for Found {
    type Target = Stored;
    #[inline]
    fn deref(&self) -> &Stored {
        match self {
            Found::Scalar(s) => s,
            Found::Shared(item) => item,
        }
    }
}

/// The counters a backend keeps for every node sharing its store (see
/// [`Backend::shared_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedCounts {
    pub puts: u64,
    pub deletes: u64,
    pub expired_total: u64,
    /// `(key, wall-clock ms)`, newest first.
    pub recent_expiries: Vec<(String, u64)>,
}

/// The expiry a write leaves on its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Keep the key's current expiry (none for a new key).
    Keep,
    /// No expiry.
    Never,
    /// Expires at this instant: from then on the key is gone.
    At(Millis),
}

/// When a write may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Always.
    Always,
    /// Only when the key is missing (else [`DictError::Exists`]).
    Absent,
    /// Only when the key's version is this one, or the key is missing for
    /// `None` (else [`DictError::Conflict`]): a compare-and-set.
    Version(Option<u64>),
}

/// An entry store. Every method is atomic with respect to the others.
///
/// Rules every backend keeps:
/// * an entry whose expiry is at or before `now` is gone: never returned,
///   counted or listed; a write that meets one removes it and reports an
///   [`EventKind::Expire`](super::EventKind::Expire) for it;
/// * each change pushes its events to `events` in the order they happened.
pub trait Backend: Send + Sync {
    /// The backend's name as users choose it (`"memory"`, `"sqlite"`,
    /// `"redis"`): shown by `Py.SharedDict.backend/1`, the dashboard and the
    /// telemetry events' metadata.
    fn kind(&self) -> &'static str;

    /// The live value of `key` and its version (a number that changes on
    /// every write of the key).
    fn get(&self, key: &str, now: Millis) -> Result<Option<(Found, u64)>, DictError>;

    /// Whether [`get_later`](Self::get_later) would likely queue a read
    /// now (a hint: a read is on its way to the store to queue behind).
    fn would_queue_get(&self) -> bool {
        false
    }

    /// Reads `key` like [`get`](Self::get) without waiting for the store:
    /// queues the read and returns; `done` gets what it found later, on
    /// another thread. Does no I/O itself (a BEAM scheduler may call it).
    /// `false`: not taken, `done` dropped uncalled (use `get`); the
    /// default.
    fn get_later(&self, _key: &str, _done: GetDone) -> bool {
        false
    }

    /// [`get`](Backend::get) at a "now" read only if needed.
    fn get_now(&self, key: &str, now: &Now) -> Result<Option<(Found, u64)>, DictError> {
        self.get(key, now.get())
    }

    /// Writes `key` under `cond`; returns the new version.
    fn put(
        &self,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: Millis,
        events: &mut Events,
    ) -> Result<u64, DictError>;

    /// Whether a [`put_later`](Self::put_later) now would likely be queued
    /// (a cheap hint, checked before the work of preparing one).
    fn would_queue_put(&self) -> bool {
        false
    }

    /// Writes `key` like [`put`](Self::put) without waiting for the
    /// store: queues the write and returns; `done` gets its outcome later,
    /// on another thread. Does no I/O itself (a BEAM scheduler may call
    /// it). `now` is read only if the write needs it (an `At` expiry
    /// counts from it). `heard`: whether anything on this node heard of
    /// the dict's writes when this one began (see [`Events::heard`]).
    /// `false`: not taken, `done` dropped uncalled (this backend, or this
    /// write, goes through [`put`](Self::put)); the default.
    #[allow(clippy::too_many_arguments)]
    fn put_later(
        &self,
        _key: &str,
        _item: Found,
        _expiry: Expiry,
        _cond: Condition,
        _now: &Now,
        _heard: bool,
        _done: PutDone,
    ) -> bool {
        false
    }

    /// [`put`](Backend::put) at a "now" read only if needed.
    fn put_now(
        &self,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
        events: &mut Events,
    ) -> Result<u64, DictError> {
        self.put(key, item, expiry, cond, now.get(), events)
    }

    /// Replaces the value of `key` with `f(current)` in one step, keeping
    /// its expiry; returns the new value.
    fn modify(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&Stored>) -> Result<Stored, DictError>,
        now: Millis,
        events: &mut Events,
    ) -> Result<Item, DictError>;

    /// Removes `key`; returns its value when it was live.
    fn remove(
        &self,
        key: &str,
        now: Millis,
        events: &mut Events,
    ) -> Result<Option<Item>, DictError>;

    /// Live keys.
    fn keys(&self, now: Millis) -> Result<Vec<Arc<str>>, DictError>;

    /// Live entries.
    fn entries(&self, now: Millis) -> Result<Vec<(Arc<str>, Item)>, DictError>;

    /// How many keys are live.
    fn len(&self, now: Millis) -> Result<usize, DictError>;

    /// The expiry of a live key: `None` when missing, `Some(None)` when it
    /// never expires.
    fn expiry(&self, key: &str, now: Millis) -> Result<Option<Option<Millis>>, DictError>;

    /// Sets (`Some`) or removes (`None`) the expiry of a live key; false when
    /// the key is missing.
    fn set_expiry(&self, key: &str, at: Option<Millis>, now: Millis) -> Result<bool, DictError>;

    /// Removes every entry; returns how many were live.
    fn clear(&self, now: Millis) -> Result<usize, DictError>;

    /// Removes up to `max` entries expired at `now`, reporting each, and
    /// returns how many it removed: the sweeper's step.
    fn sweep(&self, now: Millis, max: usize, events: &mut Events) -> Result<usize, DictError>;

    /// The earliest expiry of any entry, expired or not (a backend that
    /// cannot tell right now answers a time soon, to be asked again).
    fn next_expiry(&self) -> Option<Millis>;

    /// Whether the entries outlive the dict: `destroy` then only closes
    /// the store (its data stays for the next open) instead of clearing it.
    fn durable(&self) -> bool {
        false
    }

    /// Whether an operation may wait on a disk or a network (the BEAM then
    /// runs every operation on a dirty IO scheduler).
    fn blocking(&self) -> bool {
        false
    }

    /// Closes the store (the dict was destroyed); later calls may fail.
    /// A store that [`closes_exactly`](Backend::closes_exactly) also
    /// empties itself here.
    fn close(&self) {}

    /// Whether [`close`](Backend::close) empties the store and makes every
    /// operation that did not finish before it fail with
    /// [`DictError::Destroyed`], checked under the locks the operation
    /// takes anyway: the front then takes no lock of its own around each
    /// operation (with `false`, it holds a gate that `destroy` waits on).
    fn closes_exactly(&self) -> bool {
        false
    }

    /// Writes this backend counted itself: each operation that took them
    /// from its [`Events`] ([`Events::take_counted`]) under a lock it held
    /// anyway, so that writers share no counter's line. The front's `stats`
    /// adds them to its own count (0, the default: the front counts them).
    fn counted_puts(&self) -> Result<u64, DictError> {
        Ok(0)
    }

    /// [`len`](Self::len) and [`counted_puts`](Self::counted_puts)
    /// together, for `stats`: a store that counts under its locks takes
    /// each lock once for both.
    fn len_and_counted_puts(&self, now: Millis) -> Result<(usize, u64), DictError> {
        Ok((self.len(now)?, self.counted_puts()?))
    }

    /// Counters the backend keeps itself for every node that shares the
    /// store (Redis: in Redis, see `redis::counts`), since this handle
    /// opened; `stats` reports them in place of the front's puts,
    /// deletes and expiries. `None` (the default): the front counts.
    fn shared_counts(&self) -> Result<Option<SharedCounts>, DictError> {
        Ok(None)
    }

    /// Called once the dict's front exists: a backend that learns of
    /// changes made elsewhere (another node) raises them through it.
    fn attach(&self, _dict: Weak<SharedDict>) {}

    /// Per-key locks that the backend keeps itself, shared with other
    /// nodes; `None` (the default): the front's in-process locks.
    fn shared_locks(&self) -> Option<&dyn SharedLocks> {
        None
    }
}

/// Per-key locks kept by a backend (shared by every node using it), with
/// the semantics of the front's in-process locks (`shared_dict::locks`).
pub trait SharedLocks: Send + Sync {
    /// Takes `key`'s lock if it is free (or already `holder`'s); else who
    /// holds it.
    fn try_lock(&self, key: &str, holder: Holder) -> Result<Result<(), Holder>, DictError>;

    /// Releases `key`'s lock if `holder` holds it.
    fn unlock(&self, key: &str, holder: Holder) -> Result<bool, DictError>;

    /// Releases every lock of `holder` (it died) without waiting; returns
    /// the keys released now (a backend that releases them later announces
    /// them itself).
    fn release_all(&self, holder: Holder) -> Vec<String>;

    /// Who holds `key`'s lock.
    fn holder(&self, key: &str) -> Result<Option<Holder>, DictError>;
}
