//! Every limit of the native side, in one place: how big or deep a value may
//! be, how much work a NIF may do on a scheduler, how many calls or workers
//! go in one batch, and how long a text kept for display may grow
//! ([`truncate`]). (Timings that only tune the executors, such as the
//! monitor's tick, and the allocator's own thresholds stay beside the code
//! they tune.)

use std::time::Duration;

// ── Values crossing the bridge ──────────────────────────────────────────

/// How deep a value may nest, in both directions, before conversion gives up
/// with an error instead of exhausting a thread's stack.
pub const MAX_DEPTH: usize = 10_000;

/// The largest tuple the BEAM can hold: a bigger Python tuple is an error.
pub const MAX_TUPLE_ARITY: usize = (1 << 24) - 1;

/// Largest integer the BEAM is sure to represent (its bignums top out a
/// little above 32 million bits); bigger ones are an error, not a surprise.
pub const MAX_INT_BITS: u64 = 32_000_000;

/// The longest atom the BEAM makes, in characters (not bytes: an atom of
/// 255 non-Latin-1 characters takes up to 1,020 bytes of UTF-8). Atoms only
/// go from the BEAM to Python, where they become `str`; nothing here makes
/// one, but the external-term-format reader must take names this long.
pub const MAX_ATOM_CHARS: usize = 255;

/// The default of the `:max_result_items` setting: the most items (values,
/// keys, container elements) one converted result may hold.
pub const DEFAULT_MAX_RESULT_ITEMS: usize = 10_000_000;

/// How many items a conversion from Python converts between two checks of
/// the item cap, the call's deadline and cancellation.
pub const CONVERSION_CHECK_ITEMS: usize = 4096;

/// How long a conversion from Python keeps the GIL before it lets other
/// threads at it.
pub const CONVERSION_GIL_HOLD: Duration = Duration::from_millis(1);

// ── Text kept for display ───────────────────────────────────────────────

/// Longest `repr` kept in a `%Py.Object{}` (for `inspect`), in bytes.
pub const REPR_BYTES: usize = 200;

/// Longest description of a term in an error message ("cannot convert a
/// function to Python: #Function<...>"), in bytes.
pub const TERM_DESCRIPTION_BYTES: usize = 120;

// ── Work on a BEAM scheduler (the NIF layer) ────────────────────────────

/// Term nodes decoded on a normal scheduler before a call moves to a dirty
/// one (about a millisecond of work).
pub const SCHEDULER_NODES: usize = 20_000;

/// How many bytes of a binary count as one node of [`SCHEDULER_NODES`]
/// (copying 256 bytes costs about as much as decoding one small term).
pub const BINARY_BYTES_PER_NODE: usize = 256;

/// Bytes of source handled on a normal scheduler; longer code goes dirty.
pub const SCHEDULER_CODE_BYTES: usize = 256 * 1024;

/// How long a submitting NIF waits for a quick call's result before leaving
/// it to the reply message, so a scheduler is never held for long.
pub const INLINE_WAIT: Duration = Duration::from_micros(20);

/// Results up to this many nodes may be handed back inline; bigger ones are
/// encoded by the worker, never on a scheduler.
pub const INLINE_NODES: usize = 256;

/// Cleared message envs kept per scheduler thread for reuse.
pub const MESSAGE_ENV_POOL: usize = 8;

// ── Threads that run Python ─────────────────────────────────────────────

/// Stack of every thread that runs Python (workers, the interpreter's main
/// thread). Conversions are iterative, but Python code that recurses
/// through C (a function called back by `map`, `sorted`, `eval`, a
/// `__repr__` calling `repr`) uses C stack on every level, and on CPython
/// 3.10 and 3.11 only the recursion limit bounds it. Measured with the
/// heaviest of those patterns, 16 MiB overflowed (killing the VM) at a
/// limit of 30,000, and 64 MiB held up to 75,000 on 3.10 and 100,000 on
/// 3.11; the guides promise a RecursionError up to 30,000. It is address
/// space only: pages are used as the recursion touches them.
pub const PYTHON_THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

