//! Per-key locks across nodes: a lock is the Redis key `{P:N}:l:<key>`
//! holding its holder's token (`<node>/<b|p><id>`), set with a lease of
//! [`super::LOCK_LEASE`].
//!
//! * Taking and releasing are scripts ([`scripts::LOCK`],
//!   [`scripts::UNLOCK`]); a release is announced on the event stream, so
//!   waiters on every node try again at once.
//! * While its node lives, the follower renews each lease every third of
//!   it. When the holder's node dies (or loses Redis for longer than the
//!   lease), the lock lapses at the end of its lease: the next reap
//!   announces it like a release, and another holder may take it. The dead
//!   node's critical section is then *not* excluded any more: a node that
//!   comes back after losing its lease finds it gone (`unlock` answers
//!   false) and must not assume it still held the key.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use redis::Value;

use super::{scripts, Redis, Shared};
use crate::shared_dict::backend::SharedLocks;
use crate::shared_dict::{DictError, Holder};

fn token(node: u64, holder: Holder) -> String {
    match holder {
        Holder::Beam(id) => format!("{node:016x}/b{id}"),
        Holder::Python(id) => format!("{node:016x}/p{id}"),
        Holder::Remote(id) => format!("remote/{id}"),
    }
}

/// The holder a token names, as this node sees it.
fn holder_of(node: u64, token: &str) -> Holder {
    let mine = format!("{node:016x}/");
    if let Some(rest) = token.strip_prefix(&mine) {
        let id = rest.get(1..).and_then(|s| s.parse::<u64>().ok());
        match (rest.as_bytes().first(), id) {
            (Some(b'b'), Some(id)) => return Holder::Beam(id),
            (Some(b'p'), Some(id)) => return Holder::Python(id),
            _ => {}
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut h);
    Holder::Remote(h.finish())
}

pub(super) fn unlock(shared: &Shared, key: &str, holder: Holder) -> Result<bool, DictError> {
    let mut inv = shared
        .keys
        .invoke(&scripts::UNLOCK, [shared.keys.lock(key)]);
    inv.arg(key).arg(token(shared.node, holder));
    let released: i64 = shared.pool.run_idempotent(|c| inv.invoke(c))?;
    Ok(released == 1)
}

/// Releases `locks` on a thread of its own (a release that fails lapses
/// with its lease).
pub(super) fn release_in_background(shared: Arc<Shared>, locks: Vec<(String, Holder)>) {
    if locks.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("py-dict-unlock".into())
        .spawn(move || {
            for (key, holder) in locks {
                let _ = unlock(&shared, &key, holder);
            }
        });
    if let Err(err) = spawned {
        eprintln!("pybridge: cannot release Redis locks now (they lapse with their lease): {err}");
    }
}

/// Extends the leases of every lock this node holds; forgets those it
/// lost.
pub(super) fn renew(shared: &Shared) -> Result<(), DictError> {
    let held: Vec<(String, Holder)> = shared
        .held
        .lock()
        .iter()
        .map(|(k, h)| (k.clone(), *h))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    let lkeys = held.iter().map(|(k, _)| shared.keys.lock(k));
    let mut inv = shared.keys.invoke(&scripts::RENEW, lkeys);
    inv.arg(shared.lease.lock().as_millis() as u64);
    for (key, holder) in &held {
        inv.arg(key).arg(token(shared.node, *holder));
    }
    let lost: Vec<String> = shared.pool.run_idempotent(|c| inv.invoke(c))?;
    if !lost.is_empty() {
        let mut map = shared.held.lock();
        for key in lost {
            map.remove(&key);
        }
    }
    Ok(())
}

impl SharedLocks for Redis {
    fn try_lock(&self, key: &str, holder: Holder) -> Result<Result<(), Holder>, DictError> {
        let shared = &self.shared;
        let mut inv = shared.keys.invoke(&scripts::LOCK, [shared.keys.lock(key)]);
        inv.arg(key)
            .arg(token(shared.node, holder))
            .arg(shared.lease.lock().as_millis() as u64);
        // Taking a lock twice is the same as once: safe to repeat.
        let out: Value = shared.pool.run_idempotent(|c| inv.invoke(c))?;
        match out {
            Value::Int(1) => {
                shared.held.lock().insert(key.to_owned(), holder);
                Ok(Ok(()))
            }
            Value::BulkString(t) => {
                // Someone here may now wait for its release: the follower
                // reads promptly again (see `Shared::contended`).
                shared.contended();
                Ok(Err(holder_of(shared.node, &String::from_utf8_lossy(&t))))
            }
            other => Err(DictError::Backend(format!(
                "unexpected lock reply {other:?}"
            ))),
        }
    }

    fn unlock(&self, key: &str, holder: Holder) -> Result<bool, DictError> {
        let released = unlock(&self.shared, key, holder)?;
        let mut held = self.shared.held.lock();
        if held.get(key) == Some(&holder) {
            held.remove(key);
        }
        Ok(released)
    }

    fn release_all(&self, holder: Holder) -> Vec<String> {
        let mine: Vec<(String, Holder)> = {
            let mut held = self.shared.held.lock();
            let keys: Vec<String> = held
                .iter()
                .filter(|(_, h)| **h == holder)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| held.remove(&k).map(|h| (k, h)))
                .collect()
        };
        // Called when a BEAM process died, from the VM's monitor callback
        // on a scheduler: the round trips happen on a thread of their own,
        // and the releases reach waiters (here too) through the stream.
        release_in_background(self.shared.clone(), mine);
        Vec::new()
    }

    fn holder(&self, key: &str) -> Result<Option<Holder>, DictError> {
        let lkey = self.shared.keys.lock(key);
        let token: Option<String> = self
            .shared
            .pool
            .run_idempotent(|c| redis::cmd("GET").arg(&lkey).query(c))?;
        Ok(token.map(|t| holder_of(self.shared.node, &t)))
    }
}
