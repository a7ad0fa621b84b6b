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

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use parking_lot::RwLock;

/// A group's encoding and its count.
type Counter = (Box<[u8]>, AtomicU64);

/// Counters by group; a group's counter is made on its first miss and
/// kept (a group is a name the application chose: there are few).
#[derive(Default)]
pub struct Misses {
    groups: RwLock<HashTable<Counter>>,
    hasher: foldhash::fast::RandomState,
}

impl Misses {
    /// Counts one miss of `group`.
    pub fn count(&self, group: &[u8]) {
        let hash = self.hasher.hash_one(group);
        if let Some((_, n)) = self.groups.read().find(hash, |(g, _)| **g == *group) {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut groups = self.groups.write();
        // Another caller may have made it between the two locks.
        let entry = groups.entry(
            hash,
            |(g, _)| **g == *group,
            |(g, _)| self.hasher.hash_one(g),
        );
        entry
            .or_insert_with(|| (group.into(), AtomicU64::new(0)))
            .get()
            .1
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The misses counted for `group` (0 if none).
    pub fn get(&self, group: &[u8]) -> u64 {
        let hash = self.hasher.hash_one(group);
        self.groups
            .read()
            .find(hash, |(g, _)| **g == *group)
            .map_or(0, |(_, n)| n.load(Ordering::Relaxed))
    }

    /// Zeroes `group`'s count.
    pub fn reset(&self, group: &[u8]) {
        let hash = self.hasher.hash_one(group);
        if let Some((_, n)) = self.groups.read().find(hash, |(g, _)| **g == *group) {
            n.store(0, Ordering::Relaxed);
        }
    }

    /// Every group counted, with its count.
    pub fn all(&self) -> Vec<(Box<[u8]>, u64)> {
        self.groups
            .read()
            .iter()
            .map(|(g, n)| (g.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }
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
}
