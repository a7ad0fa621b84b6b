//! A get that does not hold a scheduler while the store answers, for a
//! backend that shares round trips between concurrent reads (Redis, see
//! its `reads`): `shared_dict_get_later(sd, key, tag)` runs on a normal
//! scheduler, queues the read and answers `:wait`; the caller then
//! receives `{tag, answer}`, `answer` being what the dirty IO get would
//! have returned (`{:ok, value, version} | :error | {:error, _}`). No I/O
//! here: queueing is a lock; the answer is built on the backend's thread.
//!
//! `:dirty`: not queued (no read on its way to queue behind, a backend
//! that does not queue reads, a destroyed dict): the caller reads through
//! the dirty IO path. `{tag, :retry}`: the backend did not read it (a
//! value too big to share a round trip, a dict closed meanwhile): the
//! caller reads through the dirty IO path, which reads it alone or says
//! why not.

use rustler::{Binary, Encoder, Env, NifResult, Term};

use super::by_message::answer_by_message;
use super::encode_stored;
use super::handle::{dict_error, key, DictResource};
use crate::nif::atoms;
use crate::shared_dict::{DictError, Found, GetDone};

/// What a queued read is answered: see [`GetDone`].
type Read = Option<Result<Option<(Found, u64)>, DictError>>;

#[rustler::nif]
fn shared_dict_get_later<'a>(
    env: Env<'a>,
    sd: &'a DictResource,
    k: Binary<'a>,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    if !sd.dict.would_queue_get() {
        // Nothing to queue behind (or a backend that does not queue): the
        // dirty IO path sends it at once.
        return Ok(atoms::dirty().encode(env));
    }
    let key = key(&k)?;
    let done: GetDone = answer_by_message(env, tag, |env, out: Read| match out {
        Some(Ok(Some((item, version)))) => {
            (atoms::ok(), encode_stored(env, &item), version).encode(env)
        }
        Some(Ok(None)) => atoms::error().encode(env),
        Some(Err(err)) => dict_error(env, err).unwrap_or_else(|_| atoms::retry().encode(env)),
        None => atoms::retry().encode(env),
    });
    if sd.dict.get_later(key, done) {
        Ok(atoms::wait().encode(env))
    } else {
        Ok(atoms::dirty().encode(env))
    }
}
