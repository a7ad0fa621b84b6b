//! What a store under a SharedDict must do: the [`Backend`] trait.
//!
//! The front ([`super::SharedDict`]) owns what every store shares (the
//! destroyed flag, counters, events, the sweeper's registration); a backend
//! only keeps entries. The in-memory store ([`super::memory::Memory`]) is the
//! first one; durable or shared stores (SQLite, Redis) implement the same
//! trait.
//!
//! Time is passed in ([`Millis`] on the [`super::clock`]), so every rule about
//! expiry is decided by the caller's "now" and can be tested without waiting.

use std::sync::Arc;

use super::{DictError, EventKind, Stored};

/// Milliseconds on the store's monotonic clock ([`super::clock::now_ms`]).
pub type Millis = u64;

/// A stored value, shared so that a read copies a pointer, not the value.
pub type Item = Arc<Stored>;

/// What happened to which key, as the backend saw it; the front raises it.
pub type RawEvent = (EventKind, Arc<str>);

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
///   [`EventKind::Expire`] for it;
/// * each change pushes its events to `events` in the order they happened.
pub trait Backend: Send + Sync {
    /// The backend's name as users choose it (`"memory"`, `"sqlite"`,
    /// `"redis"`): shown by `Py.SharedDict.backend/1`, the dashboard and the
    /// telemetry events' metadata.
    fn kind(&self) -> &'static str;

    /// The live value of `key` and its version (a number that changes on
    /// every write of the key).
    fn get(&self, key: &str, now: Millis) -> Option<(Item, u64)>;

    /// Writes `key` under `cond`; returns the new version.
    fn put(
        &self,
        key: &str,
        item: Item,
        expiry: Expiry,
        cond: Condition,
        now: Millis,
        events: &mut Vec<RawEvent>,
    ) -> Result<u64, DictError>;

    /// Replaces the value of `key` with `f(current)` in one step, keeping
    /// its expiry; returns the new value.
    fn modify(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&Stored>) -> Result<Stored, DictError>,
        now: Millis,
        events: &mut Vec<RawEvent>,
    ) -> Result<Item, DictError>;

    /// Removes `key`; returns its value when it was live.
    fn remove(&self, key: &str, now: Millis, events: &mut Vec<RawEvent>) -> Option<Item>;

    /// Live keys.
    fn keys(&self, now: Millis) -> Vec<Arc<str>>;

    /// Live entries.
    fn entries(&self, now: Millis) -> Vec<(Arc<str>, Item)>;

    /// How many keys are live.
    fn len(&self, now: Millis) -> usize;

    /// The expiry of a live key: `None` when missing, `Some(None)` when it
    /// never expires.
    fn expiry(&self, key: &str, now: Millis) -> Option<Option<Millis>>;

    /// Sets (`Some`) or removes (`None`) the expiry of a live key; false when
    /// the key is missing.
    fn set_expiry(&self, key: &str, at: Option<Millis>, now: Millis) -> bool;

    /// Removes every entry; returns how many were live.
    fn clear(&self, now: Millis) -> usize;

    /// Removes up to `max` entries expired at `now`, reporting each, and
    /// returns how many it removed: the sweeper's step.
    fn sweep(&self, now: Millis, max: usize, events: &mut Vec<RawEvent>) -> usize;

    /// The earliest expiry of any entry, expired or not.
    fn next_expiry(&self) -> Option<Millis>;
}
