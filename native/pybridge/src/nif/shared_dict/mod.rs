//! SharedDicts (`Py.SharedDict`): one NIF per operation. Decode the key and
//! value, call [`crate::shared_dict`], encode.
//!
//! Scheduler budget: keys are bounded by the caller; a value to store is
//! decoded with the usual node budget and a value read is measured before
//! it is encoded, so a big one answers `:dirty` and the Elixir side repeats
//! the call on a dirty scheduler (`*_dirty`). Whole-dict operations
//! (`keys`, `to_map`, `take`, `clear`, `destroy`, and `size`/`stats`, which
//! count unswept expired keys) always run dirty.
//!
//! A dict whose backend waits on a disk or network (SQLite; its handle has
//! `io: true`) is never touched from a normal scheduler: the Elixir side
//! sends every operation through [`io`]'s one dirty-IO NIF instead, except
//! a put on a backend that queues writes ([`later`]) and a get on one that
//! shares round trips between reads ([`get_later`]).
//!
//! [`handle`]: the resource and what it monitors; [`events`]: subscriptions
//! and the thread that delivers events; [`locks`]: per-key locks; [`put`]:
//! the put NIFs and the decoding of a put's arguments.

mod by_message;
mod events;
mod get_later;
mod handle;
mod io;
mod later;
mod locks;
mod put;

use rustler::sys::{self, ErlNifTerm};
use rustler::{Atom, Binary, Encoder, Env, NewBinary, NifResult, ResourceArc, Term};

use crate::context::ErrorKind;
use crate::convert::Value;
use crate::limits::SCHEDULER_NODES;
use crate::shared_dict::{BackendSpec, Bounds, DictOptions, SharedDict, Stored, Ttl};

use super::atoms;
use super::error::raise;
use super::term::encode;

pub use handle::DictResource;
use handle::{destroy, dict_error, handle_of, handle_term, handles, key, make_handle};
use put::put;

fn encode_stored<'a>(env: Env<'a>, stored: &Stored) -> Term<'a> {
    match stored {
        Stored::Plain(v) => encode_flat(env, v).unwrap_or_else(|| encode(env, v)),
        Stored::Pickled { type_name, data } => {
            let mut bin = NewBinary::new(env, data.len());
            bin.as_mut_slice().copy_from_slice(data);
            let data: Term<'a> = bin.into();
            let pairs = [
                (
                    atoms::__struct__().encode(env),
                    atoms::py_shared_dict_pickled().encode(env),
                ),
                (atoms::type_().encode(env), type_name.encode(env)),
                (atoms::data().encode(env), data),
            ];
            Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| atoms::nil().encode(env))
        }
    }
}

/// The most children a container may have for [`encode_flat`].
const FLAT: usize = 8;

/// A small list, tuple or map of scalars, encoded from arrays on the stack
/// (the general encoder keeps a stack of frames and vectors of terms on the
/// heap); `None` for anything else, which the general encoder does.
fn encode_flat<'a>(env: Env<'a>, v: &Value) -> Option<Term<'a>> {
    let mut first = [ErlNifTerm::default(); FLAT];
    let mut second = [ErlNifTerm::default(); FLAT];
    let raw = |v: &Value| encode(env, v).as_c_arg();
    let made = match v {
        Value::List(items) | Value::Tuple(items)
            if items.len() <= FLAT && !items.iter().any(Value::is_container) =>
        {
            for (slot, item) in first.iter_mut().zip(items) {
                *slot = raw(item);
            }
            let n = items.len() as u32;
            // SAFETY: the first `n` terms of `first` were made in `env`.
            unsafe {
                if let Value::List(_) = v {
                    sys::enif_make_list_from_array(env.as_c_arg(), first.as_ptr(), n)
                } else {
                    sys::enif_make_tuple_from_array(env.as_c_arg(), first.as_ptr(), n)
                }
            }
        }
        Value::Map(pairs)
            if pairs.len() <= FLAT
                && !pairs
                    .iter()
                    .any(|(k, v)| k.is_container() || v.is_container()) =>
        {
            for ((k_slot, v_slot), (k, v)) in first.iter_mut().zip(second.iter_mut()).zip(pairs) {
                *k_slot = raw(k);
                *v_slot = raw(v);
            }
            let mut out = ErlNifTerm::default();
            // SAFETY: the first `len` terms of both arrays were made in
            // `env`; `out` is written only on success.
            let ok = unsafe {
                sys::enif_make_map_from_arrays(
                    env.as_c_arg(),
                    first.as_ptr(),
                    second.as_ptr(),
                    pairs.len(),
                    &mut out,
                )
            };
            // Duplicate keys (a str and bytes alike): the general encoder
            // decides which wins.
            if ok == 0 {
                return None;
            }
            out
        }
        _ => return None,
    };
    // SAFETY: `made` is a term just made in `env`.
    Some(unsafe { Term::new(env, made) })
}

