//! The sweeper: one thread (`py-dict-sweeper`, started with the first
//! expiry) that removes expired keys from every dict and so raises their
//! `Expire` events.
//!
//! It has a thread of its own rather than a place in the contexts' monitor
//! because it needs no Python and must run even when no context does. It
//! never scans a table: each dict's backend keeps its expiries in time order,
//! so a step pops the due ones from the front, at most [`SWEEP_BATCH`] per
//! hold of the dict's lock (writers and readers wait for one batch at most:
//! the memory store hands the lock over fairly after each).
//! It sleeps until the earliest expiry of any dict, and never longer than
//! [`MAX_SLEEP`], so a key is reclaimed within about that much of its expiry.
//! Reads never depend on it: an expired key is invisible from the moment it
//! expires.

use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{clock::now_ms, SharedDict};
use crate::limits::SWEEP_BATCH;

/// Longest sleep between two rounds.
pub const MAX_SLEEP: Duration = Duration::from_millis(100);

struct Sweeper {
    dicts: Mutex<Vec<Weak<SharedDict>>>,
    wake: Condvar,
}

fn sweeper() -> &'static Sweeper {
    static SWEEPER: OnceLock<Sweeper> = OnceLock::new();
    SWEEPER.get_or_init(|| {
        let spawned = thread::Builder::new()
            .name("py-dict-sweeper".into())
            .spawn(run);
        if let Err(err) = spawned {
            // Reads stay exact without the sweeper; only reclaiming waits.
            eprintln!("pybridge: cannot start the shared-dict sweeper: {err}");
        }
        Sweeper {
            dicts: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        }
    })
}

/// Adds `dict` to the sweeper's rounds.
pub(super) fn watch(dict: &Arc<SharedDict>) {
    let s = sweeper();
    s.dicts.lock().push(Arc::downgrade(dict));
    s.wake.notify_one();
}

fn run() {
    let s = sweeper();
    loop {
        let dicts: Vec<Arc<SharedDict>> = {
            let mut list = s.dicts.lock();
            list.retain(|d| d.upgrade().is_some_and(|d| !d.is_destroyed()));
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let mut earliest: Option<u64> = None;
        for dict in &dicts {
            // Batches until nothing is due. The backend hands its lock
            // over fairly after each batch, so a waiting reader or writer
            // goes next; yielding the CPU here instead would, on a loaded
            // machine, leave the sweeper waiting a time slice per batch.
            while let Ok(n) = dict.sweep(SWEEP_BATCH) {
                if n < SWEEP_BATCH {
                    break;
                }
            }
            if let Some(at) = dict.next_expiry() {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        drop(dicts);
        let now = now_ms();
        let sleep = match earliest {
            Some(at) => Duration::from_millis(at.saturating_sub(now).max(1)).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        let mut list = s.dicts.lock();
        s.wake.wait_for(&mut list, sleep);
    }
}
