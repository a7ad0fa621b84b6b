//! Waiting for another thread's answer without parking: spin, then yield.

use std::sync::atomic::{AtomicI32, Ordering};
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

/// The CPU a thread last ran on, published for the thread it hands work to.
///
/// Spinning for another thread's answer only pays while that thread runs on
/// another core. When both share one (a one-CPU container, or the other
/// cores busy with other work), every microsecond the waiter spins is taken
/// from the thread it waits for: with a BEAM scheduler and a low-priority
/// executor on one core, one-caller throughput fell from ~250k to ~40k
/// calls/s. So each side records where it runs, and the other skips its
/// spin when that is its own core. A hint only (Relaxed): a stale value
/// costs one spin too many or too few, never a lost wake-up.
#[derive(Debug)]
pub struct CpuHint(AtomicI32);

/// No CPU recorded (or the platform cannot tell).
const UNKNOWN_CPU: i32 = -1;

impl Default for CpuHint {
    fn default() -> Self {
        CpuHint(AtomicI32::new(UNKNOWN_CPU))
    }
}

impl CpuHint {
    /// Records the calling thread's current CPU.
    pub fn record(&self) {
        self.0.store(current_cpu(), Ordering::Relaxed);
    }

    /// True when the recorded thread last ran on the calling thread's CPU.
    pub fn is_mine(&self) -> bool {
        let theirs = self.0.load(Ordering::Relaxed);
        theirs != UNKNOWN_CPU && theirs == current_cpu()
    }
}

#[cfg(target_os = "linux")]
fn current_cpu() -> i32 {
    // SAFETY: sched_getcpu takes no arguments and only reads the calling
    // thread's CPU (from rseq or the vDSO); it returns -1 on failure, which
    // is UNKNOWN_CPU.
    unsafe { libc::sched_getcpu() }
}

#[cfg(not(target_os = "linux"))]
fn current_cpu() -> i32 {
    UNKNOWN_CPU
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_recorded_on_this_thread_is_mine_until_it_moves() {
        let hint = CpuHint::default();
        assert!(!hint.is_mine(), "nothing recorded: never mine");
        if cfg!(target_os = "linux") {
            // Pin this thread so that recording and reading see one CPU.
            // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
            // sched_setaffinity only touch it and this thread's affinity.
            let pinned = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(current_cpu() as usize, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
            };
            if pinned {
                hint.record();
                assert!(hint.is_mine());
            }
        }
    }

    #[test]
    fn another_cpu_is_not_mine() {
        let hint = CpuHint(AtomicI32::new(i32::MAX));
        assert!(!hint.is_mine());
    }
}