fn too_big_for_scheduler(stored: &Stored, dirty: bool) -> bool {
    match stored {
        Stored::Plain(v) => !dirty && v.size_up_to(SCHEDULER_NODES) > SCHEDULER_NODES,
        Stored::Pickled { data, .. } => {
            !dirty && data.len() / crate::limits::BINARY_BYTES_PER_NODE > SCHEDULER_NODES
        }
    }
}

/// `new(name, max_entries, evict_lru, backend, prefix, pool_size)` with
/// `backend` `:memory` or `{:sqlite, path}` (checked by `Py.SharedDict`):
/// `{:ok, handle}`, `{:error, :exists}` or `{:error, {:backend, message,
/// nil}}`. Dirty IO: opening a file waits on the disk.
#[rustler::nif(schedule = "DirtyIo")]
fn shared_dict_new<'a>(
    env: Env<'a>,
    name: Option<String>,
    max_entries: Option<usize>,
    evict_lru: bool,
    backend: Term<'a>,
    prefix: String,
    pool_size: usize,
) -> NifResult<Term<'a>> {
    let named = name.is_some();
    let opts = DictOptions {
        name,
        bounds: Bounds {
            max_entries,
            evict_lru,
        },
        backend: backend_spec(backend)?,
        prefix,
        pool_size: pool_size.max(1),
    };
    let dict = match SharedDict::new(opts) {
        Ok(dict) => dict,
        Err(err) => return dict_error(env, err),
    };
    let owner = if named { None } else { Some(env.pid()) };
    let handle = match make_handle(&dict, owner) {
        Ok(handle) => handle,
        Err(err) => return dict_error(env, err),
    };
    if let Some(pid) = owner {
        if !DictResource::monitor(&handle, env, pid) {
            // The caller is exiting: its dict goes with it.
            dict.destroy();
            return Err(raise(ErrorKind::Destroyed, "the owner exited"));
        }
    }
    handles().lock().insert(dict.id(), handle.clone());
    Ok((atoms::ok(), handle_term(env, &handle)).encode(env))
}

/// `:memory | {:sqlite, path} | {:redis, url}`.
fn backend_spec(term: Term<'_>) -> NifResult<BackendSpec> {
    if term == atoms::memory().encode(term.get_env()) {
        return Ok(BackendSpec::Memory);
    }
    let (kind, location): (Atom, String) = term.decode()?;
    if kind == atoms::sqlite() {
        return Ok(BackendSpec::Sqlite(location.into()));
    }
    if kind == atoms::redis() {
        return Ok(BackendSpec::Redis(location));
    }
    Err(rustler::Error::BadArg)
}

