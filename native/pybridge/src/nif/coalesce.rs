//! `coalesce_*`: request coalescing's in-flight table
//! ([`crate::coalesce::Table`]) for `Py.Coalesce` and `Py.Coalesce.Leader`.
//!
//! Keys are `{group, key}` tuples, kept in the external term format: two
//! keys are one when their encodings are, which is when the terms are
//! exactly equal (`1` and `1.0` differ, as in a match). A group's keys all
//! start with the encoding of `{group, ` ([`group_prefix`]). The usual
//! keys (binaries, floats, small integers, lists and tuples of these) are encoded by
//! [`write_term`], straight into the buffer their flight keeps, the others
//! by `enif_term_to_binary`: the same bytes either way.
//!
//! Whoever claims a key gets its flight's name, `{hash, id}`
//! (`Flight::name`), and ends it with `coalesce_take/2`; the joiners get a
//! resource, [`Joiners`], made for the first of them, and are answered with
//! the tag `{joiners, slot}`. An execution nobody joins costs no resource.

use std::hash::BuildHasher;
use std::mem::MaybeUninit;
use std::sync::{Arc, LazyLock};

use rustler::sys::{
    enif_get_double, enif_get_int64, enif_get_list_cell, enif_get_tuple, enif_is_empty_list,
    enif_term_to_binary, ErlNifBinary, ErlNifTerm,
};
use rustler::{
    Atom, Encoder, Env, Error, LocalPid, NifResult, OwnedBinary, OwnedEnv, ResourceArc, Term,
};

use super::atoms;
use crate::coalesce::{Entered, Flight, Kind, Table, Taken};

/// The call a leader records for whoever takes its flight over, copied
/// into an environment of its own (only a call that did not answer at
/// once is recorded).
pub struct SavedCall {
    env: OwnedEnv,
    term: rustler::env::SavedTerm,
}

/// A flight's key: the encoding of its `{group, key}` ([`key`]), made
/// once and moved into the flight that claims it.
type Key = Vec<u8>;

type FlightArc = Arc<Flight<Key, LocalPid, SavedCall, ResourceArc<Joiners>>>;

/// A leader's flight as its joiners hold it: the first element of each
/// joiner's tag. The flight holds it too until it ends.
pub struct Joiners(FlightArc);

#[rustler::resource_impl]
impl rustler::Resource for Joiners {}

static TABLE: LazyLock<Table<FlightArc>> = LazyLock::new(Table::default);
static HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

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

/// Whether `term` is a 2-tuple (without the vector rustler's `get_tuple`
/// allocates: this is the hot path).
fn is_pair(term: Term<'_>) -> bool {
    matches!(tuple_elems(term), Some((2, _)))
}

/// The arity of `term` and a pointer to its elements when it is a tuple
/// (the elements live as long as `term`).
fn tuple_elems(term: Term<'_>) -> Option<(usize, *const ErlNifTerm)> {
    let mut arity = 0;
    let mut elems: *const ErlNifTerm = std::ptr::null();
    // SAFETY: `term` is a live term of its environment; enif_get_tuple
    // only writes the two out-parameters, `elems` then pointing at `arity`
    // terms that live as long as `term`.
    let ok = unsafe {
        enif_get_tuple(
            term.get_env().as_c_arg(),
            term.as_c_arg(),
            &mut arity,
            &mut elems,
        )
    };
    if ok == 0 {
        return None;
    }
    usize::try_from(arity).ok().map(|n| (n, elems))
}

/// How deep [`write_term`] goes before it leaves a term to
/// `enif_term_to_binary`.
const MAX_DEPTH: u32 = 32;

