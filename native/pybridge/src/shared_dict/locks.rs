//! Per-key locks: advisory locks a BEAM process or a Python thread takes on
//! a key of a dict, independent of the store's own locking (holding one
//! never blocks a read or a write, only other lockers).
//!
//! A lock is free or held by one [`Holder`]. Taking a lock one already
//! holds succeeds (it is not counted). Waiting is the caller's business: a
//! Python thread waits on [`Locks::lock_wait`] (it never runs on a BEAM
//! scheduler), a BEAM process registers as a waiter and is sent a message
//! when the lock is released (see `nif/shared_dict.rs`).

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Who holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A BEAM process (an id the NIF layer derives from its pid).
    Beam(u64),
    /// A Python thread (its thread id).
    Python(u64),
}

#[derive(Default)]
pub(super) struct Locks {
    held: Mutex<HashMap<String, Holder>>,
    released: Condvar,
}

impl Locks {
    /// Takes `key`'s lock for `holder` if it is free (or already its);
    /// otherwise says who holds it.
    pub(super) fn try_lock(&self, key: &str, holder: Holder) -> Result<(), Holder> {
        let mut held = self.held.lock();
        match held.get(key) {
            Some(h) if *h != holder => Err(*h),
            Some(_) => Ok(()),
            None => {
                held.insert(key.to_owned(), holder);
                Ok(())
            }
        }
    }

    /// Takes `key`'s lock, waiting until `deadline` (forever for `None`)
    /// for it to be released. Blocks the calling thread: never call it on
    /// a BEAM scheduler.
    pub(super) fn lock_wait(&self, key: &str, holder: Holder, deadline: Option<Instant>) -> bool {
        let mut held = self.held.lock();
        loop {
            match held.get(key) {
                None => {
                    held.insert(key.to_owned(), holder);
                    return true;
                }
                Some(h) if *h == holder => return true,
                Some(_) => match deadline {
                    Some(d) => {
                        if self.released.wait_until(&mut held, d).timed_out()
                            && held.get(key).is_some_and(|h| *h != holder)
                        {
                            return false;
                        }
                    }
                    None => self.released.wait(&mut held),
                },
            }
        }
    }

    /// Releases `key`'s lock if `holder` holds it.
    pub(super) fn unlock(&self, key: &str, holder: Holder) -> bool {
        let mut held = self.held.lock();
        if held.get(key) != Some(&holder) {
            return false;
        }
        held.remove(key);
        drop(held);
        self.released.notify_all();
        true
    }

    /// Releases every lock `holder` holds (it died); returns their keys.
    pub(super) fn release_all(&self, holder: Holder) -> Vec<String> {
        let mut held = self.held.lock();
        let keys: Vec<String> = held
            .iter()
            .filter(|(_, h)| **h == holder)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            held.remove(k);
        }
        drop(held);
        if !keys.is_empty() {
            self.released.notify_all();
        }
        keys
    }

    /// Who holds `key`'s lock.
    pub(super) fn holder(&self, key: &str) -> Option<Holder> {
        self.held.lock().get(key).copied()
    }

    /// Releases every lock (the dict was destroyed); returns their keys.
    pub(super) fn clear(&self) -> Vec<String> {
        let keys: Vec<String> = self.held.lock().drain().map(|(k, _)| k).collect();
        self.released.notify_all();
        keys
    }
}
