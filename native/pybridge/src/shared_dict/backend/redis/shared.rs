//! What a Redis-backed dict and its follower thread share ([`Shared`]):
//! the pool and key names, the locks held here, and how a write waits for
//! its node to raise its events ([`Shared::written`]), and the follower's
//! pause between steps while nothing here listens ([`Shared::pause`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{Keys, Pool, LOCK_LEASE};
use crate::shared_dict::backend::Millis;
use crate::shared_dict::Holder;

/// How long a write waits for this node's follower to raise its event
/// before returning anyway (the follower is reconnecting; the event comes
/// later).
const RAISE_WAIT: Duration = Duration::from_secs(2);

/// What the backend and its follower thread share.
pub(crate) struct Shared {
    pub pool: Pool,
    pub keys: Keys,
    /// This OS process's id in lock tokens.
    pub node: u64,
    /// Locks held by this process: key → holder (renewed by the follower).
    pub held: Mutex<HashMap<String, Holder>>,
    pub closed: AtomicBool,
    /// Events trimmed from the stream before this node's follower read them.
    pub events_missed: AtomicU64,
    /// Stream entries the follower read (and parsed), for tests.
    #[cfg(test)]
    pub entries_read: AtomicU64,
    /// Redis ms to the next expiry, as the last reap saw it.
    pub next_due: Mutex<Option<Millis>>,
    /// The lease of this node's locks ([`LOCK_LEASE`] unless changed).
    pub lease: Mutex<Duration>,
    /// The id of the last stream entry this node's follower has raised.
    pub raised: Mutex<(u64, u64)>,
    raised_cv: Condvar,
    /// Set to end the follower's pause between reads at once (see
    /// [`Shared::pause`]).
    nudged: Mutex<bool>,
    nudge_cv: Condvar,
    /// When a lock of this dict was last found held by another (ms since
    /// the dict opened, +1; 0: never): this node may have waiters for its
    /// release, which the follower then announces without pausing.
    contended_at: AtomicU64,
    opened: std::time::Instant,
    /// Marks the events of this dict's writes that nothing here heard of
    /// (field `q` of their stream entries): this dict's follower skips
    /// those (the script counted them); every other reader raises them as
    /// usual. One per
    /// opened dict (two opened in one OS process are two nodes).
    pub tag: String,
}

/// A stream id (`ms-seq`) as a comparable pair.
fn parse_id(id: &str) -> (u64, u64) {
    let mut parts = id.splitn(2, '-');
    let ms = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seq = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (ms, seq)
}

impl Shared {
    /// The state of a dict just opened on `pool`, this process being
    /// `node` in lock tokens.
    pub(super) fn new(pool: Pool, keys: Keys, node: u64) -> Shared {
        Shared {
            pool,
            keys,
            node,
            held: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            events_missed: AtomicU64::new(0),
            #[cfg(test)]
            entries_read: AtomicU64::new(0),
            next_due: Mutex::new(None),
            lease: Mutex::new(LOCK_LEASE),
            raised: Mutex::new((0, 0)),
            raised_cv: Condvar::new(),
            nudged: Mutex::new(false),
            nudge_cv: Condvar::new(),
            contended_at: AtomicU64::new(0),
            opened: std::time::Instant::now(),
            tag: instance_tag(),
        }
    }
    /// Records that the follower raised every event up to `id`.
    pub(crate) fn set_raised(&self, id: &str) {
        let mut raised = self.raised.lock();
        *raised = (*raised).max(parse_id(id));
        self.raised_cv.notify_all();
    }

    /// Waits (at most [`RAISE_WAIT`]) until this node's follower has raised
    /// the event `id` (a write's own): so a write's events reach this node's
    /// listeners and counters before the write returns, in the stream's
    /// order, as on the in-process stores. `""` (no event): no wait.
    pub(crate) fn wait_raised(&self, id: &str) {
        if id.is_empty() {
            return;
        }
        let want = parse_id(id);
        if self.closed.load(Ordering::Acquire) || *self.raised.lock() >= want {
            return;
        }
        self.nudge();
        let deadline = std::time::Instant::now() + RAISE_WAIT;
        let mut raised = self.raised.lock();
        while *raised < want {
            if self.raised_cv.wait_until(&mut raised, deadline).timed_out() {
                // The follower is reconnecting: it raises the event later.
                return;
            }
        }
    }

    /// A write whose last event is `id` is done: when something on this
    /// node `heard` of the dict's writes as it began, once this node raised
    /// its events ([`wait_raised`](Self::wait_raised)); else at once (its
    /// events are marked with [`tag`](Self::tag): the follower hands them
    /// to no listener; the script counted them, see `counts`).
    pub(crate) fn written(&self, id: &str, heard: bool) {
        if heard {
            self.wait_raised(id);
        }
    }

    /// Ends the follower's [`pause`](Self::pause) at once: someone waits
    /// for it.
    fn nudge(&self) {
        *self.nudged.lock() = true;
        self.nudge_cv.notify_one();
    }

    /// The follower's pause between two steps while nothing on this node
    /// hears of the dict's writes: up to `most`, or until a writer waits
    /// for it ([`nudge`](Self::nudge)).
    pub(crate) fn pause(&self, most: Duration) {
        let mut nudged = self.nudged.lock();
        if !*nudged {
            self.nudge_cv.wait_for(&mut nudged, most);
        }
        *nudged = false;
    }

    /// A lock was found held by another: waiters here may wait for its
    /// release, so the follower reads without pausing for a while
    /// ([`may_pause`](Self::may_pause)), from now on.
    pub(crate) fn contended(&self) {
        let ms = self.opened.elapsed().as_millis() as u64 + 1;
        self.contended_at.store(ms, Ordering::Relaxed);
        self.nudge();
    }

    /// Whether the follower may pause between reads as far as locks go: no
    /// lock was found held by another for [`LOCK_LEASE`] (a release it
    /// reads is then announced at once to whoever waits here).
    pub(crate) fn may_pause(&self) -> bool {
        let at = self.contended_at.load(Ordering::Relaxed);
        let now = self.opened.elapsed().as_millis() as u64 + 1;
        at == 0 || now.saturating_sub(at) > LOCK_LEASE.as_millis() as u64
    }
}

/// A tag unique to one opened dict (see [`Shared::tag`]).
fn instance_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(node_id());
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// This OS process's id in lock tokens.
pub(super) fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static NODE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NODE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    })
}
