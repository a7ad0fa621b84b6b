//! Waiting for another thread's answer without parking: spin, then yield.

use std::time::{Duration, Instant};

/// How long a thread waiting on another spins before it starts yielding its
/// core: a quick call's answer usually arrives within it.
const PURE_SPIN: Duration = Duration::from_micros(4);

/// Polls `poll` until it returns `Some` or `limit` has passed: pure spinning
/// for the first few microseconds, then yielding the core between polls.
///
/// Handing work between a BEAM scheduler and an executor thread is the
/// hot path; parking and waking a thread costs more (10 µs and up on a VM)
/// than a quick Python call, while spinning without yielding starves the
/// other thread on a machine with few cores.
pub fn poll_for<T>(limit: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        if let Some(found) = poll() {
            return Some(found);
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(64) {
            let waited = started.elapsed();
            if waited > limit {
                return None;
            }
            if waited > PURE_SPIN {
                std::thread::yield_now();
            }
        }
        std::hint::spin_loop();
    }
}
