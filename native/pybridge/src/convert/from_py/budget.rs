//! Bounds on one conversion from Python: how many items it may produce, and
//! when it must give up because its call was cancelled or ran out of time.
//!
//! A result can be enormous (a list of a hundred million items) and its
//! conversion runs C code only, where neither Python's own GIL switching nor
//! pybridge's timeouts (raised at the next bytecode) reach. So the walk
//! counts the items it converts, and every [`CONVERSION_CHECK_ITEMS`] items (and after
//! every object, whose `__repr__` may be slow) it checks the cap, the call's
//! deadline and cancellation, and lets other threads have the GIL if it has
//! held it for [`CONVERSION_GIL_HOLD`]. The frames hold
//! owned snapshots of their containers, so letting go of the GIL mid-walk is
//! safe whatever other threads do meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pyo3::prelude::*;

use super::super::ConvertError;
use crate::limits::{CONVERSION_CHECK_ITEMS, CONVERSION_GIL_HOLD, DEFAULT_MAX_RESULT_ITEMS};

static MAX_ITEMS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_RESULT_ITEMS);

/// Sets the cap on items per converted result (the `:max_result_items`
/// setting, applied at start).
pub fn set_max_items(n: usize) {
    MAX_ITEMS.store(n.max(1), Ordering::Relaxed);
}

/// The cap on items per converted result.
pub fn max_items() -> usize {
    MAX_ITEMS.load(Ordering::Relaxed)
}

/// What bounds one conversion.
pub struct Limits<'a> {
    /// The most items (values, keys, container elements) the result may
    /// hold.
    pub max_items: usize,
    /// When the call's caller stops waiting.
    pub deadline: Option<Instant>,
    /// True once the call was cancelled (its caller timed out or died).
    pub cancelled: Option<&'a (dyn Fn() -> bool + 'a)>,
}

impl Default for Limits<'_> {
    /// The configured item cap, no deadline.
    fn default() -> Self {
        Limits {
            max_items: max_items(),
            deadline: None,
            cancelled: None,
        }
    }
}

/// The running count of one conversion.
pub(super) struct Budget<'a> {
    limits: &'a Limits<'a>,
    items: usize,
    next_check: usize,
    /// Since when the GIL is held, as far as the walk knows: set at the
    /// first check, so that small conversions never read the clock.
    held_since: Option<Instant>,
}

impl<'a> Budget<'a> {
    pub(super) fn new(limits: &'a Limits<'a>) -> Self {
        Budget {
            limits,
            items: 0,
            next_check: CONVERSION_CHECK_ITEMS.min(limits.max_items.saturating_add(1)),
            held_since: None,
        }
    }

    /// Fails when `n` more items cannot fit under the cap (before a
    /// container's snapshot is allocated).
    pub(super) fn room_for(&self, n: usize) -> Result<(), ConvertError> {
        if self.items.saturating_add(n) > self.limits.max_items {
            return Err(self.too_many());
        }
        Ok(())
    }

    /// Counts one item.
    #[inline]
    pub(super) fn count(&mut self, py: Python<'_>) -> Result<(), ConvertError> {
        self.items += 1;
        if self.items >= self.next_check {
            self.check(py)?;
        }
        Ok(())
    }

    /// Checks the call after converting an item ran Python code (an
    /// object's `__repr__`), which may have taken a while.
    pub(super) fn ran_python(&mut self, py: Python<'_>) -> Result<(), ConvertError> {
        self.check(py)
    }

    #[cold]
    fn check(&mut self, py: Python<'_>) -> Result<(), ConvertError> {
        let limits = self.limits;
        if self.items > limits.max_items {
            return Err(self.too_many());
        }
        self.next_check = self
            .items
            .saturating_add(CONVERSION_CHECK_ITEMS)
            .min(limits.max_items.saturating_add(1));
        if limits.cancelled.is_some_and(|cancelled| cancelled()) {
            return Err(ConvertError(
                "the call was cancelled (its caller timed out or exited) while its result was \
                 being converted"
                    .into(),
            ));
        }
        let now = Instant::now();
        if limits.deadline.is_some_and(|deadline| now >= deadline) {
            return Err(ConvertError(
                "the call ran out of time while its result was being converted".into(),
            ));
        }
        match self.held_since {
            None => self.held_since = Some(now),
            Some(since) if now.duration_since(since) >= CONVERSION_GIL_HOLD => {
                py.detach(|| ());
                self.held_since = Some(Instant::now());
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn too_many(&self) -> ConvertError {
        ConvertError(format!(
            "the result holds more than {} items (values, keys and container elements); \
             the :max_result_items setting of :pybridge sets this limit",
            self.limits.max_items
        ))
    }
}
