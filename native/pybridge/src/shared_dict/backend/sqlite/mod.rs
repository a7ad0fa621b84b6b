//! The SQLite backend: entries in a file that outlives the BEAM.
//!
//! * **Durability.** The file is in WAL mode with `synchronous = FULL`, and
//!   every write is committed (the WAL fsynced) before the call returns: a
//!   write that returned `Ok` survives `kill -9` of the process and a power
//!   cut. **Group commit**: writers that arrive while another writes join
//!   its transaction, each in a savepoint of its own, and the last of them
//!   commits for all (`Sqlite::write`); none is answered before that
//!   commit, so the promise is the same, and a failed commit fails every
//!   write of the batch (none of them happened). One writer alone pays one
//!   fsync per write; many share one.
//! * **One page per write.** A put of a new key writes the page of its row
//!   and nothing else: versions come from a block reserved in
//!   `pybridge_meta` once per [`VERSION_BLOCK`] writes ([`Versions`]), not
//!   from a counter bumped in every transaction (which wrote a second page
//!   to the WAL on every commit, twice the bytes to fsync, and filled the
//!   WAL to its checkpoint twice as fast).
//! * **Time.** Expiries are stored as absolute wall-clock milliseconds, so
//!   they survive a restart: a key whose time passed while nothing had the
//!   file open is never returned, and the first [`SharedDict::expire_due`]
//!   after opening removes it with one `Expire` event. The front's monotonic
//!   clock is mapped to the wall clock by the offset between the two taken
//!   at open.
//! * **Sharing.** Several dicts (a `prefix` each) can share one file, and
//!   several OS processes can open it at once: every read-modify-write
//!   runs inside a `BEGIN IMMEDIATE` transaction, so they never interleave;
//!   a writer waits up to [`BUSY_TIMEOUT`] for another's lock before
//!   failing.
//!   Events are raised in the process that made the change (or removed the
//!   expired key), not in the others.
//! * **Connections.** One connection writes; `pool_size` more read (WAL
//!   readers never wait for the writer). Every call may wait on the disk, so
//!   the BEAM runs them on dirty IO schedulers ([`Backend::blocking`]).
//! * **Faults** (read-only or corrupt file, full disk, missing directory,
//!   another process holding the lock too long) are [`DictError::Backend`]
//!   with SQLite's reason; a failed write changed nothing, and the next call
//!   tries again, so the dict recovers when the disk does.
//!
//! [`SharedDict::expire_due`]: crate::shared_dict::SharedDict::expire_due

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

mod group_commit;

use super::{Backend, Condition, Events, Expiry, Found, Item, Millis, RawEvent};
use crate::shared_dict::clock::{now_ms, wall_ms};
use crate::shared_dict::{codec, DictError, EventKind, Stored};
use group_commit::{Batches, WriterState};

/// How long a write waits for another process's lock on the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema this build writes; a file with a newer one is refused.
const SCHEMA: i64 = 1;

/// How many versions a writer reserves at a time (one write of the meta
/// row per this many writes).
const VERSION_BLOCK: u64 = 1024;

const LIVE: &str = "(expires_at IS NULL OR expires_at > ?3)";

/// A key's row: its encoded value, version and wall-clock expiry.
type Row = (Vec<u8>, u64, Option<i64>);

/// The SQLite backend.
pub struct Sqlite {
    path: PathBuf,
    ns: String,
    writer: Mutex<WriterState>,
    /// Writers in `write`, waiting for the writer connection or running:
    /// the one that brings it to 0 commits the batch.
    pending: AtomicUsize,
    batches: Mutex<Batches>,
    batch_done: Condvar,
    /// The versions this process reserved (used under the writer lock).
    versions: Mutex<Versions>,
    readers: Vec<Mutex<Option<Connection>>>,
    next_reader: AtomicUsize,
    /// Wall-clock ms minus monotonic ms, at open.
    offset: i64,
}

fn err(path: &Path, e: impl std::fmt::Display) -> DictError {
    DictError::Backend(format!("SQLite file {}: {e}", path.display()))
}

fn closed() -> DictError {
    DictError::Destroyed
}

