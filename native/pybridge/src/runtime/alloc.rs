//! The Rust allocator of the native library: the system allocator, except
//! that big buffers (the `Vec<Value>` of a million-element list) are mapped
//! directly and, once freed, kept mapped for a moment in case a buffer of the
//! same size is wanted again. Converting the same large value back and forth
//! then does not page-fault its buffers in anew on every call, without
//! raising glibc's trim threshold (which would keep freed memory in every
//! thread's arena). The context monitor unmaps buffers idle for over a
//! second ([`release_idle`]).
//!
//! glibc's malloc, which serves everything else (and Python), is tuned at
//! start ([`tune_malloc`]) and trimmed after namespaces were released
//! ([`trim_if_released`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buffers at least this big are mapped directly.
const BIG: usize = 4 << 20;
/// Most memory kept in freed buffers.
const CACHE_LIMIT: usize = 256 << 20;
const PAGE: usize = 4096;

struct Cached {
    addr: usize,
    len: usize,
    freed: Instant,
}

static CACHE: Mutex<Vec<Cached>> = Mutex::new(Vec::new());

pub struct BridgeAlloc;

fn mapped_len(layout: &Layout) -> usize {
    layout.size().div_ceil(PAGE) * PAGE
}

fn is_big(layout: &Layout) -> bool {
    layout.size() >= BIG && layout.align() <= PAGE
}

// SAFETY: small requests go to the system allocator unchanged; big ones are
// page-aligned anonymous mappings of `mapped_len` bytes, which satisfy any
// alignment up to a page (checked by `is_big`), and are unmapped with the
// same length they were mapped with (the cache stores exact lengths and
// only hands a buffer out for a layout with the same `mapped_len`).
unsafe impl GlobalAlloc for BridgeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_big(&layout) {
            // SAFETY: forwarded as is.
            return unsafe { System.alloc(layout) };
        }
        let len = mapped_len(&layout);
        {
            let mut cache = CACHE.lock();
            if let Some(i) = cache.iter().position(|c| c.len == len) {
                return cache.swap_remove(i).addr as *mut u8;
            }
        }
        // SAFETY: an anonymous private mapping; no file, no fixed address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            addr as *mut u8
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_big(&layout) {
            // SAFETY: `ptr` came from System.alloc with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let len = mapped_len(&layout);
        let mut cache = CACHE.lock();
        let held: usize = cache.iter().map(|c| c.len).sum();
        if held + len <= CACHE_LIMIT {
            cache.push(Cached {
                addr: ptr as usize,
                len,
                freed: Instant::now(),
            });
        } else {
            drop(cache);
            // SAFETY: `ptr` is a mapping of exactly `len` bytes made by alloc.
            unsafe { libc::munmap(ptr.cast(), len) };
        }
    }
}

/// Unmaps freed big buffers that have not been reused for `idle`.
pub fn release_idle(idle: Duration) {
    let now = Instant::now();
    let stale: Vec<Cached> = {
        let mut cache = CACHE.lock();
        let (stale, keep): (Vec<Cached>, Vec<Cached>) = cache
            .drain(..)
            .partition(|c| now.duration_since(c.freed) >= idle);
        *cache = keep;
        stale
    };
    for c in stale {
        // SAFETY: each cached entry is a live mapping of `len` bytes that
        // nothing references any more (it was freed).
        unsafe { libc::munmap(c.addr as *mut libc::c_void, c.len) };
    }
}

/// Lets glibc serve large allocations from its heap instead of a fresh
/// `mmap` each time: the BEAM pins the mmap threshold at 128 KiB, so every
/// megabyte-sized buffer (a bytes object, a list's item array) would be
/// page-faulted in anew on every call. Freed memory above the trim threshold
/// still goes back to the OS. `PYBRIDGE_MALLOC_TUNE=0` leaves malloc alone.
pub(super) fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("PYBRIDGE_MALLOC_TUNE").as_deref() == Ok("0") {
            return;
        }
        let mb = |var: &str, default: i32| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(default)
                * 1024
                * 1024
        };
        // SAFETY: mallopt only changes glibc's allocation parameters; it is
        // thread-safe and takes plain integers.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mb("PYBRIDGE_MMAP_MB", 32));
            libc::mallopt(libc::M_TRIM_THRESHOLD, mb("PYBRIDGE_TRIM_MB", 4));
        }
    }
}

static RELEASED: AtomicU64 = AtomicU64::new(0);

/// Notes that a large amount of Python memory (a namespace) was freed.
pub fn note_release() {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// Returns freed heap pages to the OS when namespaces were released since
/// the last call. With the tuned thresholds glibc keeps freed memory for
/// reuse; this keeps a burst of short-lived processes from holding on to it.
/// Called by the context monitor, at most about once a second.
pub fn trim_if_released(last_seen: &mut u64) {
    let now = RELEASED.load(Ordering::Relaxed);
    if now == *last_seen {
        return;
    }
    *last_seen = now;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe (it locks each arena) and only
    // gives free pages back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached_with(len: usize) -> bool {
        CACHE.lock().iter().any(|c| c.len == len)
    }

    #[test]
    fn a_freed_big_buffer_is_reused_then_released_when_idle() {
        // An odd size no other test allocates.
        let size: usize = (8 << 20) + 12_345;
        // Other tests of this process free big buffers too, which stay cached
        // (up to the limit) until idle for a second: start with room.
        release_idle(Duration::ZERO);
        let len = size.div_ceil(PAGE) * PAGE;
        let first: Vec<u8> = Vec::with_capacity(size);
        let addr = first.as_ptr();
        drop(first);
        assert!(cached_with(len), "the freed buffer is kept");
        let second: Vec<u8> = Vec::with_capacity(size);
        assert_eq!(
            second.as_ptr(),
            addr,
            "the same mapping is handed out again"
        );
        assert!(!cached_with(len));
        drop(second);
        release_idle(Duration::ZERO);
        assert!(!cached_with(len), "idle buffers are unmapped");
    }
}
