//! The one dirty-IO entry of a dict whose backend waits on a disk or a
//! network (its handle has `io: true`): `shared_dict_io(sd, op, args)` runs
//! the same operation as the NIF named `shared_dict_<op>`, on a dirty IO
//! scheduler, so a slow fsync or a lock held by another OS process never
//! holds a normal scheduler. The memory backend never comes here.

use rustler::{Atom, Binary, Encoder, Env, NifResult, ResourceArc, Term};

use super::handle::{destroy, key, DictResource};
use super::{
    clear, delete, expire, expire_due, get, incr, keys, persist, put, size, stats, take, to_map,
    ttl,
};
use crate::nif::atoms;

fn arg<'a>(args: &[Term<'a>], i: usize) -> NifResult<Term<'a>> {
    args.get(i).copied().ok_or(rustler::Error::BadArg)
}

fn key_arg<'a>(args: &[Term<'a>], i: usize) -> NifResult<Binary<'a>> {
    arg(args, i)?.decode()
}

/// `op` with `args` as the matching `shared_dict_<op>` NIF takes them
/// after the handle: `get [key]`, `put [key, value, ttl, cond]`, `take`,
/// `delete`, `ttl`, `persist [key]`, `incr [key, by]`, `expire [key, ms]`,
/// `keys`, `to_map`, `size`, `clear`, `destroy`, `stats`, `expire_due []`,
/// and the per-key locks' `lock`, `lock_cancel`, `unlock [key]`.
#[rustler::nif(schedule = "DirtyIo")]
fn shared_dict_io<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    op: Atom,
    args: Vec<Term<'a>>,
) -> NifResult<Term<'a>> {
    if op == atoms::lock() {
        return super::locks::lock(env, &sd, key(&key_arg(&args, 0)?)?);
    }
    let sd = &*sd;
    if op == atoms::lock_cancel() {
        return Ok(super::locks::lock_cancel(env, sd, key(&key_arg(&args, 0)?)?).encode(env));
    }
    if op == atoms::unlock() {
        return super::locks::unlock(env, sd, key(&key_arg(&args, 0)?)?);
    }
    if op == atoms::get() {
        get(env, sd, key_arg(&args, 0)?, true)
    } else if op == atoms::put() {
        let ttl: Option<u64> = arg(&args, 2)?.decode()?;
        put(
            env,
            sd,
            key_arg(&args, 0)?,
            arg(&args, 1)?,
            ttl,
            arg(&args, 3)?,
            None,
        )
    } else if op == atoms::take() {
        take(env, sd, key(&key_arg(&args, 0)?)?)
    } else if op == atoms::delete() {
        delete(env, sd, key(&key_arg(&args, 0)?)?)
    } else if op == atoms::ttl() {
        ttl(env, sd, key(&key_arg(&args, 0)?)?)
    } else if op == atoms::persist() {
        persist(env, sd, key(&key_arg(&args, 0)?)?)
    } else if op == atoms::incr() {
        incr(env, sd, key(&key_arg(&args, 0)?)?, arg(&args, 1)?.decode()?)
    } else if op == atoms::expire() {
        expire(env, sd, key(&key_arg(&args, 0)?)?, arg(&args, 1)?.decode()?)
    } else if op == atoms::keys() {
        keys(env, sd)
    } else if op == atoms::to_map() {
        to_map(env, sd)
    } else if op == atoms::size() {
        size(env, sd)
    } else if op == atoms::clear() {
        clear(env, sd)
    } else if op == atoms::destroy() {
        destroy(&sd.dict);
        Ok(atoms::ok().encode(env))
    } else if op == atoms::stats() {
        stats(env, sd)
    } else if op == atoms::expire_due() {
        expire_due(env, sd)
    } else {
        Err(rustler::Error::BadArg)
    }
}
