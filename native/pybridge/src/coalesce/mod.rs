//! Request coalescing's in-flight table: which executions are in flight, by
//! key, and who waits for each (`Py.Coalesce`, `Py.Coalesce.Leader`).
//!
//! A key is a byte string the caller derives from its term so that two keys
//! are equal exactly when the terms are (the NIF layer uses the external
//! term format, where `1` and `1.0` differ). Keys of one group share a
//! prefix, which [`Table::forget_prefix`] removes together.
//!
//! An entry is a [`Flight`]: of kind [`Kind::Leader`] (a Python call run by
//! its first caller, whose joiners are kept here) or [`Kind::Process`] (an
//! execution in a process of its own, joined by messages to it; the table
//! only says who it is). The table holds a handle `H` on each mapped flight
//! (the NIF layer's resource, an `Arc` in the tests), so the BEAM and the
//! table name one object.
//!
//! The rule everything rests on: a flight is mapped until it ends or is
//! forgotten, and joiners are added only while it is mapped, under its
//! shard's lock. [`Table::take`] unmaps it and ends it under that same lock,
//! handing back every joiner that has not left, once: a joiner is either
//! taken or left ([`Flight::leave`]), never both, and a caller that finds a
//! flight can join it or, when it is gone, start over, never wait for an
//! ended one.

use std::hash::BuildHasher;
use std::ops::Deref;

use hashbrown::HashTable;
use parking_lot::Mutex;

#[cfg(test)]
mod tests;

/// Shards of the table: calls of different keys rarely share a lock.
const SHARDS: usize = 32;

/// What an entry is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A Python call run by its first caller; its joiners are kept here.
    Leader,
    /// An execution in a process of its own, joined by messages to it.
    Process,
}

/// One execution in flight. `P` names a process (owner, joiners), `C` is
/// what the owner records of a running call for whoever takes it over.
pub struct Flight<P, C> {
    key: Box<[u8]>,
    hash: u64,
    kind: Kind,
    owner: P,
    state: Mutex<State<P, C>>,
}

struct State<P, C> {
    ended: bool,
    /// Joiners by slot: a joiner that leaves empties its slot.
    slots: Vec<Option<P>>,
    live: usize,
    call: Option<C>,
}

/// An ended flight: its recorded call and the joiners that had not left,
/// as (slot, process).
pub struct Taken<P, C> {
    pub call: Option<C>,
    pub joiners: Vec<(usize, P)>,
}