impl Sqlite {
    /// Opens (creating when missing) the file at `path`, for the keys of
    /// `prefix`, with `pool_size` reading connections.
    pub fn open(path: &Path, prefix: &str, pool_size: usize) -> Result<Sqlite, DictError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(err(
                    path,
                    format!("the directory {} does not exist", dir.display()),
                ));
            }
        }
        let writer = Self::connect(path)?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS pybridge_entries (
                     ns TEXT NOT NULL,
                     key TEXT NOT NULL,
                     value BLOB NOT NULL,
                     version INTEGER NOT NULL,
                     expires_at INTEGER,
                     PRIMARY KEY (ns, key)
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS pybridge_expiries
                     ON pybridge_entries (ns, expires_at) WHERE expires_at IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS pybridge_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
                 INSERT OR IGNORE INTO pybridge_meta VALUES ('schema', 1), ('version', 0);",
            )
            .map_err(|e| err(path, e))?;
        let schema: i64 = writer
            .query_row("SELECT v FROM pybridge_meta WHERE k = 'schema'", [], |r| {
                r.get(0)
            })
            .map_err(|e| err(path, e))?;
        if schema > SCHEMA {
            return Err(err(
                path,
                format!("schema {schema} is newer than this build's ({SCHEMA})"),
            ));
        }
        let mut readers = Vec::new();
        for _ in 0..pool_size.max(1) {
            readers.push(Mutex::new(Some(Self::connect(path)?)));
        }
        Ok(Sqlite {
            path: path.to_owned(),
            ns: prefix.to_owned(),
            writer: Mutex::new(WriterState {
                conn: Some(writer),
                open: None,
                next_batch: 0,
            }),
            pending: AtomicUsize::new(0),
            batches: Mutex::new(Batches::default()),
            batch_done: Condvar::new(),
            versions: Mutex::new(Versions::default()),
            readers,
            next_reader: AtomicUsize::new(0),
            offset: i64::try_from(wall_ms()).unwrap_or(i64::MAX) - now_ms() as i64,
        })
    }

    fn connect(path: &Path) -> Result<Connection, DictError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| err(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| err(path, e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| err(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(err(path, format!("cannot use WAL mode (got {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = FULL")
            .map_err(|e| err(path, e))?;
        Ok(conn)
    }

    fn wall(&self, at: Millis) -> i64 {
        (at as i64).saturating_add(self.offset)
    }

    fn mono(&self, wall: i64) -> Millis {
        u64::try_from(wall.saturating_sub(self.offset)).unwrap_or(0)
    }

    fn e(&self, e: impl std::fmt::Display) -> DictError {
        err(&self.path, e)
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<Item, DictError> {
        codec::decode(bytes)
            .map(Arc::new)
            .map_err(|e| self.e(format!("key {key:?}: {e}")))
    }

    /// Runs `f` on a reading connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DictError> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let guard = (0..n)
            .find_map(|i| self.readers[(start + i) % n].try_lock())
            .unwrap_or_else(|| self.readers[start % n].lock());
        let conn = guard.as_ref().ok_or_else(closed)?;
        f(conn).map_err(|e| self.e(e))
    }
    /// The key's row `(value, version, expires_at)`; an expired one is
    /// deleted and reported.
    fn live_row(
        &self,
        tx: &Connection,
        key: &str,
        now: Millis,
        events: &mut Vec<RawEvent>,
    ) -> Result<Option<Row>, DictError> {
        let row = tx
            .prepare_cached(
                "SELECT value, version, expires_at FROM pybridge_entries WHERE ns = ?1 AND key = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![self.ns, key], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(|e| self.e(e))?;
        match row {
            Some((bytes, _, Some(at))) if at <= self.wall(now) => {
                tx.prepare_cached("DELETE FROM pybridge_entries WHERE ns = ?1 AND key = ?2")
                    .and_then(|mut s| s.execute(params![self.ns, key]))
                    .map_err(|e| self.e(e))?;
                let value = self.decode(key, &bytes).ok();
                events.push(RawEvent::new(EventKind::Expire, Arc::from(key), value));
                Ok(None)
            }
            Some((value, version, at)) => Ok(Some((value, version as u64, at))),
            None => Ok(None),
        }
    }

    fn store(
        &self,
        tx: &Connection,
        key: &str,
        item: &Stored,
        expires_at: Option<i64>,
    ) -> Result<u64, DictError> {
        let bytes = codec::encode(item).map_err(|e| DictError::Unstorable(e.0))?;
        let version = self.next_version(tx)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO pybridge_entries (ns, key, value, version, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![self.ns, key, bytes, version, expires_at]))
        .map_err(|e| self.e(e))?;
        Ok(version as u64)
    }
}

/// The block of versions this process reserved: `next..=last` are free.
///
/// The meta row `version` holds the highest version any process reserved
/// (with an older build: the highest it used, which it bumps by one per
/// write). A writer takes the next number of its block; when the block is
/// used up it reserves the next [`VERSION_BLOCK`] numbers above the row,
/// in the write's own transaction (under `BEGIN IMMEDIATE`, so two
/// processes never reserve the same numbers). Every version ever committed
/// is thus at most the committed row, and no number is handed out twice:
/// a key's version changes on every write, across processes and restarts
/// (a restart skips the rest of the block). Versions grow within one
/// process; two processes writing one file interleave their blocks.
#[derive(Default)]
struct Versions {
    next: u64,
    last: u64,
    /// How many blocks this process reserved: a failed write forgets the
    /// block only if it reserved one ([`Sqlite::reservations`]).
    reserved: u64,
}

impl Sqlite {
    /// The next version, reserving a block in `tx` when this process has
    /// none left.
    fn next_version(&self, tx: &Connection) -> Result<i64, DictError> {
        let mut v = self.versions.lock();
        if v.next == 0 || v.next > v.last {
            let last: i64 = tx
                .prepare_cached(
                    "UPDATE pybridge_meta SET v = v + ?1 WHERE k = 'version' RETURNING v",
                )
                .and_then(|mut s| s.query_row([VERSION_BLOCK as i64], |r| r.get(0)))
                .map_err(|e| self.e(e))?;
            let last = u64::try_from(last)
                .ok()
                .filter(|&l| l >= VERSION_BLOCK && l < i64::MAX as u64)
                .ok_or_else(|| self.e(format!("the version counter is broken ({last})")))?;
            *v = Versions {
                next: last - VERSION_BLOCK + 1,
                last,
                reserved: v.reserved + 1,
            };
        }
        let version = v.next;
        v.next += 1;
        // At most `last`, which fits an i64 (checked when reserved).
        Ok(version as i64)
    }

    /// Forgets the reserved block: the transaction that reserved it may
    /// have been rolled back, so its numbers may be reserved again by
    /// another process. The next write reserves a new one.
    pub(super) fn forget_versions(&self) {
        let mut v = self.versions.lock();
        (v.next, v.last) = (0, 0);
    }

    /// How many blocks this process has reserved so far.
    pub(super) fn reservations(&self) -> u64 {
        self.versions.lock().reserved
    }
}

impl Backend for Sqlite {
    fn get(&self, key: &str, now: Millis) -> Result<Option<(Found, u64)>, DictError> {
        let now = self.wall(now);
        let row = self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT value, version FROM pybridge_entries WHERE ns = ?1 AND key = ?2 AND {LIVE}"
            ))?
            .query_row(params![self.ns, key, now], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()
        })?;
        match row {
            Some((bytes, version)) => Ok(Some((self.decode(key, &bytes)?.into(), version as u64))),
            None => Ok(None),
        }
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
        let item = item.into_item();
        self.write(events, |tx, ev| {
            let current = self.live_row(tx, key, now, ev)?;
            match (cond, &current) {
                (Condition::Absent, Some(_)) => return Err(DictError::Exists),
                (Condition::Version(want), have) if want != have.as_ref().map(|r| r.1) => {
                    return Err(DictError::Conflict)
                }
                _ => {}
            }
            let expires_at = match expiry {
                Expiry::Keep => current.and_then(|r| r.2),
                Expiry::Never => None,
                Expiry::At(at) => Some(self.wall(at)),
            };
            let version = self.store(tx, key, &item, expires_at)?;
            ev.push(RawEvent::new(
                EventKind::Put,
                Arc::from(key),
                Some(item.clone()),
            ));
            Ok(version)
        })
    }

    fn modify(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&Stored>) -> Result<Stored, DictError>,
        now: Millis,
        events: &mut Events,
    ) -> Result<Item, DictError> {
        self.write(events, |tx, ev| {
            let current = self.live_row(tx, key, now, ev)?;
            let (old, expires_at) = match current {
                Some((bytes, _, at)) => (Some(self.decode(key, &bytes)?), at),
                None => (None, None),
            };
            let item = Arc::new(f(old.as_deref())?);
            self.store(tx, key, &item, expires_at)?;
            ev.push(RawEvent::new(
                EventKind::Put,
                Arc::from(key),
                Some(item.clone()),
            ));
            Ok(item)
        })
    }

    fn remove(
        &self,
        key: &str,
        now: Millis,
        events: &mut Events,
    ) -> Result<Option<Item>, DictError> {
        self.write(events, |tx, ev| {
            let Some((bytes, _, _)) = self.live_row(tx, key, now, ev)? else {
                return Ok(None);
            };
            tx.prepare_cached("DELETE FROM pybridge_entries WHERE ns = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![self.ns, key]))
                .map_err(|e| self.e(e))?;
            // A value that no longer decodes is still removed.
            let value = self.decode(key, &bytes).ok();
            ev.push(RawEvent::new(
                EventKind::Delete,
                Arc::from(key),
                value.clone(),
            ));
            Ok(value)
        })
    }

    fn keys(&self, now: Millis) -> Result<Vec<Arc<str>>, DictError> {
        let now = self.wall(now);
        self.read(|c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT key FROM pybridge_entries WHERE ns = ?1 AND ?2 IS NULL AND {LIVE}"
            ))?;
            let rows = s.query_map(params![self.ns, None::<i64>, now], |r| {
                r.get::<_, String>(0)
            })?;
            rows.map(|k| k.map(Arc::from)).collect()
        })
    }

    fn entries(&self, now: Millis) -> Result<Vec<(Arc<str>, Item)>, DictError> {
        let now = self.wall(now);
        let rows = self.read(|c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT key, value FROM pybridge_entries WHERE ns = ?1 AND ?2 IS NULL AND {LIVE}"
            ))?;
            let rows = s.query_map(params![self.ns, None::<i64>, now], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(k, v)| Ok((Arc::from(k.as_str()), self.decode(&k, &v)?)))
            .collect()
    }

    fn len(&self, now: Millis) -> Result<usize, DictError> {
        let now = self.wall(now);
        let n: i64 = self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT COUNT(*) FROM pybridge_entries WHERE ns = ?1 AND ?2 IS NULL AND {LIVE}"
            ))?
            .query_row(params![self.ns, None::<i64>, now], |r| r.get(0))
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn expiry(&self, key: &str, now: Millis) -> Result<Option<Option<Millis>>, DictError> {
        let wall = self.wall(now);
        let row: Option<Option<i64>> = self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT expires_at FROM pybridge_entries WHERE ns = ?1 AND key = ?2 AND {LIVE}"
            ))?
            .query_row(params![self.ns, key, wall], |r| r.get(0))
            .optional()
        })?;
        Ok(row.map(|at| at.map(|w| self.mono(w))))
    }

    fn set_expiry(&self, key: &str, at: Option<Millis>, now: Millis) -> Result<bool, DictError> {
        let wall = self.wall(now);
        let at = at.map(|at| self.wall(at));
        self.write(&mut Events::default(), |tx, _| {
            tx.prepare_cached(&format!(
                "UPDATE pybridge_entries SET expires_at = ?4 WHERE ns = ?1 AND key = ?2 AND {LIVE}"
            ))
            .and_then(|mut s| s.execute(params![self.ns, key, wall, at]))
            .map(|n| n > 0)
            .map_err(|e| self.e(e))
        })
    }

    fn clear(&self, now: Millis) -> Result<usize, DictError> {
        let live = self.len(now)?;
        self.write(&mut Events::default(), |tx, _| {
            tx.prepare_cached("DELETE FROM pybridge_entries WHERE ns = ?1")
                .and_then(|mut s| s.execute(params![self.ns]))
                .map_err(|e| self.e(e))
        })?;
        Ok(live)
    }

    fn sweep(&self, now: Millis, max: usize, events: &mut Events) -> Result<usize, DictError> {
        let wall = self.wall(now);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.write(events, |tx, ev| {
            let mut s = tx
                .prepare_cached(
                    "DELETE FROM pybridge_entries WHERE ns = ?1 AND key IN (
                         SELECT key FROM pybridge_entries
                         WHERE ns = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2
                         ORDER BY expires_at LIMIT ?3)
                     RETURNING key, value",
                )
                .map_err(|e| self.e(e))?;
            let rows = s
                .query_map(params![self.ns, wall, max], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.e(e))?;
            let n = rows.len();
            ev.extend(rows.into_iter().map(|(k, bytes)| {
                let value = self.decode(&k, &bytes).ok();
                RawEvent::new(EventKind::Expire, Arc::from(k), value)
            }));
            Ok(n)
        })
    }

    fn next_expiry(&self) -> Option<Millis> {
        let at: Result<Option<i64>, DictError> = self.read(|c| {
            c.prepare_cached(
                "SELECT MIN(expires_at) FROM pybridge_entries
                 WHERE ns = ?1 AND expires_at IS NOT NULL",
            )?
            .query_row(params![self.ns], |r| r.get(0))
        });
        match at {
            Ok(at) => at.map(|w| self.mono(w)),
            // Unreadable for now (a lock, a disk error): ask again soon.
            Err(_) => Some(now_ms().saturating_add(1000)),
        }
    }

    fn durable(&self) -> bool {
        true
    }

    fn blocking(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn close(&self) {
        let mut w = self.writer.lock();
        // No write is in flight (the front's gate is held exclusively).
        let _ = self.commit(&mut w);
        drop(w.conn.take());
        for r in &self.readers {
            drop(r.lock().take());
        }
    }
}

#[cfg(test)]
mod tests;
