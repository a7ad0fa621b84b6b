//! The store's clocks: a monotonic one in milliseconds for expiries (TTLs
//! are exact to the millisecond and immune to wall-clock changes) and the
//! wall clock for the times reported in `recent_expiries`.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::backend::Millis;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first use of the store in this OS process.
pub fn now_ms() -> Millis {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 if the wall clock is before it).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