impl<P: Copy, C> Flight<P, C> {
    /// A flight of `kind` for `key`, owned by `owner`, not yet in any
    /// table (see [`Table::enter`]).
    fn new(key: &[u8], hash: u64, kind: Kind, owner: P) -> Flight<P, C> {
        Flight {
            key: key.into(),
            hash,
            kind,
            owner,
            state: Mutex::new(State {
                ended: false,
                slots: Vec::new(),
                live: 0,
                call: None,
            }),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn owner(&self) -> P {
        self.owner
    }

    /// Joiner `slot` leaves: `true` if it was still in (nobody will answer
    /// it now), `false` if it was taken already (its answer is coming).
    pub fn leave(&self, slot: usize) -> bool {
        let mut state = self.state.lock();
        match state.slots.get_mut(slot).and_then(Option::take) {
            Some(_) => {
                state.live -= 1;
                true
            }
            None => false,
        }
    }

    /// Records the running call for whoever takes the flight over; gives it
    /// back when the flight has ended already.
    pub fn mark(&self, call: C) -> Result<(), C> {
        let mut state = self.state.lock();
        if state.ended {
            Err(call)
        } else {
            state.call = Some(call);
            Ok(())
        }
    }

    /// The joiners in now (not taken, not left).
    pub fn joiners(&self) -> Vec<P> {
        self.state.lock().slots.iter().flatten().copied().collect()
    }

    /// How many joiners are in now.
    pub fn joined(&self) -> usize {
        self.state.lock().live
    }

    fn join(&self, who: P) -> usize {
        let mut state = self.state.lock();
        debug_assert!(!state.ended, "a mapped flight has not ended");
        state.slots.push(Some(who));
        state.live += 1;
        state.slots.len() - 1
    }

    fn end(&self) -> Option<Taken<P, C>> {
        let mut state = self.state.lock();
        if state.ended {
            return None;
        }
        state.ended = true;
        state.live = 0;
        let slots = std::mem::take(&mut state.slots);
        let joiners = slots
            .into_iter()
            .enumerate()
            .filter_map(|(slot, who)| who.map(|p| (slot, p)))
            .collect();
        Some(Taken {
            call: state.call.take(),
            joiners,
        })
    }
}

/// What [`Table::enter`] found.
pub enum Entered<H> {
    /// No flight had the key: this one, just made, has it now.
    Claimed(H),
    /// A leader's flight, joined in this slot.
    Joined(H, usize),
    /// A process's flight (join it by message).
    Process(H),
    /// Another flight has the key; a process flight claiming it does not
    /// join it.
    Held,
    /// No flight had the key, and none was claimed.
    Absent,
}

/// The in-flight table.
pub struct Table<H> {
    shards: Box<[Mutex<HashTable<H>>]>,
    hasher: foldhash::fast::RandomState,
}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<H, P, C> Table<H>
where
    H: Deref<Target = Flight<P, C>> + Clone,
    P: Copy + PartialEq,
{
    fn shard(&self, hash: u64) -> &Mutex<HashTable<H>> {
        // The high bits: hashbrown places entries by the low ones.
        &self.shards[(hash >> 59) as usize % SHARDS]
    }

    /// Finds the flight of `key`. A leader's flight is joined by `me`
    /// unless `claim` is `Some(Kind::Process)` (a process flight claiming
    /// its key only claims); with no flight, one of kind `claim` owned by
    /// `me` is made and mapped (`wrap` makes its handle), or none with
    /// `claim` `None`.
    pub fn enter(
        &self,
        key: &[u8],
        me: P,
        claim: Option<Kind>,
        wrap: impl FnOnce(Flight<P, C>) -> H,
    ) -> Entered<H> {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        if let Some(found) = shard.find(hash, |f| *f.key == *key) {
            return match (found.kind, claim) {
                (Kind::Leader, Some(Kind::Process)) => Entered::Held,
                (Kind::Leader, _) => {
                    let slot = found.join(me);
                    Entered::Joined(found.clone(), slot)
                }
                (Kind::Process, Some(Kind::Process)) => Entered::Held,
                (Kind::Process, _) => Entered::Process(found.clone()),
            };
        }
        match claim {
            None => Entered::Absent,
            Some(kind) => {
                let flight = wrap(Flight::new(key, hash, kind, me));
                shard.insert_unique(hash, flight.clone(), |f| f.hash);
                Entered::Claimed(flight)
            }
        }
    }

    /// Ends `flight`: unmaps it if it is still mapped and hands back its
    /// call and its joiners; `None` if it had ended already.
    pub fn take(&self, flight: &H) -> Option<Taken<P, C>> {
        let mut shard = self.shard(flight.hash).lock();
        Self::remove_if(&mut shard, flight, |f| same(f, flight));
        // Ended under the shard's lock: no joiner can come in between.
        flight.end()
    }

    /// Unmaps `flight` if it is still mapped (it goes on for its joiners).
    pub fn unmap(&self, flight: &H) -> bool {
        let mut shard = self.shard(flight.hash).lock();
        Self::remove_if(&mut shard, flight, |f| same(f, flight))
    }

    /// Unmaps the flight of `key` if `owner` owns it.
    pub fn unmap_owner(&self, key: &[u8], owner: P) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        match shard.find_entry(hash, |f| *f.key == *key) {
            Ok(entry) if entry.get().owner == owner => {
                entry.remove();
                true
            }
            _ => false,
        }
    }

    /// Unmaps the flight of `key`, whoever owns it.
    pub fn forget(&self, key: &[u8]) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        match shard.find_entry(hash, |f| *f.key == *key) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Unmaps every flight whose key starts with `prefix`; how many.
    pub fn forget_prefix(&self, prefix: &[u8]) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let before = shard.len();
            shard.retain(|f| !f.key.starts_with(prefix));
            removed += before - shard.len();
        }
        removed
    }

    /// The flight of `key`, if one is mapped.
    pub fn get(&self, key: &[u8]) -> Option<H> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash).lock();
        shard.find(hash, |f| *f.key == *key).cloned()
    }

    /// How many flights are mapped.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove_if(shard: &mut HashTable<H>, flight: &H, pick: impl Fn(&H) -> bool) -> bool {
        match shard.find_entry(flight.hash, |f| pick(f)) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }
}

/// Whether two handles name the same flight.
fn same<H: Deref>(a: &H, b: &H) -> bool {
    std::ptr::eq(a.deref(), b.deref())
}
