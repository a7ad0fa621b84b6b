//! The misses of uncontended coalesced calls, counted per group where the
//! call ended: in the NIF that ran it (`coalesce_submit`), so the commonest
//! coalesced call (nobody joined, no error) costs no counter update on the
//! BEAM side. `Py.Coalesce.Stats` adds these counts to its own (every other
//! event: hits, errors, started executions) whenever stats are read, and
//! zeroes them with its own on `reset_stats`.
//!
//! A group is named by its encoding (the NIF layer's, in the external term
//! format without the version byte): the same bytes every key of the group
//! starts with after the tuple header.
//!
//! Each thread (a scheduler) counts in counters of its own, found in a
//! table of its own: a miss takes no lock and writes no cache line another
//! thread writes. Reads and resets go through every thread's counter of
//! the group, which the counters' owner ([`Misses`]) keeps: the totals are
//! exact, and a thread that ends leaves its counts in.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::Mutex;

/// One thread's count of one group of a [`Misses`] (by its id), on a cache
/// line of its own (two, for the adjacent-line prefetcher): only that
/// thread adds to it; a reset zeroes it.
#[repr(align(128))]
struct Counter {
    n: AtomicU64,
    misses: u64,
    /// The group's hash, by its `Misses`'s hasher.
    hash: u64,
    group: Box<[u8]>,
}

impl Counter {
    fn is(&self, misses: u64, group: &[u8]) -> bool {
        self.misses == misses && *self.group == *group
    }
}

/// A group's encoding and its counters, one per thread that counted it.
type Group = (Box<[u8]>, Vec<Arc<Counter>>);

/// A thread's counters, and the one it counted in last (most calls are
/// of the group of the call before: no hash, no lookup).
struct Local {
    last: Option<Arc<Counter>>,
    all: HashTable<Arc<Counter>>,
}

thread_local! {
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local { last: None, all: HashTable::new() })
    };
}

/// Tells the [`Misses`] apart in the threads' counters (tests make
/// several).
static IDS: AtomicU64 = AtomicU64::new(0);

/// Counters by group; a group's counter is made on its first miss in a
/// thread and kept (a group is a name the application chose: there are
/// few, and as few threads, the schedulers).
pub struct Misses {
    id: u64,
    hasher: foldhash::fast::RandomState,
    groups: Mutex<HashTable<Group>>,
}

impl Default for Misses {
    fn default() -> Self {
        Misses {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            hasher: Default::default(),
            groups: Default::default(),
        }
    }
}

