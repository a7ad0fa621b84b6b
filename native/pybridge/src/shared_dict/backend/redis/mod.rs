//! The Redis backend: one dict kept in a Redis server that several BEAM
//! nodes (and their Python contexts) share.
//!
//! Key layout, all under the hash tag `{prefix:name}` (so one dict is one
//! hash slot and the layout also runs on Redis Cluster):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `{P:N}:v:<key>` | string | version (20 ASCII digits) + the value in [`codec`] |
//! | `{P:N}:idx` | set | the dict's keys (for `keys`, `size`, `clear`) |
//! | `{P:N}:exp` | zset | key → expiry (Redis clock ms) of keys with a TTL |
//! | `{P:N}:seq` | string | the version counter |
//! | `{P:N}:ev` | stream | the events (`e` = p/d/e/u, `k` = key, `v` = value or `n` = version), capped |
//! | `{P:N}:l:<key>` | string | the per-key lock: its holder's token, with a lease |
//! | `{P:N}:lx` | zset | locked key → lease end |
//! | `{P:N}:st` | hash | the dict's counters ([`counts`]) |
//!
//! * A TTL is a Redis expiry (`SET … PXAT`, `PEXPIREAT`): a read on any node
//!   (or `redis-cli`) never sees an expired key, whatever the reaper does.
//! * Every write is one Lua script ([`scripts`]), so it is atomic on the
//!   server and announces itself on the stream in the same step; the puts
//!   and removals of concurrent callers share one script call ([`batch`]). Every
//!   script declares each key it touches, so Redis Cluster routes it to
//!   the dict's node ([`pool`] follows `MOVED`/`ASK` there).
//! * Events: each node's [`follower`] reads the stream from the last id it
//!   saw and raises what it reads, local writes included, so every node
//!   sees every event once and in the server's order, also across a lost
//!   connection, while something on the node hears of them; while nothing
//!   does, it only keeps its place at the stream's end. A write that
//!   something on its node hears of (a listener that wants events,
//!   telemetry) waits until its node has raised its events
//!   ([`Shared::wait_raised`]), so they reach local listeners before it
//!   returns, as on the in-process stores. One that nothing there hears of
//!   returns at once: its events carry its dict's tag ([`Shared::tag`]),
//!   and that dict's follower skips them (a listener added after the write
//!   returned never hears of it, as on the in-process stores; other nodes
//!   raise them as usual). The scripts count every event in Redis
//!   ([`counts`]), so `stats` waits for no follower. The stream keeps about
//!   [`EVENT_STREAM_CAP`] entries; a follower that falls further behind
//!   than that (a long disconnect under heavy writes) misses the trimmed
//!   ones and counts them in `events_missed` (it can tell from the
//!   stream's `entries-added`).
//! * Expire events: see [`scripts`]; exactly one script removes a due key
//!   from `exp`, and that script announces it.
//! * Event values: an event carries the value written (or removed) when
//!   its encoding is at most [`EVENT_VALUE_INLINE`] bytes, so the stream
//!   stays small; a bigger put carries its version, and the follower reads
//!   the value when the key still holds that version (else the listeners
//!   get none: a later put's event follows).
//! * Locks: [`locks`].
//!
//! I/O: every operation is a round trip (the NIFs run it on a dirty IO
//! scheduler, see [`Backend::blocking`]); a failure is
//! [`DictError::Backend`], and the [`pool`] reconnects by itself.

mod batch;
#[cfg(test)]
mod batch_tests;
mod big;
#[cfg(test)]
mod big_tests;
#[cfg(test)]
mod cluster_tests;
mod counts;
#[cfg(test)]
mod dying_tests;
mod follower;
mod keys;
mod locks;
mod pool;
#[cfg(test)]
mod quiet_tests;
mod reads;
#[cfg(test)]
mod reads_tests;
mod scripts;
mod shared;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unheard_tests;
mod writes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{
    Backend, Condition, Events, Expiry, Found, GetDone, Item, Millis, PutDone, SharedCounts,
};
use crate::shared_dict::Now;
use crate::shared_dict::{DictError, Holder, SharedDict, Stored};