// ── Contexts ────────────────────────────────────────────────────────────

/// Worker threads of one context, at most, unless configured otherwise.
pub const DEFAULT_MAX_WORKERS: usize = 256;

/// Calls waiting in one context's queue, at most, unless configured
/// otherwise (`config :pybridge, max_queue:`); calls beyond it are refused
/// as `:overloaded` or wait for room. Twin: `Py.Limits.default_max_queue/0`.
pub const DEFAULT_MAX_QUEUE: usize = 10_000;

/// Compiled code objects cached per context, unless configured otherwise.
pub const DEFAULT_CODE_CACHE_SIZE: usize = 1024;

/// A draining worker checks every this many calls whether it has held the
/// GIL for longer than [`GIL_SLICE`], and if so lets other threads at it.
pub const CALLS_PER_GIL_CHECK: usize = 16;

/// Longest a draining worker holds the GIL while calls keep coming.
pub const GIL_SLICE: Duration = Duration::from_millis(2);

/// Overflow workers added to one context per monitor tick, at most: the top
/// of the ramp (200 sleeping calls get their workers within a few ticks; a
/// misjudged stall costs little).
pub const SPAWN_PER_TICK: usize = 32;

// ── Callbacks (Python → BEAM) ─────────────────────────────────────────

/// How long a Python thread waiting for a callback's answer spins (with
/// the GIL released) before it sleeps: a quick BEAM function answers
/// within a few microseconds, and waking a sleeping thread costs more.
pub const CALLBACK_SPIN: Duration = Duration::from_micros(50);

// ── Streams and coroutines ──────────────────────────────────────────────

/// Most items one batch of a stream may ask for (`Py.stream`'s `batch:`).
pub const MAX_STREAM_BATCH: usize = 1_000_000;

/// A stream batch returns early, with what it has, once it has run this
/// long: a slow generator's items reach the consumer one by one instead of
/// after a whole batch, and a batch holds the GIL no longer than this.
pub const STREAM_FLUSH: Duration = Duration::from_millis(5);

// ── Shared dicts ────────────────────────────────────────────────────────

/// Expiries kept per dict for `stats/1`'s `recent_expiries`.
pub const RECENT_EXPIRIES: usize = 32;

/// Expired keys the sweeper removes per hold of a dict's lock (a few
/// hundred microseconds of work), so readers and writers never wait long.
pub const SWEEP_BATCH: usize = 1024;

/// Worker threads of pybridge's callback context (SharedDict callbacks):
/// how many callbacks may block at once (sleeping, or waiting on I/O)
/// before the others queue behind them.
pub const CALLBACK_MAX_WORKERS: usize = 16;

/// `text` cut to at most `max_bytes` bytes at a character boundary, ending
/// in "..." when cut.
pub fn truncate(mut text: String, max_bytes: usize) -> String {
    const ELLIPSIS: &str = "...";
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
    text
}

/// How long a Python thread waiting for a lock of a Redis-backed dict waits
/// before trying again even if no release was announced (one announcement
/// can be lost with a connection; releases are normally seen at once).
pub const SHARED_LOCK_POLL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn short_text_is_kept() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate(String::new(), 0), "");
    }

    #[test]
    fn long_text_is_cut_to_the_limit_with_an_ellipsis() {
        let cut = truncate("abcdefghij".into(), 8);
        assert_eq!(cut, "abcde...");
        assert_eq!(cut.len(), 8);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        // "é" is two bytes: a cut at byte 5 would split the third one.
        let cut = truncate("ééééé".into(), 8);
        assert_eq!(cut, "éé...");
        assert!(cut.len() <= 8);
    }

    #[test]
    fn a_limit_shorter_than_the_ellipsis_still_cuts() {
        assert_eq!(truncate("abcdef".into(), 2), "...");
    }
}