impl Misses {
    /// Counts one miss of `group`.
    pub fn count(&self, group: &[u8]) {
        let counted = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            match &local.last {
                Some(last) if last.is(self.id, group) => {
                    last.n.fetch_add(1, Ordering::Relaxed);
                }
                _ => self.count_other(&mut local, group),
            }
        });
        if counted.is_err() {
            // The thread's counters are gone (it is ending).
            self.count_shared(group);
        }
    }

    /// [`Misses::count`] of a group other than this thread's last.
    #[inline(never)]
    fn count_other(&self, local: &mut Local, group: &[u8]) {
        let hash = self.hasher.hash_one(group);
        let counter = match local.all.find(hash, |c| c.is(self.id, group)) {
            Some(counter) => counter.clone(),
            None => {
                // This thread's first miss of the group.
                let counter = self.counter(hash, group);
                local.all.insert_unique(hash, counter.clone(), |c| c.hash);
                counter
            }
        };
        counter.n.fetch_add(1, Ordering::Relaxed);
        local.last = Some(counter);
    }

    /// [`Misses::count`] in the group's first counter, without the thread's.
    #[cold]
    fn count_shared(&self, group: &[u8]) {
        let hash = self.hasher.hash_one(group);
        let found = self
            .groups
            .lock()
            .find(hash, |(g, _)| **g == *group)
            .and_then(|(_, counters)| counters.first().cloned());
        found
            .unwrap_or_else(|| self.counter(hash, group))
            .n
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A new counter of `group` (which hashes to `hash`), kept with the
    /// group's others.
    fn counter(&self, hash: u64, group: &[u8]) -> Arc<Counter> {
        let counter = Arc::new(Counter {
            n: AtomicU64::new(0),
            misses: self.id,
            hash,
            group: group.into(),
        });
        let mut groups = self.groups.lock();
        groups
            .entry(
                hash,
                |(g, _)| **g == *group,
                |(g, _)| self.hasher.hash_one(g),
            )
            .or_insert_with(|| (group.into(), Vec::new()))
            .into_mut()
            .1
            .push(counter.clone());
        counter
    }

    /// The misses counted for `group` (0 if none).
    pub fn get(&self, group: &[u8]) -> u64 {
        let hash = self.hasher.hash_one(group);
        self.groups
            .lock()
            .find(hash, |(g, _)| **g == *group)
            .map_or(0, |(_, counters)| total(counters))
    }

    /// Zeroes `group`'s count.
    pub fn reset(&self, group: &[u8]) {
        let hash = self.hasher.hash_one(group);
        if let Some((_, counters)) = self.groups.lock().find(hash, |(g, _)| **g == *group) {
            for c in counters {
                c.n.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Every group counted, with its count.
    pub fn all(&self) -> Vec<(Box<[u8]>, u64)> {
        self.groups
            .lock()
            .iter()
            .map(|(g, counters)| (g.clone(), total(counters)))
            .collect()
    }
}

fn total(counters: &[Arc<Counter>]) -> u64 {
    counters.iter().map(|c| c.n.load(Ordering::Relaxed)).sum()
}

#[cfg(test)]
mod tests {
    use super::Misses;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn counts_per_group_and_resets_one() {
        let m = Misses::default();
        m.count(b"a");
        m.count(b"a");
        m.count(b"b");
        assert_eq!((m.get(b"a"), m.get(b"b"), m.get(b"c")), (2, 1, 0));
        m.reset(b"a");
        assert_eq!((m.get(b"a"), m.get(b"b")), (0, 1));
        let mut all = m.all();
        all.sort();
        assert_eq!(all, vec![(b"a"[..].into(), 0), (b"b"[..].into(), 1)]);
    }

    #[test]
    fn concurrent_first_misses_of_a_group_are_all_counted() {
        let m = Arc::new(Misses::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || (0..1000).for_each(|_| m.count(b"g")))
            })
            .collect();
        for t in threads {
            t.join().expect("a counting thread panicked");
        }
        assert_eq!(m.get(b"g"), 8000);
        assert_eq!(m.all().len(), 1);
    }

    #[test]
    fn each_threads_counts_are_read_and_reset_and_outlive_it() {
        let m = Arc::new(Misses::default());
        let count_on_threads = |threads: usize, n: usize| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let m = m.clone();
                    thread::spawn(move || (0..n).for_each(|_| m.count(b"g")))
                })
                .collect();
            for h in handles {
                h.join().expect("a counting thread panicked");
            }
        };
        count_on_threads(4, 10);
        m.count(b"g");
        assert_eq!(m.get(b"g"), 41, "the ended threads' counts stay");
        m.reset(b"g");
        assert_eq!(m.get(b"g"), 0, "every thread's counter is zeroed");
        m.count(b"g");
        count_on_threads(2, 5);
        assert_eq!(m.get(b"g"), 11);
        assert_eq!(m.all(), vec![(b"g"[..].into(), 11)]);
    }

    #[test]
    fn two_counters_on_one_thread_do_not_mix_and_groups_alternate() {
        let (a, b) = (Misses::default(), Misses::default());
        for _ in 0..3 {
            a.count(b"g");
            a.count(b"h");
            b.count(b"g");
        }
        assert_eq!(
            (a.get(b"g"), a.get(b"h"), b.get(b"g"), b.get(b"h")),
            (3, 3, 3, 0)
        );
    }
}