pub(crate) use keys::{parse_record, Keys};
pub use pool::{Pool, PoolOptions};
use shared::node_id;
pub(crate) use shared::Shared;

/// About how many events the stream keeps (`XADD MAXLEN ~`): how far a
/// follower may fall behind before it misses events.
pub const EVENT_STREAM_CAP: usize = 100_000;

/// The largest encoded value an event carries in the stream (see the
/// module doc).
pub const EVENT_VALUE_INLINE: usize = 4096;

/// How long a per-key lock outlives its holder's node (renewed every third
/// of it while the node lives).
pub const LOCK_LEASE: Duration = Duration::from_secs(10);

/// Deadline of one Redis command (and of a connect).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times a read-modify-write (`incr`, `update`) retries when
/// another writer changed the key meanwhile.
const MODIFY_RETRIES: usize = 1000;

/// A dict kept in Redis.
pub struct Redis {
    shared: Arc<Shared>,
    /// Concurrent puts and removals go to Redis together ([`batch`]).
    batch: Arc<batch::Batcher>,
    /// Concurrent gets share round trips ([`reads`]).
    reads: Arc<reads::Reader>,
    /// Whether the dict has a name (another node can open it): then destroy
    /// only detaches, else it removes the data.
    named: bool,
    /// The dict's counters when this handle opened: `stats` counts from
    /// there ([`counts`]).
    base: counts::Counts,
}

impl Redis {
    /// Connects to `urls` for the dict `name` (a private name is made up
    /// for an unnamed dict). `urls` is one server's URL, or several URLs
    /// separated by whitespace: seed nodes of one Redis Cluster (one is
    /// enough while it lives; see [`pool`]). Fails when Redis cannot be
    /// reached now: a dict is only handed out once its store answered.
    pub fn open(
        urls: &str,
        prefix: &str,
        name: Option<&str>,
        pool_size: usize,
    ) -> Result<Redis, DictError> {
        static ANON: AtomicU64 = AtomicU64::new(1);
        let node = node_id();
        let named = name.is_some();
        let name = match name {
            Some(n) => n.to_owned(),
            None => format!("anon-{node:016x}-{}", ANON.fetch_add(1, Ordering::Relaxed)),
        };
        let urls: Vec<&str> = urls.split_whitespace().collect();
        let pool = Pool::new(
            &urls,
            PoolOptions {
                size: pool_size,
                timeout: COMMAND_TIMEOUT,
            },
        )?;
        let shared = Arc::new(Shared::new(pool, Keys::new(prefix, &name), node));
        // Answers now, or the open fails. A keyed command: on a cluster it
        // finds the dict's node (MOVED) before the first real one.
        let base = counts::Counts::read(&shared)?;
        Ok(Redis {
            shared,
            named,
            base,
            batch: Arc::new(batch::Batcher::new()),
            reads: Arc::default(),
        })
    }

    fn record(&self, key: &str) -> Result<Option<Vec<u8>>, DictError> {
        let vkeys = [self.shared.keys.value(key)];
        Ok(big::read_records(&self.shared.pool, &vkeys)?
            .pop()
            .flatten())
    }

    /// Runs the reaper: removes up to `max` due keys and announces them
    /// (and lapsed lock leases) on the stream. Two steps when something is
    /// due: the script names the due keys and lapsed locks, then runs
    /// again with their keys declared (see [`scripts::REAP`]). `wait`:
    /// until this node raised the events (not for the follower itself: it
    /// would wait for itself).
    pub(crate) fn reap(shared: &Shared, wait: bool, max: usize) -> Result<usize, DictError> {
        type Reaped = (usize, i64, String, Vec<String>, Vec<String>);
        let keys = &shared.keys;
        let (mut due, mut lapsed) = (Vec::new(), Vec::new());
        let mut removed = 0;
        for _ in 0..2 {
            let declared = due
                .iter()
                .map(|k: &String| keys.value(k))
                .chain(lapsed.iter().map(|k: &String| keys.lock(k)));
            let mut inv = keys.invoke(&scripts::REAP, declared);
            inv.arg(max).arg(due.len());
            for name in due.iter().chain(lapsed.iter()) {
                inv.arg(name);
            }
            let (n, next, id, next_due, next_lapsed): Reaped =
                shared.pool.run(|c| inv.invoke(c))?;
            if wait {
                shared.wait_raised(&id);
            }
            removed += n;
            *shared.next_due.lock() = (next >= 0).then_some(next as u64);
            if next_due.is_empty() && next_lapsed.is_empty() {
                break;
            }
            (due, lapsed) = (next_due, next_lapsed);
        }
        Ok(removed)
    }

