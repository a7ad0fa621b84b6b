//! `coalesce_*`: request coalescing's in-flight table
//! ([`crate::coalesce::Table`]) for `Py.Coalesce` and `Py.Coalesce.Leader`.
//!
//! Keys are `{group, key}` tuples, kept in the external term format
//! ([`key`]): two keys are one exactly when the terms are equal (`1` and
//! `1.0` differ, as in a match). A group's keys all start with the
//! encoding of `{group, ` ([`group_prefix`]).
//!
//! Whoever claims a key gets its flight's name, `{hash, id}`
//! (`Flight::name`), and ends it with `coalesce_take/2`; the joiners get a
//! resource, [`Joiners`], made for the first of them, and are answered with
//! the tag `{joiners, slot}`. An execution nobody joins costs no resource.
//!
//! A coalesced Python call claims its key and submits its job in one call,
//! `coalesce_submit/6` ([`submit`]), which also ends the flight of a call
//! answered at once.

use std::sync::{Arc, LazyLock};

use rustler::{Atom, Encoder, Env, Error, LocalPid, NifResult, OwnedEnv, ResourceArc, Term};

use super::atoms;
use crate::coalesce::{Entered, Flight, Key, Kind, Table, Taken};
use key::{group_prefix, key};

mod key;
mod submit;
mod watch;

/// The call a leader records for whoever takes its flight over, copied
/// into an environment of its own (only a call that did not answer at
/// once is recorded), and the monitor of the leader set up with it
/// ([`watch`]).
pub struct SavedCall {
    env: OwnedEnv,
    term: rustler::env::SavedTerm,
    watch: Option<watch::Watch>,
}

type FlightArc = Arc<Flight<LocalPid, SavedCall, ResourceArc<Joiners>>>;

/// A leader's flight as its joiners hold it: the first element of each
/// joiner's tag. The flight holds it too until it ends.
pub struct Joiners(FlightArc);

#[rustler::resource_impl]
impl rustler::Resource for Joiners {}

static TABLE: LazyLock<Table<FlightArc>> = LazyLock::new(Table::default);

mod kinds {
    rustler::atoms! { leader, process, claimed, joined, flight, held, ended }
}

/// Finds the flight of `gk` for `me` (the caller's pid): with `claim`
/// `:leader` or `:process`, makes one owned by `me` when there is none.
/// `{:claimed, hash, id}` (the flight's name), `{:joined, {joiners, slot},
/// leader}` (`me` is in a leader's flight, answered with that tag),
/// `{:flight, pid}` (a process's flight: join it by message), `:held` (a
/// process claiming found another flight) or nil (none, nothing claimed).
#[rustler::nif]
fn coalesce_enter<'a>(
    env: Env<'a>,
    gk: Term<'a>,
    me: LocalPid,
    claim: Atom,
) -> NifResult<Term<'a>> {
    let (bytes, hash, _) = key(gk)?;
    let claim = if claim == kinds::leader() {
        Some(Kind::Leader)
    } else if claim == kinds::process() {
        Some(Kind::Process)
    } else if claim == atoms::nil() {
        None
    } else {
        return Err(Error::BadArg);
    };
    Ok(encode_entered(env, enter(bytes, hash, me, claim)))
}

/// Enters the table for `me` with the key `bytes` that hashes to `hash`.
fn enter(
    bytes: Key,
    hash: u64,
    me: LocalPid,
    claim: Option<Kind>,
) -> Entered<FlightArc, ResourceArc<Joiners>> {
    TABLE.enter(hash, bytes, me, claim, Arc::new, |f| {
        ResourceArc::new(Joiners(f.clone()))
    })
}

/// What [`enter`] found, as `coalesce_enter/3` answers it.
fn encode_entered<'a>(env: Env<'a>, entered: Entered<FlightArc, ResourceArc<Joiners>>) -> Term<'a> {
    match entered {
        Entered::Claimed(f) => {
            let (hash, id) = f.name();
            (kinds::claimed(), hash, id).encode(env)
        }
        Entered::Joined(f, slot, joiners) => {
            (kinds::joined(), (joiners, slot), f.owner()).encode(env)
        }
        Entered::Process(f) => (kinds::flight(), f.owner()).encode(env),
        Entered::Held => kinds::held().encode(env),
        Entered::Absent => atoms::nil().encode(env),
    }
}

/// `{call, [{pid, tag}]}` of an ended flight, or nil.
fn taken<'a>(
    env: Env<'a>,
    taken: Option<Taken<LocalPid, SavedCall, ResourceArc<Joiners>>>,
) -> Term<'a> {
    let Some(taken) = taken else {
        return atoms::nil().encode(env);
    };
    let call = match &taken.call {
        Some(saved) => {
            saved.unwatch(env);
            saved.env.run(|owned| saved.term.load(owned).in_env(env))
        }
        None => atoms::nil().encode(env),
    };
    (call, joiners(env, &taken)).encode(env)
}

