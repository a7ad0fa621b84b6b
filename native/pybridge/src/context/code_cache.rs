//! A bounded cache of compiled code objects, so evaluating the same source
//! again skips the compiler.

use std::collections::HashMap;

use pyo3::{Py, PyAny};

/// Compile mode, part of the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Mode {
    Eval,
    Exec,
}

impl Mode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mode::Eval => "eval",
            Mode::Exec => "exec",
        }
    }
}

type Entries = HashMap<Box<[u8]>, (Py<PyAny>, u64)>;

/// Least-recently-used eviction, approximated: each hit stamps the entry;
/// when full, the older half goes in one sweep (amortised O(1) per insert).
/// One map per mode so a lookup borrows the source instead of copying it.
pub(super) struct CodeCache {
    capacity: usize,
    clock: u64,
    eval: Entries,
    exec: Entries,
}

impl CodeCache {
    pub(super) fn new(capacity: usize) -> Self {
        CodeCache {
            capacity: capacity.max(2),
            clock: 0,
            eval: HashMap::new(),
            exec: HashMap::new(),
        }
    }

    fn map(&mut self, mode: Mode) -> &mut Entries {
        match mode {
            Mode::Eval => &mut self.eval,
            Mode::Exec => &mut self.exec,
        }
    }

    /// The cached code object; the caller must hold the GIL to use it.
    pub(super) fn get(&mut self, mode: Mode, source: &[u8]) -> Option<&Py<PyAny>> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.map(mode).get_mut(source)?;
        entry.1 = clock;
        Some(&entry.0)
    }

    pub(super) fn insert(&mut self, mode: Mode, source: &[u8], code: Py<PyAny>) {
        if self.len() >= self.capacity {
            self.evict_older_half();
        }
        self.clock += 1;
        let clock = self.clock;
        self.map(mode).insert(Box::from(source), (code, clock));
    }

    /// Drops every entry (the GIL must be held).
    pub(super) fn clear(&mut self) {
        self.eval.clear();
        self.exec.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.eval.len() + self.exec.len()
    }

    fn evict_older_half(&mut self) {
        let mut stamps: Vec<u64> = self
            .eval
            .values()
            .chain(self.exec.values())
            .map(|(_, stamp)| *stamp)
            .collect();
        if stamps.is_empty() {
            return;
        }
        let mid = stamps.len() / 2;
        let cutoff = *stamps.select_nth_unstable(mid).1;
        self.eval.retain(|_, (_, stamp)| *stamp > cutoff);
        self.exec.retain(|_, (_, stamp)| *stamp > cutoff);
    }
}
