//! A put that does not hold a scheduler while the store answers, for a
//! backend that queues writes (Redis, see its batcher):
//! `shared_dict_put_later(sd, key, value, ttl, cond, tag)` runs on a normal
//! scheduler, queues the write and answers `:wait`; the caller then
//! receives `{tag, answer}`, `answer` being what `shared_dict_put` would
//! have returned, once the write is as done as that return says. No I/O
//! here: the value is decoded within the usual node budget, queueing is a
//! lock.
//!
//! `:dirty`: not queued (nothing on its way to queue behind, a value over
//! the budget or too big for a batch, a backend that does not queue, a
//! destroyed dict): the caller writes through the dirty IO path. A value
//! that cannot be stored is answered at once, as `shared_dict_put`
//! answers it. `{tag, :retry}`: the backend dropped the write unsent
//! (`DictError::Destroyed`): the caller writes through the dirty IO path,
//! which says why. (The Redis batcher sends a write it queued even when the
//! dict is closed meanwhile, and answers it.)

use rustler::{Binary, Encoder, Env, NifResult, Term};

use super::by_message::answer_by_message;
use super::handle::{dict_error, DictResource};
use super::put::decode_put;
use crate::limits::SCHEDULER_NODES;
use crate::nif::atoms;
use crate::shared_dict::{DictError, PutDone};

#[rustler::nif]
fn shared_dict_put_later<'a>(
    env: Env<'a>,
    sd: &'a DictResource,
    k: Binary<'a>,
    value: Term<'a>,
    ttl: Option<u64>,
    cond: Term<'a>,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    if !sd.dict.would_queue_put() {
        // Nothing to queue behind (or a backend that does not queue): the
        // dirty IO path sends it at once, before any decoding here.
        return Ok(atoms::dirty().encode(env));
    }
    // A value that cannot be stored is answered here, as
    // `shared_dict_put` answers it.
    let p = match decode_put(env, &k, value, ttl, cond, Some(SCHEDULER_NODES))? {
        Ok(p) => p,
        Err(answer) => return Ok(answer),
    };
    let done: PutDone = answer_by_message(env, tag, |env, out| match out {
        Ok(version) => (atoms::ok(), version).encode(env),
        Err(DictError::Destroyed) => atoms::retry().encode(env),
        Err(err) => dict_error(env, err).unwrap_or_else(|_| atoms::retry().encode(env)),
    });
    // "Now" was read for a TTL; else the write reads it only if it needs
    // it (as `shared_dict_put`).
    if sd
        .dict
        .put_later(p.key, p.stored, p.expiry, p.cond, &p.now, done)
    {
        Ok(atoms::wait().encode(env))
    } else {
        Ok(atoms::dirty().encode(env))
    }
}