/// The joiners of an ended flight that had not left, as `[{pid, tag}]`.
fn joiners<'a>(env: Env<'a>, taken: &Taken<LocalPid, SavedCall, ResourceArc<Joiners>>) -> Term<'a> {
    match &taken.handle {
        // 10,000 joiners take well under a millisecond: a tuple of two and
        // one of three terms each.
        Some(handle) => {
            let handle = handle.encode(env);
            let joiners: Vec<Term<'a>> = taken
                .joiners
                .iter()
                .map(|(slot, pid)| (*pid, (handle, *slot)).encode(env))
                .collect();
            joiners.encode(env)
        }
        None => Vec::<Term<'a>>::new().encode(env),
    }
}

/// Ends the flight named `{hash, id}` (taking it out of the table):
/// `{call, [{pid, tag}]}`, the call recorded by `coalesce_mark/3` (or nil)
/// and the joiners that have not left, each with its tag; nil when it had
/// ended already. Once per flight.
#[rustler::nif]
fn coalesce_take(env: Env<'_>, hash: u64, id: u64) -> Term<'_> {
    taken(env, TABLE.take_name((hash, id)))
}

/// `coalesce_take/2` for a joiner, by the first element of its tag.
#[rustler::nif]
fn coalesce_take_joined(env: Env<'_>, joiners: ResourceArc<Joiners>) -> Term<'_> {
    taken(env, TABLE.take(&joiners.0))
}

/// `coalesce_take_joined/1`, only when nobody is joined any more (a joiner
/// that left finds its leader dead: see [`watch`]).
#[rustler::nif]
fn coalesce_take_alone(env: Env<'_>, joiners: ResourceArc<Joiners>) -> Term<'_> {
    taken(env, TABLE.take_alone(&joiners.0))
}

/// Joiner `slot` leaves: true if it was still in (nobody answers it now),
/// false if the flight was taken with it (its answer is coming).
#[rustler::nif]
fn coalesce_leave(joiners: ResourceArc<Joiners>, slot: usize) -> bool {
    joiners.0.leave(slot)
}

/// Records `call` (`{handle, ref}`) in the flight named `{hash, id}` for
/// whoever takes it over, and monitors its leader, the caller ([`watch`]):
/// `:ok`, or `:ended` when it has been taken already.
#[rustler::nif]
fn coalesce_mark(env: Env<'_>, hash: u64, id: u64, call: Term<'_>) -> Atom {
    let Some(flight) = TABLE.by_name((hash, id)) else {
        return kinds::ended();
    };
    let owned = OwnedEnv::new();
    let term = owned.save(call);
    let watch = watch::Watch::start(env, &flight);
    match flight.mark(SavedCall {
        env: owned,
        term,
        watch,
    }) {
        Ok(()) => atoms::ok(),
        Err(saved) => {
            saved.unwatch(env);
            kinds::ended()
        }
    }
}

/// Takes the flight named `{hash, id}` out of the table (a process flight
/// giving its key up).
#[rustler::nif]
fn coalesce_unmap(hash: u64, id: u64) -> bool {
    TABLE.unmap((hash, id))
}

/// Takes the flight of `gk` out of the table if `owner` owns it.
#[rustler::nif]
fn coalesce_unmap_owner(gk: Term<'_>, owner: LocalPid) -> NifResult<bool> {
    let (bytes, hash, _) = key(gk)?;
    Ok(TABLE.unmap_owner(hash, &bytes, owner))
}

/// Forgets the flight of `gk` (`Py.Coalesce.forget/2`).
#[rustler::nif]
fn coalesce_forget(gk: Term<'_>) -> NifResult<bool> {
    let (bytes, hash, _) = key(gk)?;
    Ok(TABLE.forget(hash, &bytes))
}

/// Forgets every flight of `group` (`Py.Coalesce.forget_all/1`); how many.
/// A walk of the whole table: on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn coalesce_forget_all(group: Term<'_>) -> NifResult<usize> {
    let prefix = group_prefix(group)?;
    Ok(TABLE.forget_where(&prefix))
}

/// Who holds `gk` now: `{:leader, pid, joiners}` (a leader's flight and
/// how many joiners it has), `{:process, pid, 0}` or nil (tests, benches).
#[rustler::nif]
fn coalesce_lookup<'a>(env: Env<'a>, gk: Term<'a>) -> NifResult<Term<'a>> {
    let (bytes, hash, _) = key(gk)?;
    Ok(match TABLE.get(hash, &bytes) {
        Some(f) if f.kind() == Kind::Leader => (kinds::leader(), f.owner(), f.joined()).encode(env),
        Some(f) => (kinds::process(), f.owner(), 0).encode(env),
        None => atoms::nil().encode(env),
    })
}

/// The pids of the joiners of the leader's flight of `gk`, or nil (tests).
#[rustler::nif]
fn coalesce_joiners(gk: Term<'_>) -> NifResult<Option<Vec<LocalPid>>> {
    let (bytes, hash, _) = key(gk)?;
    Ok(TABLE
        .get(hash, &bytes)
        .filter(|f| f.kind() == Kind::Leader)
        .map(|f| f.joiners()))
}

/// How many flights are in the table now (tests: memory comes back).
#[rustler::nif]
fn coalesce_size() -> usize {
    TABLE.len()
}
