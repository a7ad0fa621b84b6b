//! One thread per Redis-backed dict in each OS process (`py-dict-redis`):
//! it reads the dict's event stream and raises what it reads through the
//! dict's front, reaps expired keys, and renews the leases of the locks
//! this process holds.
//!
//! It reads with `XREAD BLOCK` from the last id it saw, on a connection of
//! its own. When the connection breaks it makes a new one (once per
//! [`pool::RETRY_EVERY`] while Redis is down) and reads on from the same
//! id, so nothing written meanwhile is skipped, unless the stream was
//! trimmed past that id: that is detected from the stream's
//! `entries-added` and `length` and counted in `events_missed`.
//!
//! On a Redis Cluster the stream lives on the dict's node: a `MOVED` reply
//! retargets the pool ([`pool::Pool::retarget`]) and the follower reads on
//! from there; `ASK`, `TRYAGAIN` and `CLUSTERDOWN` (a migration or a
//! failover in progress) make it try again shortly. Reaping and lease
//! renewal go through the pool, which follows redirections itself.
//!
//! While nothing on this node hears of the dict's events (no listener
//! wants them, no telemetry, no lock contended here), it reads none: it
//! waits (a blocked `XREAD` of one entry) until something was written
//! after its place, then moves its place to the stream's end, at most once
//! per [`LAZY`] (the scripts count the events for `stats` themselves, see
//! [`super::counts`]), so a stream of writes costs this node next to
//! nothing to follow. A listener added then hears of the writes from that
//! place on.
//!
//! Values: when a listener uses them (a Python callback), the follower hands it each
//! event's value: decoded from the entry, or for a big put read from the
//! key if it still holds the version written (see [`super::scripts`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use super::{locks, parse_record, pool, Redis, Shared};
use crate::limits::SWEEP_BATCH;
use crate::shared_dict::backend::{Item, RawEvent};
use crate::shared_dict::{codec, EventKind, SharedDict};

/// How long one `XREAD` blocks (and so how soon a closed dict's follower
/// notices).
const BLOCK: Duration = Duration::from_millis(100);
/// Entries read per `XREAD`.
const READ_COUNT: usize = 1024;
/// How often the follower reaps when no expiry is known to be due sooner.
const REAP_EVERY: Duration = Duration::from_millis(100);
/// The pause between two steps while nothing on this node hears of the
/// dict's events (no listener wants events, no telemetry, no lock
/// contended here: see [`quiet`]), each of which only moves the follower's
/// place to the stream's end. Ended early by a writer waiting for the
/// follower; a listener added meanwhile hears of other nodes' events at
/// most this much later, and may hear of some written up to this much
/// before it came.
const LAZY: Duration = Duration::from_millis(10);

/// Starts the follower of `dict`, reading events after the newest one now.
pub(super) fn start(shared: Arc<Shared>, dict: Weak<SharedDict>) {
    let pos = shared
        .pool
        .run_idempotent(|c| newest(c, &shared.keys.ev))
        .ok();
    if let Some(p) = &pos {
        shared.set_raised(&p.id);
    }
    let spawned = thread::Builder::new()
        .name("py-dict-redis".into())
        .spawn(move || run(&shared, &dict, pos));
    if let Err(err) = spawned {
        eprintln!("pybridge: cannot start a Redis dict's event thread: {err}");
    }
}

/// Where a reader of the stream is: the last id it read, and how many
/// entries the stream had had added up to that one (Redis counts them in
/// `entries-added`, trimmed or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    pub id: String,
    pub seq: u64,
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `v` as a string, moved out of it.
fn into_string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// The bytes of a string reply (empty for anything else).
fn bytes_of(v: &Value) -> &[u8] {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.as_bytes(),
        _ => &[],
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => as_string(other)?.parse().ok(),
    }
}

/// `XINFO STREAM`: (last id, entries ever added, entries kept), or `None`
/// when the stream does not exist yet.
fn info(c: &mut Connection, stream: &str) -> redis::RedisResult<Option<(String, u64, u64)>> {
    let info: Value = match redis::cmd("XINFO").arg("STREAM").arg(stream).query(c) {
        Ok(v) => v,
        // No stream yet.
        Err(e) if !pool::is_connection_error(&e) && pool::redirect_of(&e).is_none() => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let pairs: Vec<(String, Value)> = match info {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|p| Some((as_string(&p[0])?, p.get(1)?.clone())))
            .collect(),
        Value::Map(items) => items
            .into_iter()
            .filter_map(|(k, v)| Some((as_string(&k)?, v)))
            .collect(),
        _ => Vec::new(),
    };
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let last = field("last-generated-id").and_then(as_string);
    let added = field("entries-added").and_then(as_u64);
    let length = field("length").and_then(as_u64);
    Ok(match (last, added, length) {
        (Some(last), Some(added), Some(length)) => Some((last, added, length)),
        _ => None,
    })
}

/// The stream's end now: where a new reader starts.
pub(super) fn newest(c: &mut Connection, stream: &str) -> redis::RedisResult<Position> {
    Ok(match info(c, stream)? {
        Some((id, seq, _)) => Position { id, seq },
        None => Position {
            id: "0-0".into(),
            seq: 0,
        },
    })
}

