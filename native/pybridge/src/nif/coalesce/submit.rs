//! `coalesce_submit/6`: the first step of a coalesced Python call
//! (`Py.Coalesce.Leader`) in one NIF call: its key is claimed (or its
//! flight joined), its job submitted as `submit/6` would, and when the call
//! answers at once, its flight ended there too. An uncontended call that
//! succeeds is counted there as well ([`MISSES`]): it costs this one NIF
//! call, as a plain call costs `submit/6`.
//!
//! The answers:
//! * what `coalesce_enter/3` answers, other than a claim, when the key was
//!   in flight already (nothing submitted);
//! * `{:done, reply, queue_us, run_us}`, `submit/6`'s own answer, when the
//!   call answered at once, nobody joined, it succeeded and it was counted;
//! * `{:ran, reply, joiners}` when it answered at once otherwise (the
//!   flight is ended: its joiners, `[{pid, tag}]`, get the reply, and the
//!   caller counts it);
//! * `{:claimed, hash, id, answer}` when the call did not answer at once:
//!   the flight's name and `submit/6`'s answer, for `Py.Call.submitted/6`;
//! * `{:badarg, hash, id, joiners}` when `job` is not one: the flight is
//!   ended, and whoever joined it meanwhile is to be told.

use std::sync::LazyLock;

use rustler::{Encoder, Env, NifResult, ResourceArc, Term};

use super::key::{group_bytes, group_encoding, key, tuple_elems};
use super::{encode_entered, enter, joiners, TABLE};
use crate::coalesce::{Entered, Kind, Misses};
use crate::limits::SCHEDULER_NODES;
use crate::nif::atoms;
use crate::nif::calls::{submit_with, Submission};
use crate::nif::handles::ContextResource;

/// The misses counted where the call ended (see the module's doc).
static MISSES: LazyLock<Misses> = LazyLock::new(Misses::default);

mod kinds {
    rustler::atoms! { ran, badarg }
}

/// Runs the Python job `job` for the key `gk` (`{group, key}`) on `ctx`, as
/// `submit/6` with `namespace` and `tag` and no timeout (the leader applies
/// its own), unless the key is in flight. `count`: whether an uncontended
/// call that succeeds is counted here (not when telemetry is compiled in:
/// `Py.Coalesce.Stats` raises an event for each miss then).
#[rustler::nif]
#[allow(clippy::too_many_arguments)]
fn coalesce_submit<'a>(
    env: Env<'a>,
    ctx: ResourceArc<ContextResource>,
    namespace: Term<'a>,
    tag: Term<'a>,
    job: Term<'a>,
    gk: Term<'a>,
    count: bool,
) -> NifResult<Term<'a>> {
    let (bytes, hash, group_end) = key(gk)?;
    let flight = match enter(bytes, hash, env.pid(), Some(Kind::Leader)) {
        Entered::Claimed(flight) => flight,
        other => return Ok(encode_entered(env, other)),
    };
    let (fhash, id) = flight.name();
    let call = Submission {
        namespace,
        tag,
        job,
        timeout: atoms::infinity().encode(env),
        ticket: None,
    };
    let answer = match submit_with(env, &ctx, call, Some(SCHEDULER_NODES)) {
        Ok(answer) => answer,
        Err(_) => {
            // Not a job: the flight ends here, its joiners (if any came
            // meanwhile) told by the caller.
            let joined = match TABLE.take(&flight) {
                Some(taken) => joiners(env, &taken),
                None => Vec::<Term<'a>>::new().encode(env),
            };
            return Ok((kinds::badarg(), fhash, id, joined).encode(env));
        }
    };
    let Some(reply) = done_reply(env, answer) else {
        return Ok((super::kinds::claimed(), fhash, id, answer).encode(env));
    };
    let taken = TABLE.take(&flight);
    let nobody = taken.as_ref().is_none_or(|t| t.joiners.is_empty());
    if count && nobody && !is_error(env, reply) {
        MISSES.count(group_bytes(flight.key(), group_end));
        return Ok(answer);
    }
    let joined = match &taken {
        Some(taken) => joiners(env, taken),
        None => Vec::<Term<'a>>::new().encode(env),
    };
    Ok((kinds::ran(), reply, joined).encode(env))
}

/// The reply in `submit/6`'s answer `{:done, reply, queue_us, run_us}`.
fn done_reply<'a>(env: Env<'a>, answer: Term<'a>) -> Option<Term<'a>> {
    let (4, elems) = tuple_elems(answer)? else {
        return None;
    };
    // SAFETY: a 4-tuple's elements, which live as long as it (`answer`,
    // a term of `env`).
    let (first, reply) = unsafe { (Term::new(env, *elems), Term::new(env, *elems.add(1))) };
    (first == atoms::done().encode(env)).then_some(reply)
}

/// Whether a call's reply is an error (`{:error, _}`).
fn is_error<'a>(env: Env<'a>, reply: Term<'a>) -> bool {
    match tuple_elems(reply) {
        // SAFETY: a tuple's first element, which lives as long as it.
        Some((n, elems)) if n > 0 => {
            let first = unsafe { Term::new(env, *elems) };
            first == atoms::error().encode(env)
        }
        _ => false,
    }
}

/// The misses of `group` counted by `coalesce_submit/6`.
#[rustler::nif]
fn coalesce_misses(group: Term<'_>) -> NifResult<u64> {
    Ok(MISSES.get(&group_encoding(group)?))
}

/// Zeroes the misses of `group` counted by `coalesce_submit/6`.
#[rustler::nif]
fn coalesce_reset_misses(group: Term<'_>) -> NifResult<rustler::Atom> {
    MISSES.reset(&group_encoding(group)?);
    Ok(atoms::ok())
}

/// Every group's misses counted by `coalesce_submit/6`, as `[{group, n}]`,
/// each group in the external term format (`:erlang.binary_to_term/1`).
#[rustler::nif]
fn coalesce_all_misses(env: Env<'_>) -> Term<'_> {
    let all: Vec<(Term<'_>, u64)> = MISSES
        .all()
        .into_iter()
        .map(|(group, n)| {
            let mut bin = rustler::NewBinary::new(env, group.len() + 1);
            bin.as_mut_slice()[0] = 131;
            bin.as_mut_slice()[1..].copy_from_slice(&group);
            (bin.into(), n)
        })
        .collect();
    all.encode(env)
}