    /// Runs `script` (ENTRIES or CLEAR) with the value key of every key of
    /// the dict declared: reads the key set, then runs it; again when the
    /// key set changed in between.
    fn with_all_keys<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
    ) -> Result<T, DictError> {
        let keys = &self.shared.keys;
        for _ in 0..MODIFY_RETRIES {
            let names: Vec<String> = self
                .shared
                .pool
                .run_idempotent(|c| redis::cmd("SMEMBERS").arg(&keys.idx).query(c))?;
            let inv = keys.invoke(script, names.iter().map(|k| keys.value(k)));
            let out: redis::Value = self.shared.pool.run_idempotent(|c| inv.invoke(c))?;
            if let redis::Value::BulkString(b) = &out {
                if b == b"retry" {
                    continue;
                }
            }
            if let redis::Value::SimpleString(s) = &out {
                if s == "retry" {
                    continue;
                }
            }
            return redis::from_redis_value(out)
                .map_err(|e| DictError::Backend(format!("unexpected reply: {e}")));
        }
        Err(DictError::Conflict)
    }
}

impl Backend for Redis {
    fn get(&self, key: &str, _now: Millis) -> Result<Option<(Found, u64)>, DictError> {
        let rec = self.reads.read(&self.shared, self.shared.keys.value(key))?;
        reads::found(rec)
    }

    fn would_queue_get(&self) -> bool {
        self.reads.busy()
    }

    fn get_later(&self, key: &str, done: GetDone) -> bool {
        reads::get_later(&self.reads, &self.shared, key, done)
    }

    fn put(
        &self,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: Millis,
        events: &mut Events,
    ) -> Result<u64, DictError> {
        // Events come back through the stream (see the follower).
        self.put_record(key, &item, expiry, cond, &Now::at(now), events.heard())
    }

    fn put_now(
        &self,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
        events: &mut Events,
    ) -> Result<u64, DictError> {
        // The clock is read only for an `At` expiry (Redis keeps the
        // expiries: no rule here needs "now" otherwise).
        self.put_record(key, &item, expiry, cond, now, events.heard())
    }

    fn would_queue_put(&self) -> bool {
        self.batch.busy()
    }

    fn put_later(
        &self,
        key: &str,
        item: Found,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
        heard: bool,
        done: PutDone,
    ) -> bool {
        let op = match writes::put_op(key, &item, expiry, cond, now, heard) {
            Ok(op) => op,
            Err(e) => {
                done(Err(e));
                return true;
            }
        };
        // The batcher's thread waits for the events (as `put` does) before
        // it answers.
        let later: batch::Later =
            Box::new(move |out| done(out.and_then(|(v, _)| writes::put_answer(v))));
        // Not queued: `later` (and `done` in it) dropped uncalled.
        self.batch.write_later(&self.shared, op, later).is_ok()
    }

