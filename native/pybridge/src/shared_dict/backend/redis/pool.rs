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
//!
//! Redis Cluster: a dict's keys share one hash tag, so one slot, so one
//! node (its slot's master) serves all of it. The pool talks to that one
//! node, its *target*: it starts at the first seed URL and follows the
//! cluster's redirections ([`Pool::run`]):
//!
//! * `MOVED slot host:port` (the slot lives elsewhere, for good): the pool
//!   retargets to that node (every connection is remade) and runs the
//!   command again there: a MOVED command did not run, so this is safe for
//!   every command.
//! * `ASK slot host:port` (the slot is being migrated and this key is
//!   already on the new node): the command runs once more on a connection
//!   to that node, preceded by `ASKING`; the target stays.
//! * `TRYAGAIN` (a multi-key command during a migration) and `CLUSTERDOWN`
//!   (a failover in progress): the command is tried again after
//!   [`REDIRECT_PAUSE`], until the command deadline.
//! * When the target cannot be reached (its node died), the next connect
//!   tries the seed URLs in turn; a seed answers with `MOVED` to the slot's
//!   master (after a failover, the promoted replica), and the pool follows.
//!
//! A standalone server never answers with these, so the same code serves
//! both: nothing to configure.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{Client, Connection, ConnectionAddr, ErrorKind, RedisError, ServerErrorKind};

use crate::shared_dict::DictError;

/// Shortest time between two connection attempts while Redis is down.
pub const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Pause before trying a command again after `TRYAGAIN` or `CLUSTERDOWN`.
pub const REDIRECT_PAUSE: Duration = Duration::from_millis(20);

/// Redirections one command follows before it fails (a slot moving
/// several times during one command, or a loop).
const MAX_REDIRECTS: usize = 1000;

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

/// A node the pool can connect to.
#[derive(Clone)]
struct Node {
    client: Client,
    url: String,
}

pub struct Pool {
    /// The URLs the dict was opened with (more than one: nodes of one
    /// cluster).
    seeds: Vec<Node>,
    /// The node commands go to now.
    target: Mutex<Node>,
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

/// What a cluster's answer asks of the caller.
pub enum Redirect {
    /// The dict's slot lives on this node now (`MOVED`).
    Moved(String),
    /// This command, once, on this node after `ASKING` (`ASK`).
    Ask(String),
    /// Again in a moment (`TRYAGAIN`, `CLUSTERDOWN`).
    Again,
}

/// The redirection `err` is, if it is one.
pub fn redirect_of(err: &RedisError) -> Option<Redirect> {
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::Moved) => {
            Some(Redirect::Moved(err.redirect_node()?.0.to_owned()))
        }
        ErrorKind::Server(ServerErrorKind::Ask) => {
            Some(Redirect::Ask(err.redirect_node()?.0.to_owned()))
        }
        ErrorKind::Server(ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown) => {
            Some(Redirect::Again)
        }
        _ => None,
    }
}

/// `host:port` as a `(host, port)` pair (an IPv6 host may be bracketed or
/// not: the port is after the last colon).
fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

impl Node {
    fn open(url: &str) -> Result<Node, DictError> {
        let client = Client::open(url)
            .map_err(|e| DictError::Backend(format!("bad redis url {:?}: {e}", redact(url))))?;
        Ok(Node {
            client,
            url: url.to_owned(),
        })
    }

    /// The node at `addr` (`host:port`, from a redirection), reached the
    /// way `self` is (same password, user, TLS settings).
    fn at(&self, addr: &str) -> Result<Node, DictError> {
        let bad = || DictError::Backend(format!("redis sent a bad node address {addr:?}"));
        let (host, port) = split_addr(addr).ok_or_else(bad)?;
        let info = self.client.get_connection_info().clone();
        let new_addr = match info.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.clone(), port),
        };
        let client = Client::open(info.set_addr(new_addr)).map_err(|_| bad())?;
        let url = match self.url.find("://") {
            Some(s) => format!("{}://{addr}", &self.url[..s]),
            None => addr.to_owned(),
        };
        Ok(Node { client, url })
    }

    fn connect(&self, timeout: Duration) -> Result<Connection, RedisError> {
        let c = self.client.get_connection_with_timeout(timeout)?;
        c.set_read_timeout(Some(timeout))?;
        c.set_write_timeout(Some(timeout))?;
        Ok(c)
    }
}

