//! Per-key locks for BEAM processes: the NIF never waits. It takes the lock,
//! or registers the caller as a waiter, which the events thread tells when
//! the lock is released (see `Py.SharedDict.Locks`).

use rustler::{Atom, Binary, Encoder, Env, NifResult, ResourceArc, Term};

use crate::nif::atoms;

use super::handle::{beam_holder, dict_error, key, DictResource};

/// Takes `key`'s lock for the caller: `:ok`, or `:wait` when another holds
/// it (the caller is then sent `{:"$py_shared_dict_unlocked", id, key}`
/// when it is released, and tries again). Never blocks.
#[rustler::nif]
fn shared_dict_lock<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    lock(env, &sd, key(&k)?)
}

/// [`shared_dict_lock`]'s work (also reached through `shared_dict_io`, for
/// a backend whose locks live on a server).
pub(super) fn lock<'a>(
    env: Env<'a>,
    sd: &ResourceArc<DictResource>,
    key: &str,
) -> NifResult<Term<'a>> {
    let pid = env.pid();
    let holder = beam_holder(&pid);
    // Registered as a waiter before the attempt, so a release between the
    // two still wakes this caller (it then tries again). The waiters' lock
    // is not held during the attempt: on a server-backed dict that is a
    // network round trip, and `down` takes the same lock on a scheduler.
    register(sd, key, pid);
    match sd.dict.try_lock(key, holder) {
        Ok(Ok(())) => {
            unregister(sd, key, &pid);
            if !DictResource::monitor(sd, env, pid) {
                // Exiting: do not keep a lock nobody will release.
                sd.dict.release_all(holder);
            }
            Ok(atoms::ok().encode(env))
        }
        Ok(Err(_other)) => Ok(atoms::wait().encode(env)),
        Err(err) => {
            unregister(sd, key, &pid);
            dict_error(env, err)
        }
    }
}

fn register(sd: &DictResource, key: &str, pid: rustler::LocalPid) {
    let mut waiters = sd.beam.waiters.lock();
    let list = waiters.entry(key.to_owned()).or_default();
    if !list.contains(&pid) {
        list.push(pid);
    }
}

fn unregister(sd: &DictResource, key: &str, pid: &rustler::LocalPid) {
    let mut waiters = sd.beam.waiters.lock();
    if let Some(list) = waiters.get_mut(key) {
        list.retain(|p| p != pid);
        if list.is_empty() {
            waiters.remove(key);
        }
    }
}

/// Gives up waiting for `key`'s lock.
#[rustler::nif]
fn shared_dict_lock_cancel<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Atom> {
    let key = key(&k)?;
    Ok(lock_cancel(env, &sd, key))
}

pub(super) fn lock_cancel(env: Env<'_>, sd: &DictResource, key: &str) -> Atom {
    unregister(sd, key, &env.pid());
    atoms::ok()
}

/// Releases `key`'s lock if the caller holds it: `true`, else `false`.
#[rustler::nif]
fn shared_dict_unlock<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    unlock(env, &sd, key(&k)?)
}

pub(super) fn unlock<'a>(env: Env<'a>, sd: &DictResource, key: &str) -> NifResult<Term<'a>> {
    let pid = env.pid();
    match sd.dict.unlock(key, beam_holder(&pid)) {
        Ok(released) => Ok(released.encode(env)),
        Err(err) => dict_error(env, err),
    }
}