/// How many entries after `pos` were trimmed before being read; moves
/// `pos` past them, so later counts stay right.
pub(super) fn missed(
    c: &mut Connection,
    stream: &str,
    pos: &mut Position,
) -> redis::RedisResult<u64> {
    let Some((_, added, length)) = info(c, stream)? else {
        return Ok(0);
    };
    let first_kept = (added + 1).saturating_sub(length);
    if pos.seq + 1 < first_kept {
        let gap = first_kept - (pos.seq + 1);
        pos.seq = first_kept - 1;
        return Ok(gap);
    }
    Ok(0)
}

/// What an event entry says of its value.
#[derive(Debug)]
enum Carried {
    Nothing,
    /// The value's encoding.
    Body(Vec<u8>),
    /// Too big to carry: the version the put wrote.
    Version(u64),
}

/// One event entry of the stream.
struct Entry {
    kind: EventKind,
    key: Arc<str>,
    carried: Carried,
}

/// What one `XREAD` brought: events, released locks, and the last id.
type Batch = (Vec<Entry>, Vec<String>, Option<String>, usize);

/// The events of `entries`, with their values when `want` (someone
/// listens): decoded, or read back by version (one script for the batch, plus a `GET` per big
/// value: [`super::big::read_records`]).
fn with_values(shared: &Shared, entries: Vec<Entry>, want: bool) -> Vec<RawEvent> {
    let mut fetched: std::collections::HashMap<Arc<str>, (Item, u64)> = Default::default();
    if want {
        let mut names: Vec<Arc<str>> = entries
            .iter()
            .filter(|e| matches!(e.carried, Carried::Version(_)))
            .map(|e| e.key.clone())
            .collect();
        names.sort();
        names.dedup();
        if !names.is_empty() {
            let vkeys: Vec<String> = names.iter().map(|k| shared.keys.value(k)).collect();
            // Big ones each under a deadline of their size (see `big`).
            let recs = super::big::read_records(&shared.pool, &vkeys).unwrap_or_default();
            for (name, rec) in names.into_iter().zip(recs) {
                if let Some(Ok(got)) = rec.as_deref().map(parse_record) {
                    fetched.insert(name, got);
                }
            }
        }
    }
    entries
        .into_iter()
        .map(|e| {
            let value = match e.carried {
                _ if !want => None,
                Carried::Nothing => None,
                Carried::Body(b) => codec::decode(&b).ok().map(Arc::new),
                Carried::Version(v) => fetched
                    .get(&e.key)
                    .filter(|(_, have)| *have == v)
                    .map(|(item, _)| item.clone()),
            };
            RawEvent::new(e.kind, e.key, value)
        })
        .collect()
}

/// Whether nothing on this node hears of `d`'s events: no listener wants
/// them, no telemetry, and no lock of the dict was contended here lately
/// (a waiter here needs the release read). The follower then reads none.
fn quiet(d: &SharedDict, shared: &Shared) -> bool {
    !d.heard() && shared.may_pause()
}

/// Up to `count` entries after `last`, waiting for one up to [`BLOCK`]
/// (`Nil`: none came).
fn xread(c: &mut Connection, stream: &str, last: &str, count: usize) -> redis::RedisResult<Value> {
    redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(stream)
        .arg(last)
        .query(c)
}

/// Whether anything was written after `last`: waits for it up to
/// [`BLOCK`] (one entry read, not looked at).
fn written_after(c: &mut Connection, stream: &str, last: &str) -> redis::RedisResult<bool> {
    Ok(!matches!(xread(c, stream, last, 1)?, Value::Nil))
}

fn read(c: &mut Connection, stream: &str, last: &str, tag: &str) -> redis::RedisResult<Batch> {
    let v = xread(c, stream, last, READ_COUNT)?;
    let mut events = Vec::new();
    let mut unlocked = Vec::new();
    let mut newest = None;
    let mut count = 0;
    let streams = match v {
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => Vec::new(),
    };
    for s in streams {
        let Value::Array(mut pair) = s else { continue };
        let Some(Value::Array(entries)) = pair.pop() else {
            continue;
        };
        for entry in entries {
            // Taken apart by value: the strings move out, uncopied.
            let Value::Array(parts) = entry else { continue };
            let mut parts = parts.into_iter();
            let (Some(id), Some(Value::Array(fields))) = (parts.next(), parts.next()) else {
                continue;
            };
            count += 1;
            newest = into_string(id);
            let (mut kind, mut key, mut carried) = (None, None, Carried::Nothing);
            // Written by this dict while nothing here heard of its writes
            // (it carries our tag): a listener added since must not hear
            // of it, as on the in-process stores (it came after the write
            // returned, or while it ran), and none was there when it began.
            let mut unheard = false;
            let mut fields = fields.into_iter();
            while let (Some(name), Some(v)) = (fields.next(), fields.next()) {
                match (bytes_of(&name), v) {
                    (b"e", Value::BulkString(v)) => kind = v.first().copied(),
                    (b"k", v) => key = into_string(v),
                    (b"v", Value::BulkString(b)) => carried = Carried::Body(b),
                    (b"n", v) => {
                        if let Some(n) = as_u64(&v) {
                            carried = Carried::Version(n);
                        }
                    }
                    (b"q", Value::BulkString(t)) => unheard = t == tag.as_bytes(),
                    _ => {}
                }
            }
            let (Some(kind), Some(key), false) = (kind, key, unheard) else {
                continue;
            };
            let kind = match kind {
                b'p' => EventKind::Put,
                b'd' => EventKind::Delete,
                b'e' => EventKind::Expire,
                b'u' => {
                    unlocked.push(key);
                    continue;
                }
                _ => continue,
            };
            events.push(Entry {
                kind,
                key: Arc::from(key),
                carried,
            });
        }
    }
    Ok((events, unlocked, newest, count))
}