impl Pool {
    /// A pool for `urls` (one server, or seed nodes of one cluster; nothing
    /// is connected yet).
    pub fn new(urls: &[&str], opts: PoolOptions) -> Result<Pool, DictError> {
        let seeds = urls
            .iter()
            .map(|u| Node::open(u))
            .collect::<Result<Vec<_>, _>>()?;
        let first = seeds
            .first()
            .cloned()
            .ok_or_else(|| DictError::Backend("no redis url".into()))?;
        let size = opts.size.max(1);
        Ok(Pool {
            seeds,
            target: Mutex::new(first),
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

    /// The URL of the node commands go to now (for messages).
    pub fn url(&self) -> String {
        self.target.lock().url.clone()
    }

    /// A new connection with the pool's deadlines (for a caller that keeps
    /// its own, like the follower's blocking reads), to the target; when
    /// that cannot be reached, to the first seed that can (which becomes
    /// the target: it redirects to the dict's node).
    pub fn connect(&self) -> Result<Connection, DictError> {
        {
            let down = self.down.lock();
            if let Some((at, why)) = &*down {
                if at.elapsed() < RETRY_EVERY {
                    return Err(DictError::Backend(why.clone()));
                }
            }
        }
        let target = self.target.lock().clone();
        let err = match target.connect(self.opts.timeout) {
            Ok(c) => {
                *self.down.lock() = None;
                return Ok(c);
            }
            Err(err) => err,
        };
        for seed in self.seeds.iter().filter(|s| s.url != target.url) {
            if let Ok(c) = seed.connect(self.opts.timeout) {
                *self.target.lock() = seed.clone();
                self.invalidate();
                *self.down.lock() = None;
                return Ok(c);
            }
        }
        let e = unavailable(&target.url, &err);
        if let DictError::Backend(why) = &e {
            *self.down.lock() = Some((Instant::now(), why.clone()));
        }
        Err(e)
    }

    /// Marks every connection made so far as stale.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Follows `MOVED` to `addr`: it becomes the target, every connection
    /// is remade.
    pub fn retarget(&self, addr: &str) -> Result<(), DictError> {
        let mut target = self.target.lock();
        let node = target.at(addr)?;
        if node.url != target.url {
            *target = node;
            self.invalidate();
        }
        Ok(())
    }

    /// Runs `f` once on a new connection to `addr` after `ASKING`.
    fn ask<T>(
        &self,
        addr: &str,
        f: &mut impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        let node = self
            .target
            .lock()
            .at(addr)
            .map_err(|e| RedisError::from(std::io::Error::other(e.to_string())))?;
        let mut c = node.connect(self.opts.timeout)?;
        // A script unknown there answers NOSCRIPT, which uses up the
        // ASKING; redis-rs then loads it and runs it again: ASKING again.
        for _ in 0..2 {
            redis::cmd("ASKING").query::<()>(&mut c)?;
            match f(&mut c) {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::Ask) => continue,
                other => return other,
            }
        }
        redis::cmd("ASKING").query::<()>(&mut c)?;
        f(&mut c)
    }

    /// Runs `f` on a pooled connection, following the cluster's
    /// redirections (see the module doc: a redirected command did not run,
    /// so it is safe to send again). A connection error drops the
    /// connection and invalidates the others; `f` is not repeated then (the
    /// command may have been applied): the caller decides.
    pub fn run<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, DictError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut redirects = 0;
        loop {
            let err = match self.run_once(&mut f)? {
                Ok(v) => return Ok(v),
                Err(err) => err,
            };
            let url = self.url();
            let Some(redirect) = redirect_of(&err) else {
                return Err(unavailable(&url, &err));
            };
            redirects += 1;
            if redirects > MAX_REDIRECTS || Instant::now() >= deadline {
                return Err(DictError::Backend(format!(
                    "redis at {}: the dict's slot is moving between cluster nodes \
                     (resharding or failover), try again: {err}",
                    redact(&url)
                )));
            }
            match redirect {
                Redirect::Moved(addr) => self.retarget(&addr)?,
                Redirect::Ask(addr) => match self.ask(&addr, &mut f) {
                    Ok(v) => return Ok(v),
                    Err(e) if redirect_of(&e).is_some() => std::thread::sleep(REDIRECT_PAUSE),
                    Err(e) => return Err(unavailable(&addr, &e)),
                },
                Redirect::Again => std::thread::sleep(REDIRECT_PAUSE),
            }
        }
    }

    /// One try of `f` on a pooled connection: `Err` when no connection
    /// could be had, `Ok(Err)` with the command's error.
    fn run_once<T>(
        &self,
        f: &mut impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<Result<T, RedisError>, DictError> {
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
            // A connect that fell back on a seed moved the epoch on.
            slot.epoch = self.epoch.load(Ordering::Acquire);
        }
        let Some(conn) = slot.conn.as_mut() else {
            return Err(DictError::Backend("no connection".into()));
        };
        let out = f(conn);
        if let Err(err) = &out {
            if is_connection_error(err) {
                slot.conn = None;
                self.invalidate();
            }
        }
        Ok(out)
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
