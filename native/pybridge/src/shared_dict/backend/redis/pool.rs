//! The connections of one Redis-backed dict: `pool_size` plain synchronous
//! connections, each behind its own mutex, made on first use and remade
//! after a failure.
//!
//! * Every command has a deadline ([`PoolOptions::timeout`]): a Redis that
//!   stops answering costs a caller that long at most, never a hang.
//! * A failure that looks like a lost connection bumps the pool's *epoch*:
//!   every connection made before it is dropped before its next use, so
//!   after a Redis restart one command per caller in flight fails, not one
//!   per pooled connection.
//! * While Redis cannot be reached, a new connection is tried at most once
//!   per [`RETRY_EVERY`]; callers in between fail at once with the last
//!   error (a get in a hot loop gets `{:error, _}` quickly and does not
//!   hammer a dead server). Recovery needs no call: the next attempt after
//!   that interval connects again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{Client, Connection, RedisError};

use crate::shared_dict::DictError;

/// Shortest time between two connection attempts while Redis is down.
pub const RETRY_EVERY: Duration = Duration::from_millis(200);

/// How a pool connects.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections kept (callers beyond that wait for one).
    pub size: usize,
    /// Deadline of one connect, and of one command's write and read.
    pub timeout: Duration,
}

struct Slot {
    conn: Option<Connection>,
    epoch: u64,
}

pub struct Pool {
    client: Client,
    url: String,
    opts: PoolOptions,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
    epoch: AtomicU64,
    /// When the last failed connect happened, and why.
    down: Mutex<Option<(Instant, String)>>,
}

/// A Redis error as the dict reports it.
pub fn unavailable(url: &str, err: &RedisError) -> DictError {
    DictError::Backend(format!("redis at {}: {err}", redact(url)))
}

/// `url` without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Whether `err` means the connection is unusable (as opposed to a script
/// or type error from a healthy server).
pub fn is_connection_error(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}

impl Pool {
    /// A pool for `url` (nothing is connected yet).
    pub fn new(url: &str, opts: PoolOptions) -> Result<Pool, DictError> {
        let client = Client::open(url)
            .map_err(|e| DictError::Backend(format!("bad redis url {:?}: {e}", redact(url))))?;
        let size = opts.size.max(1);
        Ok(Pool {
            client,
            url: url.to_owned(),
            slots: (0..size)
                .map(|_| {
                    Mutex::new(Slot {
                        conn: None,
                        epoch: 0,
                    })
                })
                .collect(),
            opts,
            next: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            down: Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection with the pool's deadlines (for a caller that keeps
    /// its own, like the follower's blocking reads).
    pub fn connect(&self) -> Result<Connection, DictError> {
        {
            let down = self.down.lock();
            if let Some((at, why)) = &*down {
                if at.elapsed() < RETRY_EVERY {
                    return Err(DictError::Backend(why.clone()));
                }
            }
        }
        let made = self
            .client
            .get_connection_with_timeout(self.opts.timeout)
            .and_then(|c| {
                c.set_read_timeout(Some(self.opts.timeout))?;
                c.set_write_timeout(Some(self.opts.timeout))?;
                Ok(c)
            });
        match made {
            Ok(c) => {
                *self.down.lock() = None;
                Ok(c)
            }
            Err(err) => {
                let e = unavailable(&self.url, &err);
                if let DictError::Backend(why) = &e {
                    *self.down.lock() = Some((Instant::now(), why.clone()));
                }
                Err(e)
            }
        }
    }

    /// Marks every connection made so far as stale.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Runs `f` on a pooled connection. A connection error drops the
    /// connection and invalidates the others; `f` is not repeated (the
    /// command may have been applied): the caller decides.
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, DictError> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        // A free slot if there is one, else wait for the one we drew.
        let mut slot = (0..n)
            .find_map(|i| self.slots[(start + i) % n].try_lock())
            .unwrap_or_else(|| self.slots[start].lock());
        let epoch = self.epoch.load(Ordering::Acquire);
        if slot.epoch != epoch {
            slot.conn = None;
        }
        if slot.conn.is_none() {
            slot.conn = Some(self.connect()?);
            slot.epoch = epoch;
        }
        let Some(conn) = slot.conn.as_mut() else {
            return Err(DictError::Backend("no connection".into()));
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(err) => {
                if is_connection_error(&err) {
                    slot.conn = None;
                    self.invalidate();
                }
                Err(unavailable(&self.url, &err))
            }
        }
    }

    /// Like [`run`](Self::run), repeated once on a fresh connection when the
    /// first attempt met a stale one: only for commands that may run twice
    /// (reads, and writes whose second run changes nothing more).
    pub fn run_idempotent<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, DictError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        match self.run(&mut f) {
            Err(DictError::Backend(_)) if self.epoch.load(Ordering::Acquire) != epoch => {
                self.run(f)
            }
            other => other,
        }
    }
}
