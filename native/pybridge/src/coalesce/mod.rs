//! Request coalescing's in-flight table: which executions are in flight, by
//! key, and who waits for each (`Py.Coalesce`, `Py.Coalesce.Leader`).
//!
//! A key is bytes ([`Key`]), found by the hash the caller gives (a good
//! hash in all its bits, foldhash's: the table uses it as it is) and byte
//! equality: the NIF layer keeps the `{group, key}` term in the external
//! term format, so keys are equal exactly when the terms are (`1` and `1.0`
//! differ). [`Table::forget_where`] forgets the keys that start with given
//! bytes (a group's).
//!
//! An entry is a [`Flight`]: of kind [`Kind::Leader`] (a Python call run by
//! its first caller, whose joiners are kept here) or [`Kind::Process`] (an
//! execution in a process of its own, joined by messages to it; the table
//! only says who it is). The table holds a handle `H` on each flight (an
//! `Arc`); its owner names it by its hash and id ([`Flight::name`]), its
//! joiners by a handle `X` made for the first of them (the NIF layer's
//! resource): an execution nobody joins costs no resource.
//!
//! The rule everything rests on: a flight is in the table until it ends,
//! found by its key until then or until it is forgotten, and joiners are
//! added only while it can be found, under its shard's lock. [`Table::take`]
//! takes it out and ends it under that same lock, handing back every
//! joiner that has not left, once: a joiner is either
//! taken or left ([`Flight::leave`]), never both, and a caller that finds a
//! flight can join it or, when it is gone, start over, never wait for an
//! ended one.
//!
//! [`Misses`] counts, per group, the calls that ran uncontended and
//! succeeded where they ended, in the NIF (see `Py.Coalesce.Stats`).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashTable;
use parking_lot::Mutex;

mod misses;
#[cfg(test)]
mod tests;

pub use misses::Misses;

/// Shards of the table: calls of different keys rarely share a lock.
const SHARDS: usize = 32;

/// A flight's key: bytes, moved in by the caller that claims it (an
/// uncontended call's key is made once).
pub type Key = Vec<u8>;

/// What an entry is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A Python call run by its first caller; its joiners are kept here.
    Leader,
    /// An execution in a process of its own, joined by messages to it.
    Process,
}

/// One execution in flight. `P` names a process (owner,
/// joiners), `C` is what the owner records of a running call for whoever
/// takes it over, `X` the handle its joiners are given (made by the first
/// joiner, dropped when the flight ends).
pub struct Flight<P, C, X> {
    key: Key,
    hash: u64,
    id: u64,
    kind: Kind,
    owner: P,
    /// Set under the shard's lock: forgotten flights stay in the table
    /// (for their leader to take) but no caller finds them by key.
    forgotten: AtomicBool,
    state: Mutex<State<P, C, X>>,
}

struct State<P, C, X> {
    ended: bool,
    /// Joiners by slot: a joiner that leaves empties its slot.
    slots: Vec<Option<P>>,
    live: usize,
    call: Option<C>,
    handle: Option<X>,
}

/// An ended flight: its recorded call, the joiners that had not left, as
/// (slot, process), and the joiners' handle (there is one if any joined).
pub struct Taken<P, C, X> {
    pub call: Option<C>,
    pub joiners: Vec<(usize, P)>,
    pub handle: Option<X>,
}

