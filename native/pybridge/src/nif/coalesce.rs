//! `coalesce_*`: request coalescing's in-flight table
//! ([`crate::coalesce::Table`]) for `Py.Coalesce` and `Py.Coalesce.Leader`.
//!
//! Keys are `{group, key}` tuples, stored in the external term format: two
//! keys are one when their encodings are, which is when the terms are
//! exactly equal (`1` and `1.0` differ, as in a match). A group's keys all
//! start with the encoding of `{group, ` ([`group_prefix`]).
//!
//! A flight is a resource (`FlightResource`, the core's `Flight`): its term
//! is what the BEAM holds, the table holds the same object, so a joiner's
//! tag `{flight, slot}` names it exactly.

use std::mem::MaybeUninit;
use std::sync::LazyLock;

use rustler::sys::{enif_term_to_binary, ErlNifBinary};
use rustler::{
    Atom, Encoder, Env, Error, LocalPid, NifResult, OwnedBinary, OwnedEnv, ResourceArc, Term,
};

use super::atoms;
use crate::coalesce::{Entered, Flight, Kind, Table};

/// The call a leader records for whoever takes its flight over, copied
/// into an environment of its own (only a call that did not answer at
/// once is recorded).
pub struct SavedCall {
    env: OwnedEnv,
    term: rustler::env::SavedTerm,
}

type FlightResource = Flight<LocalPid, SavedCall>;
type Handle = ResourceArc<FlightResource>;

#[rustler::resource_impl]
impl rustler::Resource for FlightResource {}

static TABLE: LazyLock<Table<Handle>> = LazyLock::new(Table::default);

mod kinds {
    rustler::atoms! { leader, process, claimed, joined, flight, held, ended }
}

/// `term` in the external term format, in a binary of its own.
fn encode(term: Term<'_>) -> NifResult<OwnedBinary> {
    let mut bin = MaybeUninit::<ErlNifBinary>::uninit();
    // SAFETY: `term` is a live term of its environment, and
    // enif_term_to_binary writes `bin` (a binary it allocates) when it
    // returns non-zero.
    let ok = unsafe {
        enif_term_to_binary(term.get_env().as_c_arg(), term.as_c_arg(), bin.as_mut_ptr())
    };
    if ok == 0 {
        return Err(Error::RaiseAtom("enomem"));
    }
    // SAFETY: initialised above; the OwnedBinary releases it when dropped.
    Ok(unsafe { OwnedBinary::from_raw(bin.assume_init()) })
}

/// The bytes every key of `group` starts with: a 2-tuple's header
/// (SMALL_TUPLE_EXT, arity 2) and the group's encoding, without the
/// version byte of each.
fn group_prefix(group: Term<'_>) -> NifResult<Vec<u8>> {
    let enc = encode(group)?;
    let mut prefix = Vec::with_capacity(enc.len() + 2);
    prefix.extend_from_slice(&[131, 104, 2]);
    prefix.extend_from_slice(enc.get(1..).unwrap_or_default());
    Ok(prefix)
}

fn gk(term: Term<'_>) -> NifResult<OwnedBinary> {
    match rustler::types::tuple::get_tuple(term) {
        Ok(elems) if elems.len() == 2 => encode(term),
        _ => Err(Error::BadArg),
    }
}

/// Finds the flight of `gk` for `me` (the caller's pid): with `claim`
/// `:leader` or `:process`, makes one owned by `me` when there is none.
/// `{:claimed, flight}`, `{:joined, {flight, slot}, leader}` (`me` is in a
/// leader's flight, answered with that tag), `{:flight, pid}` (a process's
/// flight: join it by message), `:held` (a process claiming found another
/// flight) or `nil` (none, nothing claimed).
#[rustler::nif]
fn coalesce_enter<'a>(
    env: Env<'a>,
    gk_term: Term<'a>,
    me: LocalPid,
    claim: Atom,
) -> NifResult<Term<'a>> {
    let key = gk(gk_term)?;
    let claim = if claim == kinds::leader() {
        Some(Kind::Leader)
    } else if claim == kinds::process() {
        Some(Kind::Process)
    } else if claim == atoms::nil() {
        None
    } else {
        return Err(Error::BadArg);
    };
    Ok(match TABLE.enter(&key, me, claim, ResourceArc::new) {
        Entered::Claimed(f) => (kinds::claimed(), f).encode(env),
        Entered::Joined(f, slot) => {
            let owner = f.owner();
            (kinds::joined(), (f, slot), owner).encode(env)
        }
        Entered::Process(f) => (kinds::flight(), f.owner()).encode(env),
        Entered::Held => kinds::held().encode(env),
        Entered::Absent => atoms::nil().encode(env),
    })
}