#[rustler::nif]
fn shared_dict_lookup(env: Env<'_>, name: String) -> Term<'_> {
    match SharedDict::lookup(&name).and_then(handle_of) {
        Some(handle) => (atoms::ok(), handle_term(env, &handle)).encode(env),
        None => atoms::error().encode(env),
    }
}

fn get<'a>(env: Env<'a>, sd: &DictResource, k: Binary<'a>, dirty: bool) -> NifResult<Term<'a>> {
    if !dirty && sd.dict.blocking() {
        // Never wait on a disk here: the caller retries on a dirty scheduler.
        return Ok(atoms::dirty().encode(env));
    }
    match sd.dict.get(key(&k)?) {
        Ok(Some((item, _))) if too_big_for_scheduler(&item, dirty) => {
            Ok(atoms::dirty().encode(env))
        }
        Ok(Some((item, version))) => {
            Ok((atoms::ok(), encode_stored(env, &item), version).encode(env))
        }
        Ok(None) => Ok(atoms::error().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

/// `{:ok, value, version} | :error | :dirty`.
#[rustler::nif]
fn shared_dict_get<'a>(env: Env<'a>, sd: &'a DictResource, k: Binary<'a>) -> NifResult<Term<'a>> {
    get(env, sd, k, false)
}

/// `get/3`'s hot path: the value of `k`, or `default` when it is missing.
/// Anything else (a value too big for this scheduler, a backend that waits
/// on a disk, a destroyed dict, a key that is not UTF-8) raises, and the
/// Elixir side takes the checked path, which says what it was.
#[rustler::nif]
fn shared_dict_value<'a>(
    env: Env<'a>,
    sd: &'a DictResource,
    k: Binary<'a>,
    default: Term<'a>,
) -> NifResult<Term<'a>> {
    if sd.dict.blocking() {
        return Err(rustler::Error::BadArg);
    }
    match sd.dict.get(key(&k)?) {
        Ok(Some((item, _))) if too_big_for_scheduler(&item, false) => Err(rustler::Error::BadArg),
        Ok(Some((item, _))) => Ok(encode_stored(env, &item)),
        Ok(None) => Ok(default),
        Err(_) => Err(rustler::Error::BadArg),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_get_dirty<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    get(env, &sd, k, true)
}

/// `{:ok, value} | :error`.
#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_take<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    take(env, &sd, key(&k)?)
}

#[rustler::nif]
fn shared_dict_delete<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    delete(env, &sd, key(&k)?)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_keys(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    keys(env, &sd)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_to_map(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    to_map(env, &sd)
}

// Dirty: counting subtracts the keys expired but not yet swept, which
// right after a mass expiry can be many.
#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_size(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    size(env, &sd)
}

/// `{:ok, integer} | {:error, {:not_integer, message, nil}}`.
#[rustler::nif]
fn shared_dict_incr<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
    by: i64,
) -> NifResult<Term<'a>> {
    incr(env, &sd, key(&k)?, by)
}

/// Milliseconds left, `:infinity` or `nil`.
#[rustler::nif]
fn shared_dict_ttl<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    ttl(env, &sd, key(&k)?)
}

#[rustler::nif]
fn shared_dict_expire<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
    ms: u64,
) -> NifResult<Term<'a>> {
    expire(env, &sd, key(&k)?, ms)
}

#[rustler::nif]
fn shared_dict_persist<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    persist(env, &sd, key(&k)?)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_clear(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    clear(env, &sd)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_destroy(sd: ResourceArc<DictResource>) -> Atom {
    destroy(&sd.dict);
    atoms::ok()
}

// Dirty: see `shared_dict_size`.
#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_stats(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    stats(env, &sd)
}

// ── The operations, shared by the NIFs above and `io::shared_dict_io` ──

