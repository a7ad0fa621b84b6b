//! Per-context counters, read by `Py.Context.info/1` and the dashboard.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

// Every counter is Relaxed: each is read on its own, and none hands data over.

#[derive(Debug, Default)]
pub(super) struct Stats {
    calls_total: AtomicU64,
    errors_total: AtomicU64,
    cancelled_total: AtomicU64,
    in_flight: AtomicI64,
    busy_ns: AtomicU64,
    compiles_total: AtomicU64,
    namespaces: AtomicI64,
}

/// A point-in-time copy of a context's counters: what `Py.Context.info/1`
/// reports besides the keys the Elixir side adds (`:pool`, `:index`,
/// `:bound_processes`) and `:mode`. The NIF encodes it as a map with one key
/// per field, so a new counter is a field here (and the line that counts
/// it); `Py.Context.info/1`'s doc lists every key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct StatsSnapshot {
    /// Calls that ran to completion (successfully or not).
    pub calls_total: u64,
    /// Calls that ended in an error.
    pub errors_total: u64,
    /// Calls cancelled (timed out) before or while running.
    pub cancelled_total: u64,
    /// Calls submitted and not yet finished or dropped.
    pub in_flight: u64,
    /// Calls waiting in the queue (not counting the context's own
    /// housekeeping tasks).
    pub queue_length: u64,
    /// Time spent running calls, in microseconds.
    pub busy_us: u64,
    /// Source compilations (code-cache misses).
    pub compiles_total: u64,
    /// Live process namespaces.
    pub namespaces: u64,
    /// Worker threads alive (the home worker and overflow workers).
    pub workers: u64,
    /// Overflow workers parked, waiting for work.
    pub idle_workers: u64,
    /// The most calls the queue holds (`max_queue`).
    pub max_queue: u64,
    /// Calls refused as `:overloaded`, or sent to wait for room.
    pub overloaded_total: u64,
}

impl Stats {
    pub(super) fn submitted(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    pub(super) fn finished(&self, busy_ns: u64, error: bool) {
        self.calls_total.fetch_add(1, Relaxed);
        if error {
            self.errors_total.fetch_add(1, Relaxed);
        }
        self.busy_ns.fetch_add(busy_ns, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// A call dropped without running (cancelled while queued, or context closed).
    pub(super) fn dropped(&self, cancelled: bool) {
        if cancelled {
            self.cancelled_total.fetch_add(1, Relaxed);
        }
        self.in_flight.fetch_sub(1, Relaxed);
    }

    pub(super) fn cancelled_while_running(&self) {
        self.cancelled_total.fetch_add(1, Relaxed);
    }

    pub(super) fn compiled(&self) {
        self.compiles_total.fetch_add(1, Relaxed);
    }

    pub(super) fn namespace_created(&self) {
        self.namespaces.fetch_add(1, Relaxed);
    }

    pub(super) fn namespace_released(&self) {
        self.namespaces.fetch_sub(1, Relaxed);
    }

    pub(super) fn snapshot(
        &self,
        queue_length: usize,
        workers: usize,
        idle: usize,
    ) -> StatsSnapshot {
        StatsSnapshot {
            calls_total: self.calls_total.load(Relaxed),
            errors_total: self.errors_total.load(Relaxed),
            cancelled_total: self.cancelled_total.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed).max(0) as u64,
            queue_length: queue_length as u64,
            busy_us: self.busy_ns.load(Relaxed) / 1_000,
            compiles_total: self.compiles_total.load(Relaxed),
            namespaces: self.namespaces.load(Relaxed).max(0) as u64,
            workers: workers as u64,
            idle_workers: idle as u64,
            // Filled in by the context, which owns the bound.
            max_queue: 0,
            overloaded_total: 0,
        }
    }
}