    fn modify(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&Stored>) -> Result<Stored, DictError>,
        now: Millis,
        events: &mut Events,
    ) -> Result<Item, DictError> {
        // Optimistic: read, compute, write if the version is still the one
        // read; again when another writer came first.
        for _ in 0..MODIFY_RETRIES {
            let current = match self.record(key)? {
                Some(rec) => Some(parse_record(&rec)?),
                None => None,
            };
            let new = Arc::new(f(current.as_ref().map(|(item, _)| &**item))?);
            let cond = Condition::Version(current.as_ref().map(|(_, v)| *v));
            let at = Now::at(now);
            match self.put_record(key, &new, Expiry::Keep, cond, &at, events.heard()) {
                Ok(_) => return Ok(new),
                Err(DictError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DictError::Conflict)
    }

    fn remove(
        &self,
        key: &str,
        _now: Millis,
        events: &mut Events,
    ) -> Result<Option<Item>, DictError> {
        self.remove_record(key, events.heard())
    }

    fn keys(&self, _now: Millis) -> Result<Vec<Arc<str>>, DictError> {
        let inv = self.shared.keys.invoke(&scripts::KEYS, None::<&str>);
        let keys: Vec<String> = self.shared.pool.run_idempotent(|c| inv.invoke(c))?;
        Ok(keys.into_iter().map(Arc::from).collect())
    }

    fn entries(&self, _now: Millis) -> Result<Vec<(Arc<str>, Item)>, DictError> {
        let flat: Vec<Vec<u8>> = self.with_all_keys(&scripts::ENTRIES)?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(rec)) = (it.next(), it.next()) {
            let key = String::from_utf8(k)
                .map_err(|_| DictError::Backend("a stored key is not UTF-8".into()))?;
            out.push((Arc::from(key), parse_record(&rec)?.0));
        }
        Ok(out)
    }

    fn len(&self, _now: Millis) -> Result<usize, DictError> {
        let inv = self.shared.keys.invoke(&scripts::LEN, None::<&str>);
        let n: i64 = self.shared.pool.run_idempotent(|c| inv.invoke(c))?;
        Ok(n.max(0) as usize)
    }

    fn expiry(&self, key: &str, now: Millis) -> Result<Option<Option<Millis>>, DictError> {
        let vkey = self.shared.keys.value(key);
        let ms: i64 = self
            .shared
            .pool
            .run_idempotent(|c| redis::cmd("PTTL").arg(&vkey).query(c))?;
        Ok(match ms {
            -2 => None,
            -1 => Some(None),
            ms => Some(Some(now.saturating_add(ms.max(0) as u64))),
        })
    }

    fn set_expiry(&self, key: &str, at: Option<Millis>, now: Millis) -> Result<bool, DictError> {
        let mode = match at {
            Some(at) => at.saturating_sub(now).to_string(),
            None => "never".to_owned(),
        };
        let keys = &self.shared.keys;
        let mut inv = keys.invoke(&scripts::SET_EXPIRY, [keys.value(key)]);
        inv.arg(key).arg(mode);
        let (set, id): (i64, String) = self.shared.pool.run_idempotent(|c| inv.invoke(c))?;
        self.shared.wait_raised(&id);
        Ok(set == 1)
    }

    fn clear(&self, _now: Millis) -> Result<usize, DictError> {
        let n: i64 = self.with_all_keys(&scripts::CLEAR)?;
        Ok(n.max(0) as usize)
    }

    fn sweep(&self, _now: Millis, max: usize, _events: &mut Events) -> Result<usize, DictError> {
        Redis::reap(&self.shared, true, max)
    }

    fn shared_counts(&self) -> Result<Option<SharedCounts>, DictError> {
        Ok(Some(counts::Counts::read(&self.shared)?.since(&self.base)))
    }

    fn next_expiry(&self) -> Option<Millis> {
        // The follower reaps this dict; the shared sweeper need not.
        None
    }

    fn durable(&self) -> bool {
        self.named
    }

    fn blocking(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.batch.stop();
        self.reads.stop();
        // Possibly on a scheduler (a handle dropped by the VM): no round
        // trip here.
        let held: Vec<(String, Holder)> = self.shared.held.lock().drain().collect();
        locks::release_in_background(self.shared.clone(), held);
    }

    fn attach(&self, dict: Weak<SharedDict>) {
        follower::start(self.shared.clone(), dict);
    }

    fn shared_locks(&self) -> Option<&dyn super::SharedLocks> {
        Some(self)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.close();
    }
}
