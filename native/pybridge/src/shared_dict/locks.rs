//! Per-key locks: advisory locks a BEAM process or a Python thread takes on
//! a key of a dict, independent of the store's own locking (holding one
//! never blocks a read or a write, only other lockers).
//!
//! A lock is free or held by one [`Holder`]. Taking a lock one already
//! holds succeeds (it is not counted). Waiting is the caller's business: a
//! Python thread waits on [`Locks::lock_wait`] (it never runs on a BEAM
//! scheduler), a BEAM process registers as a waiter and is sent a message
//! when the lock is released (see `nif/shared_dict/locks.rs`).
//!
//! A Python thread's lock lasts as long as the context call that took it
//! (unless taken with `hold=True`): the call's worker releases it when the
//! call ends, however it ends ([`release_call_locks`]), so a call that
//! times out or raises while holding one leaves nothing locked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::{DictError, SharedDict};

/// Who holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A BEAM process (an id the NIF layer derives from its pid).
    Beam(u64),
    /// A Python thread (its thread id).
    Python(u64),
    /// A holder in another OS process (another node sharing the dict's
    /// backend): a hash of its lock token.
    Remote(u64),
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

    /// Waits until some lock is released or `deadline` passes (for a
    /// waiter on a backend's shared locks, woken by [`Locks::notify`]).
    pub(super) fn wait_released(&self, deadline: Instant) {
        let mut held = self.held.lock();
        let _ = self.released.wait_until(&mut held, deadline);
    }

    /// Wakes every thread in [`Locks::wait_released`] or
    /// [`Locks::lock_wait`].
    pub(super) fn notify(&self) {
        let _held = self.held.lock();
        self.released.notify_all();
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

/// Python locks to release when their thread's current call ends: thread
/// ident → (dict id, key).
static CALL_LOCKS: Mutex<Vec<(u64, u64, String)>> = Mutex::new(Vec::new());
/// `CALL_LOCKS.len()`, read without the lock by every call's end.
static CALL_LOCK_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Records that thread `thread` took `key` of dict `dict` for its call.
pub fn note_call_lock(thread: u64, dict: u64, key: &str) {
    let mut held = CALL_LOCKS.lock();
    if !held
        .iter()
        .any(|(t, d, k)| *t == thread && *d == dict && k == key)
    {
        held.push((thread, dict, key.to_owned()));
        CALL_LOCK_COUNT.store(held.len(), Ordering::Release);
    }
}

/// Forgets such a record (the lock was released).
pub fn forget_call_lock(thread: u64, dict: u64, key: &str) {
    let mut held = CALL_LOCKS.lock();
    held.retain(|(t, d, k)| !(*t == thread && *d == dict && k == key));
    CALL_LOCK_COUNT.store(held.len(), Ordering::Release);
}

/// Releases every lock thread `thread` took during the call that just
/// ended. Called by a context's worker after each call; costs one atomic
/// load when no such lock exists.
pub fn release_call_locks(thread: u64) {
    if CALL_LOCK_COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    let mine: Vec<(u64, String)> = {
        let mut held = CALL_LOCKS.lock();
        let (mine, rest): (Vec<_>, Vec<_>) = held.drain(..).partition(|(t, _, _)| *t == thread);
        *held = rest;
        CALL_LOCK_COUNT.store(held.len(), Ordering::Release);
        mine.into_iter().map(|(_, d, k)| (d, k)).collect()
    };
    for (dict, key) in mine {
        if let Some(d) = SharedDict::by_id(dict) {
            d.release(&key, Holder::Python(thread));
        }
    }
}

/// The per-key locks of a dict: on its own [`Locks`], or on the backend's
/// shared ones when it has them (locks across nodes).
impl SharedDict {
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
    pub(super) fn remote_unlocked(&self, keys: &[String]) {
        self.locks.notify();
        self.unlocked(keys);
    }

    /// Releases `key`'s lock for `holder` even on a destroyed dict, where
    /// it is already free (for [`release_call_locks`]).
    pub(super) fn release(&self, key: &str, holder: Holder) {
        let released = match self.backend.shared_locks() {
            Some(shared) => shared.unlock(key, holder).unwrap_or(false),
            None => self.locks.unlock(key, holder),
        };
        if released {
            self.unlocked(&[key.to_owned()]);
        }
    }

    pub(super) fn unlocked(&self, keys: &[String]) {
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
}
