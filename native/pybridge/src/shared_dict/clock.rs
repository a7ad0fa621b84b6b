//! The store's clocks: a monotonic one in milliseconds for expiries (TTLs
//! are exact to the millisecond and immune to wall-clock changes) and the
//! wall clock for the times reported in `recent_expiries`.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::backend::Millis;

static EPOCH: OnceLock<Millis> = OnceLock::new();

/// Milliseconds since the first use of the store in this OS process.
#[inline]
pub fn now_ms() -> Millis {
    let now = monotonic_ms();
    now.saturating_sub(*EPOCH.get_or_init(monotonic_ms))
}

/// "Now" on the store's clock for one operation, read at most once and
/// only when a rule about expiry needs it: a put or get of a key that has
/// no expiry never reads the clock (a read costs tens of nanoseconds on
/// some hosts, as much as the rest of a put). Read lazily, it is still an
/// instant within the operation.
#[derive(Debug, Default)]
pub struct Now(Cell<Option<Millis>>);

impl Now {
    /// This instant (already read).
    pub fn at(now: Millis) -> Now {
        Now(Cell::new(Some(now)))
    }

    /// Read from the clock on first use.
    pub fn lazy() -> Now {
        Now(Cell::new(None))
    }

    /// The instant (reading the clock the first time).
    #[inline]
    pub fn get(&self) -> Millis {
        match self.0.get() {
            Some(now) => now,
            None => {
                let now = now_ms();
                self.0.set(Some(now));
                now
            }
        }
    }
}

/// The monotonic clock (`CLOCK_MONOTONIC`, which `Instant` reads too) in
/// whole milliseconds: one call and integer arithmetic, no `Duration`.
#[inline]
fn monotonic_ms() -> Millis {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists, so the call cannot fail (on failure `ts` stays 0).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let millis = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(millis)
}

/// Milliseconds since the Unix epoch (0 if the wall clock is before it).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