/// Appends `term`'s external term format (without the version byte) to
/// `out`, byte for byte what `enif_term_to_binary` writes, for the terms
/// keys are usually made of: binaries, floats, integers of 32 bits, proper
/// lists (a list of bytes as a STRING_EXT) and tuples of these.
/// `false` for any other term (`out` is then left half written): the
/// caller encodes the whole term with `enif_term_to_binary` instead, so a
/// term always gets the same bytes whichever way they were made, and
/// [`group_prefix`] matches its group's keys. No binary is allocated, and
/// no size computed first: the common key costs a third of
/// `enif_term_to_binary`.
fn write_term(term: Term<'_>, out: &mut Vec<u8>, depth: u32) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    if let Ok(bin) = rustler::Binary::from_term(term) {
        let Ok(len) = u32::try_from(bin.len()) else {
            return false;
        };
        out.push(109); // BINARY_EXT
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bin.as_slice());
        return true;
    }
    let mut i: i64 = 0;
    // SAFETY: `term` is a live term of its environment; enif_get_int64
    // only writes `i`, and fails for anything but an integer that fits.
    if unsafe { enif_get_int64(term.get_env().as_c_arg(), term.as_c_arg(), &mut i) } != 0 {
        if let Ok(b) = u8::try_from(i) {
            out.extend_from_slice(&[97, b]); // SMALL_INTEGER_EXT
        } else if let Ok(w) = i32::try_from(i) {
            out.push(98); // INTEGER_EXT
            out.extend_from_slice(&w.to_be_bytes());
        } else {
            return false; // a bignum there
        }
        return true;
    }
    let mut x: f64 = 0.0;
    // SAFETY: `term` is a live term of its environment; enif_get_double
    // only writes `x`, and fails for anything but a float (an integer
    // included).
    if unsafe { enif_get_double(term.get_env().as_c_arg(), term.as_c_arg(), &mut x) } != 0 {
        out.push(70); // NEW_FLOAT_EXT
        out.extend_from_slice(&x.to_bits().to_be_bytes());
        return true;
    }
    if term.is_list() {
        let env = term.get_env();
        let at = out.len();
        out.extend_from_slice(&[108, 0, 0, 0, 0]); // LIST_EXT, its length below
        let mut len: u32 = 0;
        // Whether every element is an integer 0..=255 (SMALL_INTEGER_EXT).
        let mut bytes = true;
        let mut cell = term.as_c_arg();
        loop {
            let mut head = MaybeUninit::<ErlNifTerm>::uninit();
            let mut tail = MaybeUninit::<ErlNifTerm>::uninit();
            // SAFETY: `cell` is a live term of `env` (the list or a tail of
            // it); enif_get_list_cell only writes the two out-parameters,
            // and both when it returns non-zero.
            let (head, tail) = unsafe {
                if enif_get_list_cell(env.as_c_arg(), cell, head.as_mut_ptr(), tail.as_mut_ptr())
                    == 0
                {
                    break;
                }
                (head.assume_init(), tail.assume_init())
            };
            // SAFETY: the head of a live list of `env`.
            let elem = unsafe { Term::new(env, head) };
            let from = out.len();
            if !write_term(elem, out, depth + 1) {
                return false;
            }
            bytes &= out.len() == from + 2 && out[from] == 97;
            len = len.saturating_add(1);
            cell = tail;
        }
        // SAFETY: as above.
        if unsafe { enif_is_empty_list(env.as_c_arg(), cell) } == 0 {
            return false; // an improper list
        }
        if len == 0 {
            out.truncate(at);
        } else if bytes && len < 65_536 {
            // A list of bytes is a STRING_EXT: its length (u16) and the
            // bytes, no tail.
            let data: Vec<u8> = out[at + 5..].chunks_exact(2).map(|c| c[1]).collect();
            out.truncate(at);
            out.push(107); // STRING_EXT
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&data);
            return true;
        } else if len == u32::MAX {
            return false;
        } else {
            out[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
        }
        out.push(106); // NIL_EXT
        return true;
    }
    let Some((n, elems)) = tuple_elems(term) else {
        return false;
    };
    match u8::try_from(n) {
        Ok(a) => out.extend_from_slice(&[104, a]), // SMALL_TUPLE_EXT
        Err(_) => {
            out.push(105); // LARGE_TUPLE_EXT
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    for i in 0..n {
        // SAFETY: i < arity, and the tuple's elements live as long as it.
        let elem = unsafe { Term::new(term.get_env(), *elems.add(i)) };
        if !write_term(elem, out, depth + 1) {
            return false;
        }
    }
    true
}

/// The key of `gk`, which must be a `{group, key}` tuple, and its hash.
fn key(gk: Term<'_>) -> NifResult<(Key, u64)> {
    if !is_pair(gk) {
        return Err(Error::BadArg);
    }
    let mut out = Vec::with_capacity(64);
    out.push(131); // the version byte
    if !write_term(gk, &mut out, 0) {
        out.clear();
        out.extend_from_slice(encode(gk)?.as_slice());
    }
    let bytes = out;
    let hash = HASHER.hash_one(&bytes[..]);
    Ok((bytes, hash))
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
    let (bytes, hash) = key(gk)?;
    let claim = if claim == kinds::leader() {
        Some(Kind::Leader)
    } else if claim == kinds::process() {
        Some(Kind::Process)
    } else if claim == atoms::nil() {
        None
    } else {
        return Err(Error::BadArg);
    };
    let entered = TABLE.enter(
        hash,
        bytes,
        |k, bytes| k[..] == bytes[..],
        me,
        claim,
        Arc::new,
        |f| ResourceArc::new(Joiners(f.clone())),
    );
    Ok(match entered {
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
    })
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
        Some(saved) => saved.env.run(|owned| saved.term.load(owned).in_env(env)),
        None => atoms::nil().encode(env),
    };
    let joiners: Vec<Term<'a>> = match &taken.handle {
        // 10,000 joiners take well under a millisecond: a tuple of two and
        // one of three terms each.
        Some(handle) => {
            let handle = handle.encode(env);
            taken
                .joiners
                .iter()
                .map(|(slot, pid)| (*pid, (handle, *slot)).encode(env))
                .collect()
        }
        None => Vec::new(),
    };
    (call, joiners).encode(env)
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