fn run(shared: &Shared, dict: &Weak<SharedDict>, mut pos: Option<Position>) {
    let stream = shared.keys.ev.clone();
    let mut conn: Option<Connection> = None;
    let mut last_reap = Instant::now() - REAP_EVERY;
    let mut last_renew = Instant::now();
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        match dict.upgrade() {
            Some(d) if !d.is_destroyed() => {}
            _ => return,
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match shared.pool.connect() {
                Ok(mut c) => {
                    // XREAD blocks BLOCK on the server: wait that long more.
                    let _ = c.set_read_timeout(Some(super::COMMAND_TIMEOUT + BLOCK));
                    // Named, for an operator's CLIENT LIST.
                    let _: redis::RedisResult<()> = redis::cmd("CLIENT")
                        .arg("SETNAME")
                        .arg("pybridge-follower")
                        .query(&mut c);
                    if let Some(p) = pos.as_mut() {
                        if let Ok(n) = missed(&mut c, &stream, p) {
                            shared.events_missed.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    conn.insert(c)
                }
                Err(_) => {
                    thread::sleep(pool::RETRY_EVERY);
                    continue;
                }
            },
        };
        // Ok(true): pause before the next read (see `LAZY`).
        let step = (|| -> redis::RedisResult<bool> {
            let p = match pos.as_mut() {
                Some(p) => p,
                None => {
                    let p = pos.insert(newest(c, &stream)?);
                    shared.set_raised(&p.id);
                    p
                }
            };
            // (The dict is not held across a blocking read.)
            let quiet_now = || dict.upgrade().is_some_and(|d| quiet(&d, shared));
            let lazy = if quiet_now() {
                // Nothing here hears of the events: only keep our place at
                // the end, once something was written after it (an idle
                // dict costs one blocked read per BLOCK). Taken only if
                // that still holds once we know the end: a listener added
                // meanwhile (and the writes it hears of) is read from the
                // old place, next time round.
                if written_after(c, &stream, &p.id)? {
                    let end = newest(c, &stream)?;
                    let still = quiet_now();
                    if still {
                        *p = end;
                    }
                    still
                } else {
                    false
                }
            } else {
                let (events, unlocked, newest_id, count) = read(c, &stream, &p.id, &shared.tag)?;
                #[cfg(test)]
                shared
                    .entries_read
                    .fetch_add(count as u64, Ordering::Relaxed);
                if let Some(id) = newest_id {
                    p.id = id;
                    p.seq += count as u64;
                }
                if count == READ_COUNT {
                    // Behind: check that nothing was trimmed past us.
                    let n = missed(c, &stream, p)?;
                    shared.events_missed.fetch_add(n, Ordering::Relaxed);
                }
                if let Some(d) = dict.upgrade() {
                    if !events.is_empty() {
                        d.raise_counted(&with_values(shared, events, d.wants_values()));
                    }
                    if !unlocked.is_empty() {
                        d.remote_unlocked(&unlocked);
                    }
                }
                false
            };
            // Writers waiting for their own events go on.
            shared.set_raised(&p.id);
            let due = shared
                .next_due
                .lock()
                .map_or(REAP_EVERY, |ms| Duration::from_millis(ms).min(REAP_EVERY));
            // Through the pool (it follows redirections); a failure is
            // tried again next round, and a lost connection shows on the
            // next read.
            if last_reap.elapsed() >= due {
                last_reap = Instant::now();
                let _ = Redis::reap(shared, false, SWEEP_BATCH);
            }
            if last_renew.elapsed() >= *shared.lease.lock() / 3 {
                last_renew = Instant::now();
                let _ = locks::renew(shared);
            }
            Ok(lazy)
        })();
        if let Ok(true) = step {
            shared.pause(LAZY);
        }
        if let Err(err) = step {
            match pool::redirect_of(&err) {
                // The dict's slot lives elsewhere now: read there.
                Some(pool::Redirect::Moved(addr)) => {
                    let _ = shared.pool.retarget(&addr);
                    conn = None;
                }
                // A migration or failover in progress.
                Some(_) => thread::sleep(pool::REDIRECT_PAUSE),
                None if pool::is_connection_error(&err) => conn = None,
                // A server error (e.g. still loading after a restart).
                None => thread::sleep(pool::RETRY_EVERY),
            }
        }
    }
}