/// Ends `flight` (unmapping it if it still holds its key): `{call,
/// [{pid, tag}]}`, the call recorded by `coalesce_mark/2` (or nil) and the
/// joiners that have not left, each with its tag `{flight, slot}`; nil when
/// it had ended already. Once per flight.
#[rustler::nif]
fn coalesce_take<'a>(env: Env<'a>, flight_term: Term<'a>) -> NifResult<Term<'a>> {
    let flight: Handle = flight_term.decode()?;
    let Some(taken) = TABLE.take(&flight) else {
        return Ok(atoms::nil().encode(env));
    };
    let call = match &taken.call {
        Some(saved) => saved.env.run(|owned| saved.term.load(owned).in_env(env)),
        None => atoms::nil().encode(env),
    };
    // 10,000 joiners take well under a millisecond: a tuple of two and one
    // of three terms each.
    let joiners: Vec<Term<'a>> = taken
        .joiners
        .iter()
        .map(|(slot, pid)| (*pid, (flight_term, *slot)).encode(env))
        .collect();
    Ok((call, joiners).encode(env))
}

/// Joiner `slot` leaves `flight`: true if it was still in (nobody answers
/// it now), false if the flight was taken with it (its answer is coming).
#[rustler::nif]
fn coalesce_leave(flight: Handle, slot: usize) -> bool {
    flight.leave(slot)
}

/// Records `call` in `flight` for whoever takes it over: `:ok`, or
/// `:ended` when it has been taken already.
#[rustler::nif]
fn coalesce_mark(flight: Handle, call: Term<'_>) -> Atom {
    let env = OwnedEnv::new();
    let term = env.save(call);
    match flight.mark(SavedCall { env, term }) {
        Ok(()) => atoms::ok(),
        Err(_) => kinds::ended(),
    }
}

/// Unmaps `flight` if it still holds its key.
#[rustler::nif]
fn coalesce_unmap(flight: Handle) -> bool {
    TABLE.unmap(&flight)
}

/// Unmaps the flight of `gk` if `owner` owns it.
#[rustler::nif]
fn coalesce_unmap_owner(gk_term: Term<'_>, owner: LocalPid) -> NifResult<bool> {
    Ok(TABLE.unmap_owner(&gk(gk_term)?, owner))
}

/// Unmaps the flight of `gk` (`Py.Coalesce.forget/2`).
#[rustler::nif]
fn coalesce_forget(gk_term: Term<'_>) -> NifResult<bool> {
    Ok(TABLE.forget(&gk(gk_term)?))
}

/// Unmaps every flight of `group` (`Py.Coalesce.forget_all/1`); how many.
/// A walk of the whole table: on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn coalesce_forget_all(group: Term<'_>) -> NifResult<usize> {
    Ok(TABLE.forget_prefix(&group_prefix(group)?))
}

/// Who holds `gk` now: `{:leader, pid, joiners}` (a leader's flight and
/// how many joiners it has), `{:process, pid, 0}` or nil (tests, benches).
#[rustler::nif]
fn coalesce_lookup<'a>(env: Env<'a>, gk_term: Term<'a>) -> NifResult<Term<'a>> {
    Ok(match TABLE.get(&gk(gk_term)?) {
        Some(f) if f.kind() == Kind::Leader => (kinds::leader(), f.owner(), f.joined()).encode(env),
        Some(f) => (kinds::process(), f.owner(), 0).encode(env),
        None => atoms::nil().encode(env),
    })
}

/// The pids of the joiners of the leader's flight of `gk`, or nil (tests).
#[rustler::nif]
fn coalesce_joiners(gk_term: Term<'_>) -> NifResult<Option<Vec<LocalPid>>> {
    Ok(TABLE
        .get(&gk(gk_term)?)
        .filter(|f| f.kind() == Kind::Leader)
        .map(|f| f.joiners()))
}

/// How many flights hold a key now (tests: memory comes back).
#[rustler::nif]
fn coalesce_size() -> usize {
    TABLE.len()
}