/// Joiner `slot` leaves: true if it was still in (nobody answers it now),
/// false if the flight was taken with it (its answer is coming).
#[rustler::nif]
fn coalesce_leave(joiners: ResourceArc<Joiners>, slot: usize) -> bool {
    joiners.0.leave(slot)
}

/// Records `call` in the flight named `{hash, id}` for whoever takes it
/// over: `:ok`, or `:ended` when it has been taken already.
#[rustler::nif]
fn coalesce_mark(hash: u64, id: u64, call: Term<'_>) -> Atom {
    let Some(flight) = TABLE.by_name((hash, id)) else {
        return kinds::ended();
    };
    let env = OwnedEnv::new();
    let term = env.save(call);
    match flight.mark(SavedCall { env, term }) {
        Ok(()) => atoms::ok(),
        Err(_) => kinds::ended(),
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
    let (bytes, hash) = key(gk)?;
    Ok(TABLE.unmap_owner(hash, |k| k[..] == bytes[..], owner))
}

/// Forgets the flight of `gk` (`Py.Coalesce.forget/2`).
#[rustler::nif]
fn coalesce_forget(gk: Term<'_>) -> NifResult<bool> {
    let (bytes, hash) = key(gk)?;
    Ok(TABLE.forget(hash, |k| k[..] == bytes[..]))
}

/// Forgets every flight of `group` (`Py.Coalesce.forget_all/1`); how many.
/// A walk of the whole table: on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn coalesce_forget_all(group: Term<'_>) -> NifResult<usize> {
    let prefix = group_prefix(group)?;
    Ok(TABLE.forget_where(|k| k.starts_with(&prefix)))
}

/// Who holds `gk` now: `{:leader, pid, joiners}` (a leader's flight and
/// how many joiners it has), `{:process, pid, 0}` or nil (tests, benches).
#[rustler::nif]
fn coalesce_lookup<'a>(env: Env<'a>, gk: Term<'a>) -> NifResult<Term<'a>> {
    let (bytes, hash) = key(gk)?;
    Ok(match TABLE.get(hash, |k| k[..] == bytes[..]) {
        Some(f) if f.kind() == Kind::Leader => (kinds::leader(), f.owner(), f.joined()).encode(env),
        Some(f) => (kinds::process(), f.owner(), 0).encode(env),
        None => atoms::nil().encode(env),
    })
}

/// The pids of the joiners of the leader's flight of `gk`, or nil (tests).
#[rustler::nif]
fn coalesce_joiners(gk: Term<'_>) -> NifResult<Option<Vec<LocalPid>>> {
    let (bytes, hash) = key(gk)?;
    Ok(TABLE
        .get(hash, |k| k[..] == bytes[..])
        .filter(|f| f.kind() == Kind::Leader)
        .map(|f| f.joiners()))
}

/// How many flights are in the table now (tests: memory comes back).
#[rustler::nif]
fn coalesce_size() -> usize {
    TABLE.len()
}
