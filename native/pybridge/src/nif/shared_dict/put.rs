//! Puts: `shared_dict_put` (and its dirty twin and the dirty IO path),
//! `put/4`'s hot path `shared_dict_set`, and [`decode_put`], the decoding
//! of a put's arguments that they share with `shared_dict_put_later`
//! ([`super::later`]).

use rustler::{Atom, Binary, Encoder, Env, NifResult, ResourceArc, Term};

use super::handle::{dict_error, key, DictResource};
use crate::context::{ErrorInfo, ErrorKind};
use crate::limits::SCHEDULER_NODES;
use crate::nif::atoms;
use crate::nif::error::encode_error;
use crate::nif::term::{decode, DecodeError};
use crate::shared_dict::{now_ms, Condition, Expiry, Now, Stored};

/// A value to store: `%Py.SharedDict.Pickled{}` as it came, anything else
/// as plain data.
fn decode_stored(term: Term<'_>, budget: Option<usize>) -> Result<Stored, DecodeError> {
    if let Ok(atom) = term.map_get(atoms::__struct__()) {
        if atom == atoms::py_shared_dict_pickled().encode(term.get_env()) {
            let field = |k: Atom| term.map_get(k).ok();
            let type_name = field(atoms::type_()).and_then(|t| t.decode::<String>().ok());
            let data = field(atoms::data()).and_then(|t| t.decode::<Binary>().ok());
            if let (Some(type_name), Some(data)) = (type_name, data) {
                return Ok(Stored::Pickled {
                    type_name,
                    data: data.as_slice().to_vec(),
                });
            }
        }
    }
    let value = decode(term, budget)?;
    Stored::plain(value)
        .map_err(|e| DecodeError::Convert(crate::convert::ConvertError(e.to_string())))
}

/// A put's condition: `:always`, `:new` (put-if-absent), `:absent` or a
/// version (compare-and-set).
fn decode_cond<'a>(env: Env<'a>, cond: Term<'a>) -> NifResult<Condition> {
    Ok(if cond == atoms::always().encode(env) {
        Condition::Always
    } else if cond == atoms::new().encode(env) {
        Condition::Absent
    } else if cond == atoms::absent().encode(env) {
        Condition::Version(None)
    } else {
        Condition::Version(Some(cond.decode::<u64>()?))
    })
}

/// A put's arguments, decoded.
pub(super) struct Put<'k> {
    pub key: &'k str,
    pub stored: Stored,
    pub expiry: Expiry,
    pub cond: Condition,
    /// "Now" for the write: read already for a TTL (the expiry counts from
    /// it), else read by the store only if a rule needs it (the key has an
    /// expiry, a bounded store is full).
    pub now: Now,
}

/// Decodes a put's arguments (`key, value, ttl_ms | nil, cond`, see
/// `shared_dict_put`), the value within `budget` nodes (`None`: no limit).
/// `Ok(Err(answer))`: the call's answer already: `:dirty` for a value
/// over the budget, `{:error, {:conversion, message, nil}}` for one that
/// cannot be stored.
pub(super) fn decode_put<'a, 'k>(
    env: Env<'a>,
    k: &'k Binary<'a>,
    value: Term<'a>,
    ttl: Option<u64>,
    cond: Term<'a>,
    budget: Option<usize>,
) -> NifResult<Result<Put<'k>, Term<'a>>> {
    let key = key(k)?;
    let cond = decode_cond(env, cond)?;
    let stored = match decode_stored(value, budget) {
        Ok(stored) => stored,
        Err(DecodeError::OverBudget) => return Ok(Err(atoms::dirty().encode(env))),
        Err(DecodeError::Convert(e)) => {
            let info = ErrorInfo::new(ErrorKind::Conversion, e.0);
            return Ok(Err(encode_error(env, &info)));
        }
    };
    // A TTL counts from the write's own "now"; a compare-and-set without
    // one keeps the key's expiry; the other puts remove it.
    let (expiry, now) = match (ttl, cond) {
        (Some(ms), _) => {
            let now = now_ms();
            (Expiry::At(now.saturating_add(ms)), Now::at(now))
        }
        (None, Condition::Version(_)) => (Expiry::Keep, Now::lazy()),
        (None, _) => (Expiry::Never, Now::lazy()),
    };
    Ok(Ok(Put {
        key,
        stored,
        expiry,
        cond,
        now,
    }))
}

/// `shared_dict_put`, its dirty twin and the dirty IO path's put: the
/// value within `budget` nodes (`None`: no limit, on a dirty scheduler).
pub(super) fn put<'a>(
    env: Env<'a>,
    sd: &DictResource,
    k: Binary<'a>,
    value: Term<'a>,
    ttl: Option<u64>,
    cond: Term<'a>,
    budget: Option<usize>,
) -> NifResult<Term<'a>> {
    if budget.is_some() && sd.dict.blocking() {
        // Never wait on a disk here: the caller retries on a dirty scheduler.
        return Ok(atoms::dirty().encode(env));
    }
    let p = match decode_put(env, &k, value, ttl, cond, budget)? {
        Ok(p) => p,
        Err(answer) => return Ok(answer),
    };
    match sd.dict.put_with(p.key, p.stored, p.expiry, p.cond, &p.now) {
        Ok(version) => Ok((atoms::ok(), version).encode(env)),
        Err(err) => dict_error(env, err),
    }
}

/// `put(sd, key, value, ttl_ms | nil, cond)` with `cond` `:always`, `:new`
/// (put-if-absent), `:absent` or a version (compare-and-set, which keeps
/// the key's expiry unless `ttl_ms` is given): `{:ok, version}`,
/// `{:error, :full | :exists | :conflict}`, `{:error, {:conversion, ...}}`
/// or `:dirty`.
#[rustler::nif]
fn shared_dict_put<'a>(
    env: Env<'a>,
    sd: &'a DictResource,
    k: Binary<'a>,
    value: Term<'a>,
    ttl: Option<u64>,
    cond: Term<'a>,
) -> NifResult<Term<'a>> {
    put(env, sd, k, value, ttl, cond, Some(SCHEDULER_NODES))
}

/// `put/4`'s hot path (no options): `:ok`, or what `shared_dict_put`
/// answers otherwise (then the Elixir side takes the checked path).
#[rustler::nif]
fn shared_dict_set<'a>(
    env: Env<'a>,
    sd: &'a DictResource,
    k: Binary<'a>,
    value: Term<'a>,
) -> NifResult<Term<'a>> {
    if sd.dict.blocking() {
        return Ok(atoms::dirty().encode(env));
    }
    let key = key(&k)?;
    let stored = match decode_stored(value, Some(SCHEDULER_NODES)) {
        Ok(stored) => stored,
        Err(_) => return Ok(atoms::dirty().encode(env)),
    };
    match sd.dict.put(key, stored, None, Condition::Always) {
        Ok(_) => Ok(atoms::ok().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_put_dirty<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
    value: Term<'a>,
    ttl: Option<u64>,
    cond: Term<'a>,
) -> NifResult<Term<'a>> {
    put(env, &sd, k, value, ttl, cond, None)
}
