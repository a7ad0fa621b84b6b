//! Per-dict counters, read by `Py.SharedDict.stats/1` and the dashboard.
//! Like the context counters, a new counter is a field of [`StatsSnapshot`]
//! (the NIF encodes it as a map with one key per field) plus the line that
//! counts it in [`Stats::record`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use super::EventKind;
use crate::limits::RECENT_EXPIRIES;

// Every counter is Relaxed: each is read on its own, and none hands data over.

/// On cache lines of its own: a write may update a counter, and the dict's
/// read-mostly fields (the destroyed flag, the listeners' count) that every
/// operation reads must not share a line with it. (The memory store counts
/// the puts nobody hears of itself, per shard: see
/// `Backend::counted_puts`.)
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Stats {
    puts: AtomicU64,
    deletes: AtomicU64,
    expired_total: AtomicU64,
    callback_errors: AtomicU64,
    callback_timeouts: AtomicU64,
    /// Newest first, at most [`RECENT_EXPIRIES`].
    recent_expiries: Mutex<VecDeque<(String, u64)>>,
}

/// A point-in-time copy of a dict's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct StatsSnapshot {
    /// Live keys.
    pub size: u64,
    /// Writes: puts, successful updates and increments (with those the
    /// backend counted itself).
    pub puts: u64,
    /// Keys deleted, taken or evicted (not cleared, not expired).
    pub deletes: u64,
    /// Keys that expired.
    pub expired_total: u64,
    /// The latest expiries as `(key, wall-clock ms)`, newest first.
    pub recent_expiries: Vec<(String, u64)>,
    /// Python callbacks that raised.
    pub callback_errors: u64,
    /// Python callbacks that ran past their timeout.
    pub callback_timeouts: u64,
}

impl Stats {
    /// Counts a batch of events, in order; `at_ms` is the wall-clock time
    /// of its expiries. One update per counter and one hold of the recent
    /// expiries' lock per batch (the sweeper's batches are large).
    pub(super) fn record<'a>(
        &self,
        events: impl Iterator<Item = (EventKind, &'a str)>,
        at_ms: u64,
    ) {
        let (mut puts, mut deletes, mut expired) = (0, 0, 0);
        let mut newest: VecDeque<&str> = VecDeque::new();
        for (kind, key) in events {
            match kind {
                EventKind::Put => puts += 1,
                EventKind::Delete => deletes += 1,
                EventKind::Expire => {
                    expired += 1;
                    if newest.len() == RECENT_EXPIRIES {
                        newest.pop_back();
                    }
                    newest.push_front(key);
                }
                EventKind::Access => {}
            }
        }
        if puts > 0 {
            self.puts.fetch_add(puts, Relaxed);
        }
        if deletes > 0 {
            self.deletes.fetch_add(deletes, Relaxed);
        }
        if expired > 0 {
            self.expired_total.fetch_add(expired, Relaxed);
            let mut recent = self.recent_expiries.lock();
            for key in newest.into_iter().rev() {
                if recent.len() == RECENT_EXPIRIES {
                    recent.pop_back();
                }
                recent.push_front((key.to_owned(), at_ms));
            }
        }
    }

    /// Counts one event that is not an expiry (a write's).
    #[inline]
    pub(super) fn record_one(&self, kind: EventKind) {
        match kind {
            EventKind::Put => self.puts.fetch_add(1, Relaxed),
            EventKind::Delete => self.deletes.fetch_add(1, Relaxed),
            EventKind::Expire => self.expired_total.fetch_add(1, Relaxed),
            EventKind::Access => 0,
        };
    }

    /// Counts `n` writes that raised no event (nothing heard of them).
    #[inline]
    pub(super) fn count_puts(&self, n: u64) {
        if n > 0 {
            self.puts.fetch_add(n, Relaxed);
        }
    }

    pub(super) fn callback_failed(&self, timed_out: bool) {
        if timed_out {
            self.callback_timeouts.fetch_add(1, Relaxed);
        } else {
            self.callback_errors.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn snapshot(&self, size: usize) -> StatsSnapshot {
        StatsSnapshot {
            size: size as u64,
            puts: self.puts.load(Relaxed),
            deletes: self.deletes.load(Relaxed),
            expired_total: self.expired_total.load(Relaxed),
            recent_expiries: self.recent_expiries.lock().iter().cloned().collect(),
            callback_errors: self.callback_errors.load(Relaxed),
            callback_timeouts: self.callback_timeouts.load(Relaxed),
        }
    }
}