impl<P: Copy, C, X: Clone> Flight<P, C, X> {
    fn new(key: Key, hash: u64, id: u64, kind: Kind, owner: P) -> Self {
        Flight {
            key,
            hash,
            id,
            kind,
            owner,
            forgotten: AtomicBool::new(false),
            state: Mutex::new(State {
                ended: false,
                slots: Vec::new(),
                live: 0,
                call: None,
                handle: None,
            }),
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The hash and id that name this flight in [`Table::take_name`].
    pub fn name(&self) -> (u64, u64) {
        (self.hash, self.id)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn owner(&self) -> P {
        self.owner
    }

    fn forgotten(&self) -> bool {
        self.forgotten.load(Ordering::Relaxed)
    }

    /// Whether callers find this flight by `key`.
    fn is(&self, key: &[u8]) -> bool {
        !self.forgotten() && self.key[..] == *key
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

    fn join(&self, who: P, attach: impl FnOnce() -> X) -> (usize, X) {
        let mut state = self.state.lock();
        debug_assert!(!state.ended, "a mapped flight has not ended");
        state.slots.push(Some(who));
        state.live += 1;
        let handle = state.handle.get_or_insert_with(attach).clone();
        (state.slots.len() - 1, handle)
    }

    fn end(&self) -> Option<Taken<P, C, X>> {
        let mut state = self.state.lock();
        if state.ended {
            return None;
        }
        state.ended = true;
        // No joiner in (the commonest end): no slot to look at.
        let joiners = if state.live == 0 {
            Vec::new()
        } else {
            state.live = 0;
            std::mem::take(&mut state.slots)
                .into_iter()
                .enumerate()
                .filter_map(|(slot, who)| who.map(|p| (slot, p)))
                .collect()
        };
        Some(Taken {
            call: state.call.take(),
            joiners,
            // The handle may hold the flight: dropping it here ends that
            // cycle.
            handle: state.handle.take(),
        })
    }
}

/// What [`Table::enter`] found.
pub enum Entered<H, X> {
    /// No flight had the key: this one, just made, has it now.
    Claimed(H),
    /// A leader's flight, joined in this slot, with its joiners' handle.
    Joined(H, usize, X),
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
    shards: Box<[Shard<H>]>,
}

/// A shard of the table, on cache lines of its own (two, for the
/// adjacent-line prefetcher): calls of keys of different shards share no
/// line.
#[repr(align(128))]
struct Shard<H>(Mutex<Flights<H>>);

/// A shard's flights, and the last id it gave: a flight's name is its hash
/// (which picks its shard) and an id unique in that shard, counted under
/// the lock a claim takes anyway.
struct Flights<H> {
    map: HashTable<H>,
    ids: u64,
}

impl<H> Deref for Flights<H> {
    type Target = HashTable<H>;
    fn deref(&self) -> &HashTable<H> {
        &self.map
    }
}

impl<H> DerefMut for Flights<H> {
    fn deref_mut(&mut self) -> &mut HashTable<H> {
        &mut self.map
    }
}

impl<H> Default for Table<H> {
    fn default() -> Self {
        let shard = || {
            Shard(Mutex::new(Flights {
                map: HashTable::new(),
                ids: 0,
            }))
        };
        Table {
            shards: (0..SHARDS).map(|_| shard()).collect(),
        }
    }
}

/// The shard of a key that hashes to `hash`: by bits hashbrown does not
/// use within a shard (it places entries by the low ones and tells them
/// apart by the top seven).
fn shard_of(hash: u64) -> usize {
    (hash >> 52) as usize % SHARDS
}

impl<H, P, C, X> Table<H>
where
    H: Deref<Target = Flight<P, C, X>> + Clone,
    P: Copy + PartialEq,
    X: Clone,
{
    fn shard(&self, hash: u64) -> &Mutex<Flights<H>> {
        &self.shards[shard_of(hash)].0
    }

    /// Finds the flight of `key`, which hashes to `hash`. A leader's flight is joined by `me` (`attach` makes the joiners'
    /// handle, once) unless `claim` is `Some(Kind::Process)` (a process
    /// flight claiming its key only claims); with no flight, one of kind
    /// `claim` owned by `me` is made for `key` (moved in: an uncontended
    /// call's key is made once) and mapped (`wrap` makes its handle), or
    /// none with `claim` `None`.
    #[allow(clippy::too_many_arguments)]
    pub fn enter(
        &self,
        hash: u64,
        key: Key,
        me: P,
        claim: Option<Kind>,
        wrap: impl FnOnce(Flight<P, C, X>) -> H,
        attach: impl FnOnce(&H) -> X,
    ) -> Entered<H, X> {
        let mut shard = self.shard(hash).lock();
        if let Some(found) = shard.find(hash, |f| f.is(&key)) {
            return match (found.kind, claim) {
                (Kind::Leader, Some(Kind::Process)) => Entered::Held,
                (Kind::Leader, _) => {
                    let (slot, handle) = found.join(me, || attach(found));
                    Entered::Joined(found.clone(), slot, handle)
                }
                (Kind::Process, Some(Kind::Process)) => Entered::Held,
                (Kind::Process, _) => Entered::Process(found.clone()),
            };
        }
        match claim {
            None => Entered::Absent,
            Some(kind) => {
                shard.ids += 1;
                let id = shard.ids;
                let flight = wrap(Flight::new(key, hash, id, kind, me));
                shard.insert_unique(hash, flight.clone(), |f| f.hash);
                Entered::Claimed(flight)
            }
        }
    }

    /// Ends `flight`: takes it out of the table and hands back its call,
    /// its joiners and their handle; `None` if it had ended already.
    pub fn take(&self, flight: &Flight<P, C, X>) -> Option<Taken<P, C, X>> {
        let mut shard = self.shard(flight.hash).lock();
        if let Ok(entry) = shard.find_entry(flight.hash, |f| std::ptr::eq(&**f, flight)) {
            entry.remove();
        }
        // Ended under the shard's lock: no joiner can come in between.
        flight.end()
    }

    /// [`Table::take`], only when nobody is joined to `flight`: a leader
    /// that died leaves its flight to this (its own process monitor) when
    /// nobody waits for it, to its joiners (each monitors it) otherwise.
    pub fn take_alone(&self, flight: &Flight<P, C, X>) -> Option<Taken<P, C, X>> {
        let mut shard = self.shard(flight.hash).lock();
        // Joiners come in only under the shard's lock, held here; one
        // leaving after this check finds the flight taken.
        if flight.joined() > 0 {
            return None;
        }
        if let Ok(entry) = shard.find_entry(flight.hash, |f| std::ptr::eq(&**f, flight)) {
            entry.remove();
        }
        flight.end()
    }

    /// The flight named `name` ([`Flight::name`]), forgotten or not.
    pub fn by_name(&self, (hash, id): (u64, u64)) -> Option<H> {
        let shard = self.shard(hash).lock();
        shard.find(hash, |f| f.id == id).cloned()
    }

    /// [`Table::take`] of the flight named `name`.
    pub fn take_name(&self, (hash, id): (u64, u64)) -> Option<Taken<P, C, X>> {
        let mut shard = self.shard(hash).lock();
        let flight = shard.find_entry(hash, |f| f.id == id).ok()?.remove().0;
        flight.end()
    }

    /// Takes the flight named `name` out of the table without ending it (a
    /// process flight giving its key up).
    pub fn unmap(&self, (hash, id): (u64, u64)) -> bool {
        let mut shard = self.shard(hash).lock();
        match shard.find_entry(hash, |f| f.id == id) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Unmaps the flight of `key` (which hashes to `hash`) if `owner` owns
    /// it.
    pub fn unmap_owner(&self, hash: u64, key: &[u8], owner: P) -> bool {
        let mut shard = self.shard(hash).lock();
        match shard.find_entry(hash, |f| f.is(key)) {
            Ok(entry) if entry.get().owner == owner => {
                entry.remove();
                true
            }
            _ => false,
        }
    }

    /// Forgets the flight of `key` (which hashes to `hash`): no caller
    /// finds it any more. A leader's stays until its leader takes it; a
    /// process's goes.
    pub fn forget(&self, hash: u64, key: &[u8]) -> bool {
        let mut shard = self.shard(hash).lock();
        match shard.find_entry(hash, |f| f.is(key)) {
            Ok(entry) if entry.get().kind == Kind::Process => {
                entry.remove();
                true
            }
            Ok(entry) => {
                entry.get().forgotten.store(true, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Forgets every flight whose key starts with `prefix`; how many.
    pub fn forget_where(&self, prefix: &[u8]) -> usize {
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            shard.retain(|f| {
                if f.forgotten() || !f.key.starts_with(prefix) {
                    return true;
                }
                forgotten += 1;
                f.forgotten.store(true, Ordering::Relaxed);
                f.kind == Kind::Leader
            });
        }
        forgotten
    }

    /// The flight of `key` (which hashes to `hash`), if one is mapped.
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<H> {
        let shard = self.shard(hash).lock();
        shard.find(hash, |f| f.is(key)).cloned()
    }

    /// How many flights are in the table (forgotten ones included, until
    /// they are taken).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