fn take<'a>(env: Env<'a>, sd: &DictResource, key: &str) -> NifResult<Term<'a>> {
    match sd.dict.take(key) {
        Ok(Some(item)) => Ok((atoms::ok(), encode_stored(env, &item)).encode(env)),
        Ok(None) => Ok(atoms::error().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn delete<'a>(env: Env<'a>, sd: &DictResource, key: &str) -> NifResult<Term<'a>> {
    // The removed value is dropped here: a big one is only a pointer away
    // from being freed, and deep ones are freed without recursion.
    match sd.dict.take(key) {
        Ok(_) => Ok(atoms::ok().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn keys<'a>(env: Env<'a>, sd: &DictResource) -> NifResult<Term<'a>> {
    match sd.dict.keys() {
        Ok(keys) => Ok(keys.iter().map(|k| &**k).collect::<Vec<&str>>().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn to_map<'a>(env: Env<'a>, sd: &DictResource) -> NifResult<Term<'a>> {
    let entries = match sd.dict.entries() {
        Ok(entries) => entries,
        Err(err) => return dict_error(env, err),
    };
    let (keys, values): (Vec<Term<'_>>, Vec<Term<'_>>) = entries
        .iter()
        .map(|(k, item)| ((**k).encode(env), encode_stored(env, item)))
        .unzip();
    Term::map_from_term_arrays(env, &keys, &values)
}

fn size<'a>(env: Env<'a>, sd: &DictResource) -> NifResult<Term<'a>> {
    match sd.dict.len() {
        Ok(n) => Ok(n.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn incr<'a>(env: Env<'a>, sd: &DictResource, key: &str, by: i64) -> NifResult<Term<'a>> {
    match sd.dict.incr(key, by) {
        Ok(v) => Ok((atoms::ok(), encode(env, &v)).encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn ttl<'a>(env: Env<'a>, sd: &DictResource, key: &str) -> NifResult<Term<'a>> {
    match sd.dict.ttl(key) {
        Ok(Some(Ttl::Ms(ms))) => Ok(ms.encode(env)),
        Ok(Some(Ttl::Infinity)) => Ok(atoms::infinity().encode(env)),
        Ok(None) => Ok(atoms::nil().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn expire<'a>(env: Env<'a>, sd: &DictResource, key: &str, ms: u64) -> NifResult<Term<'a>> {
    match sd.dict.expire(key, ms) {
        Ok(found) => Ok(found.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn persist<'a>(env: Env<'a>, sd: &DictResource, key: &str) -> NifResult<Term<'a>> {
    match sd.dict.persist(key) {
        Ok(found) => Ok(found.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn clear<'a>(env: Env<'a>, sd: &DictResource) -> NifResult<Term<'a>> {
    match sd.dict.clear() {
        Ok(_) => Ok(atoms::ok().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

fn stats<'a>(env: Env<'a>, sd: &DictResource) -> NifResult<Term<'a>> {
    match sd.dict.stats() {
        Ok(stats) => Ok(stats.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

/// Every live dict's handle (made now for a dict Python made and the BEAM
/// never looked up). Dirty: there may be many.
#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_all(env: Env<'_>) -> Vec<Term<'_>> {
    SharedDict::all()
        .into_iter()
        .filter_map(handle_of)
        .map(|handle| handle_term(env, &handle))
        .collect()
}

/// The dict's backend, as an atom (`:memory`, ...).
#[rustler::nif]
fn shared_dict_backend(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    let kind = sd.dict.backend_kind();
    Ok(Atom::from_str(env, kind)?.encode(env))
}

/// Whether the dict's telemetry events name their key.
#[rustler::nif]
fn shared_dict_telemetry_keys(sd: ResourceArc<DictResource>, on: bool) -> Atom {
    sd.dict.set_telemetry_keys(on);
    atoms::ok()
}

/// Removes the keys that expired while a durable dict was closed, raising
/// their events (once subscribers are in place): `{:ok, count}`.
fn expire_due<'a>(env: Env<'a>, sd: &DictResource) -> NifResult<Term<'a>> {
    match sd.dict.expire_due() {
        Ok(n) => Ok((atoms::ok(), n).encode(env)),
        Err(err) => dict_error(env, err),
    }
}
