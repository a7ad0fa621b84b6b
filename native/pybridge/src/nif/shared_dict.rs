//! SharedDicts (`Py.SharedDict`): the dict handle resource and one NIF per
//! operation. Decode the key and value, call [`crate::shared_dict`], encode.
//!
//! Scheduler budget: keys are bounded by the caller; a value to store is
//! decoded with the usual node budget and a value read is measured before
//! it is encoded, so a big one answers `:dirty` and the Elixir side repeats
//! the call on a dirty scheduler (`*_dirty`). Whole-dict operations
//! (`keys`, `to_map`, `take`, `clear`, `destroy`) always run dirty.
//!
//! Each dict has exactly one resource (kept in [`HANDLES`] until the dict is
//! destroyed), so `lookup/1` returns the very handle `new/1` did. The
//! resource monitors the owner of an unnamed dict and destroys the dict when
//! the owner exits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rustler::sys::ErlNifPid;
use rustler::{
    Atom, Binary, Encoder, Env, LocalPid, Monitor, NewBinary, NifResult, ResourceArc, Term,
};

use crate::context::{ErrorInfo, ErrorKind};
use crate::limits::SCHEDULER_NODES;
use crate::shared_dict::{
    Bounds, Condition, DictError, DictOptions, EventKind, Holder, Listener, SharedDict, Stored, Ttl,
};

use super::atoms;
use super::error::{encode_error, raise};
use super::shared_dict_events as events;
use super::term::{decode, encode, DecodeError};

/// A dict handle (`%Py.SharedDict{ref: _}`).
pub struct DictResource {
    pub dict: Arc<SharedDict>,
    /// The process whose exit destroys an unnamed dict.
    owner: Option<LocalPid>,
    beam: Arc<BeamSide>,
}

/// The dict's BEAM processes: subscribers and lock waiters, and the
/// processes the resource monitors (owner, subscribers, lock holders).
struct BeamSide {
    id: u64,
    subscribers: Mutex<Vec<(LocalPid, u8)>>,
    has_subscribers: AtomicBool,
    /// Processes waiting for a key's lock, told when it is released.
    waiters: Mutex<HashMap<String, Vec<LocalPid>>>,
    monitored: Mutex<HashSet<LocalPid>>,
}

fn event_bit(kind: EventKind) -> u8 {
    match kind {
        EventKind::Put => 1,
        EventKind::Delete => 2,
        EventKind::Expire => 4,
    }
}

impl Listener for BeamSide {
    fn event(&self, kind: EventKind, key: &str) {
        if !self.has_subscribers.load(Ordering::Acquire) {
            return;
        }
        // Who gets it is decided now, so a subscription changed later does
        // not change what an earlier event reaches.
        let bit = event_bit(kind);
        let pids: Vec<LocalPid> = self
            .subscribers
            .lock()
            .iter()
            .filter(|(_, mask)| mask & bit != 0)
            .map(|(pid, _)| *pid)
            .collect();
        if !pids.is_empty() {
            events::send(events::Message::Event(self.id, kind, key.to_owned(), pids));
        }
    }

    fn unlocked(&self, key: &str) {
        let waiters = self.waiters.lock().remove(key);
        if let Some(pids) = waiters {
            events::send(events::Message::Unlocked(self.id, key.to_owned(), pids));
        }
    }
}

/// The lock holder standing for a BEAM process: its pid's term, an
/// immediate value, the same in every env and unique among live processes.
fn beam_holder(pid: &LocalPid) -> Holder {
    // SAFETY: `ErlNifPid` is `repr(C)` with one field, an `ErlNifTerm`,
    // which is `repr(transparent)` over `usize`: the two have the same size
    // and layout, and every bit pattern is a valid `usize`.
    let term: usize = unsafe { std::mem::transmute::<ErlNifPid, usize>(*pid.as_c_arg()) };
    Holder::Beam(term as u64)
}

impl DictResource {
    /// Monitors `pid` (once), so its exit drops what it holds.
    fn monitor(handle: &ResourceArc<DictResource>, env: Env<'_>, pid: LocalPid) -> bool {
        if !handle.beam.monitored.lock().insert(pid) {
            return true;
        }
        if handle.monitor(Some(env), &pid).is_some() {
            return true;
        }
        handle.beam.monitored.lock().remove(&pid);
        false
    }
}

#[rustler::resource_impl]
impl rustler::Resource for DictResource {
    fn down<'a>(&'a self, _env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        self.beam.monitored.lock().remove(&pid);
        if self.owner == Some(pid) {
            destroy(&self.dict);
        }
        {
            let mut subs = self.beam.subscribers.lock();
            subs.retain(|(p, _)| *p != pid);
            self.beam
                .has_subscribers
                .store(!subs.is_empty(), Ordering::Release);
        }
        for waiting in self.beam.waiters.lock().values_mut() {
            waiting.retain(|p| *p != pid);
        }
        self.dict.release_all(beam_holder(&pid));
    }
}

/// The one resource of each live dict, by dict id.
pub(super) static HANDLES: OnceLock<Mutex<HashMap<u64, ResourceArc<DictResource>>>> =
    OnceLock::new();

pub(super) fn handles() -> &'static Mutex<HashMap<u64, ResourceArc<DictResource>>> {
    HANDLES.get_or_init(Default::default)
}

fn destroy(dict: &SharedDict) {
    dict.destroy();
    // Dropped outside the lock: the resource's destructor may run here.
    let handle = handles().lock().remove(&dict.id());
    drop(handle);
}

/// `DictError` as what the Elixir side expects: an `{:error, atom}` result
/// for the outcomes a caller handles, a raised `%Py.Error{}` for the rest.
fn dict_error<'a>(env: Env<'a>, err: DictError) -> NifResult<Term<'a>> {
    let reason = match err {
        DictError::Full => atoms::full(),
        DictError::Exists | DictError::NameTaken(_) => atoms::exists(),
        DictError::Conflict => atoms::conflict(),
        DictError::Unstorable(why) => {
            let info = ErrorInfo::new(ErrorKind::Conversion, why);
            return Ok(encode_error(env, &info));
        }
        DictError::NotInteger(_) => {
            let info = ErrorInfo::new(ErrorKind::NotInteger, err.to_string());
            return Ok(encode_error(env, &info));
        }
        DictError::Destroyed => return Err(raise(ErrorKind::Destroyed, err.to_string())),
    };
    Ok((atoms::error(), reason).encode(env))
}

fn key<'b>(key: &'b Binary<'_>) -> NifResult<&'b str> {
    std::str::from_utf8(key.as_slice()).map_err(|_| rustler::Error::BadArg)
}

/// `%Py.SharedDict{ref: handle, id: id, name: name | nil}`.
pub(super) fn handle_term<'a>(env: Env<'a>, handle: &ResourceArc<DictResource>) -> Term<'a> {
    let name = match handle.dict.name() {
        Some(name) => name.encode(env),
        None => atoms::nil().encode(env),
    };
    let pairs = [
        (
            atoms::__struct__().encode(env),
            atoms::py_shared_dict().encode(env),
        ),
        (atoms::ref_().encode(env), handle.encode(env)),
        (atoms::id().encode(env), handle.dict.id().encode(env)),
        (atoms::name().encode(env), name),
    ];
    Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| handle.encode(env))
}

fn encode_stored<'a>(env: Env<'a>, stored: &Stored) -> Term<'a> {
    match stored {
        Stored::Plain(v) => encode(env, v),
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

fn too_big_for_scheduler(stored: &Stored, dirty: bool) -> bool {
    match stored {
        Stored::Plain(v) => !dirty && v.size_up_to(SCHEDULER_NODES) > SCHEDULER_NODES,
        Stored::Pickled { data, .. } => {
            !dirty && data.len() / crate::limits::BINARY_BYTES_PER_NODE > SCHEDULER_NODES
        }
    }
}

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

#[rustler::nif]
fn shared_dict_new<'a>(
    env: Env<'a>,
    name: Option<String>,
    max_entries: Option<usize>,
    evict_lru: bool,
) -> NifResult<Term<'a>> {
    let named = name.is_some();
    let opts = DictOptions {
        name,
        bounds: Bounds {
            max_entries,
            evict_lru,
        },
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

/// The one handle of `dict`, made now if it has none (a dict made by
/// Python has no handle until the BEAM first looks it up).
fn handle_of(dict: Arc<SharedDict>) -> Option<ResourceArc<DictResource>> {
    let mut handles = handles().lock();
    if let Some(handle) = handles.get(&dict.id()) {
        return Some(handle.clone());
    }
    let handle = make_handle(&dict, None).ok()?;
    handles.insert(dict.id(), handle.clone());
    Some(handle)
}

/// A new resource for `dict`, listening to its events.
fn make_handle(
    dict: &Arc<SharedDict>,
    owner: Option<LocalPid>,
) -> Result<ResourceArc<DictResource>, DictError> {
    let beam = Arc::new(BeamSide {
        id: dict.id(),
        subscribers: Mutex::new(Vec::new()),
        has_subscribers: AtomicBool::new(false),
        waiters: Mutex::new(HashMap::new()),
        monitored: Mutex::new(HashSet::new()),
    });
    dict.listen(beam.clone())?;
    Ok(ResourceArc::new(DictResource {
        dict: dict.clone(),
        owner,
        beam,
    }))
}

#[rustler::nif]
fn shared_dict_lookup(env: Env<'_>, name: String) -> Term<'_> {
    match SharedDict::lookup(&name).and_then(handle_of) {
        Some(handle) => (atoms::ok(), handle_term(env, &handle)).encode(env),
        None => atoms::error().encode(env),
    }
}

fn get<'a>(env: Env<'a>, sd: &DictResource, k: Binary<'a>, dirty: bool) -> NifResult<Term<'a>> {
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
fn shared_dict_get<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    get(env, &sd, k, false)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_get_dirty<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    get(env, &sd, k, true)
}

fn put<'a>(
    env: Env<'a>,
    sd: &DictResource,
    k: Binary<'a>,
    value: Term<'a>,
    ttl: Option<u64>,
    cond: Term<'a>,
    budget: Option<usize>,
) -> NifResult<Term<'a>> {
    let key = key(&k)?;
    let cond = if cond == atoms::always().encode(env) {
        Condition::Always
    } else if cond == atoms::new().encode(env) {
        Condition::Absent
    } else if cond == atoms::absent().encode(env) {
        Condition::Version(None)
    } else {
        Condition::Version(Some(cond.decode::<u64>()?))
    };
    let stored = match decode_stored(value, budget) {
        Ok(stored) => stored,
        Err(DecodeError::OverBudget) => return Ok(atoms::dirty().encode(env)),
        Err(DecodeError::Convert(e)) => {
            return Ok(encode_error(
                env,
                &ErrorInfo::new(ErrorKind::Conversion, e.0),
            ))
        }
    };
    let expiry = match (ttl, cond) {
        (Some(ms), _) => {
            crate::shared_dict::Expiry::At(crate::shared_dict::now_ms().saturating_add(ms))
        }
        (None, Condition::Version(_)) => crate::shared_dict::Expiry::Keep,
        (None, _) => crate::shared_dict::Expiry::Never,
    };
    match sd
        .dict
        .put_with(key, stored, expiry, cond, crate::shared_dict::now_ms())
    {
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
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
    value: Term<'a>,
    ttl: Option<u64>,
    cond: Term<'a>,
) -> NifResult<Term<'a>> {
    put(env, &sd, k, value, ttl, cond, Some(SCHEDULER_NODES))
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

/// `{:ok, value} | :error`.
#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_take<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    match sd.dict.take(key(&k)?) {
        Ok(Some(item)) => Ok((atoms::ok(), encode_stored(env, &item)).encode(env)),
        Ok(None) => Ok(atoms::error().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif]
fn shared_dict_delete<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    // The removed value is dropped here: a big one is only a pointer away
    // from being freed, and deep ones are freed without recursion.
    match sd.dict.take(key(&k)?) {
        Ok(_) => Ok(atoms::ok().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_keys(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    match sd.dict.keys() {
        Ok(keys) => Ok(keys.iter().map(|k| &**k).collect::<Vec<&str>>().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_to_map(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
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

// Dirty: counting subtracts the keys expired but not yet swept, which
// right after a mass expiry can be many.
#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_size(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    match sd.dict.len() {
        Ok(n) => Ok(n.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

/// `{:ok, integer} | {:error, {:not_integer, message, nil}}`.
#[rustler::nif]
fn shared_dict_incr<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
    by: i64,
) -> NifResult<Term<'a>> {
    match sd.dict.incr(key(&k)?, by) {
        Ok(v) => Ok((atoms::ok(), encode(env, &v)).encode(env)),
        Err(err) => dict_error(env, err),
    }
}

/// Milliseconds left, `:infinity` or `nil`.
#[rustler::nif]
fn shared_dict_ttl<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    match sd.dict.ttl(key(&k)?) {
        Ok(Some(Ttl::Ms(ms))) => Ok(ms.encode(env)),
        Ok(Some(Ttl::Infinity)) => Ok(atoms::infinity().encode(env)),
        Ok(None) => Ok(atoms::nil().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif]
fn shared_dict_expire<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
    ms: u64,
) -> NifResult<Term<'a>> {
    match sd.dict.expire(key(&k)?, ms) {
        Ok(found) => Ok(found.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif]
fn shared_dict_persist<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    match sd.dict.persist(key(&k)?) {
        Ok(found) => Ok(found.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_clear(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    match sd.dict.clear() {
        Ok(_) => Ok(atoms::ok().encode(env)),
        Err(err) => dict_error(env, err),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_destroy(sd: ResourceArc<DictResource>) -> Atom {
    destroy(&sd.dict);
    atoms::ok()
}

// Dirty: see `shared_dict_size`.
#[rustler::nif(schedule = "DirtyCpu")]
fn shared_dict_stats(env: Env<'_>, sd: ResourceArc<DictResource>) -> NifResult<Term<'_>> {
    match sd.dict.stats() {
        Ok(stats) => Ok(stats.encode(env)),
        Err(err) => dict_error(env, err),
    }
}

// ── Events ──────────────────────────────────────────────────────────────

fn events_mask(events: &[Atom]) -> u8 {
    events.iter().fold(0, |mask, e| {
        mask | if *e == atoms::put() {
            1
        } else if *e == atoms::delete() {
            2
        } else if *e == atoms::expire() {
            4
        } else {
            0
        }
    })
}

/// Subscribes the caller to `events` (`:put`, `:delete`, `:expire`).
#[rustler::nif]
fn shared_dict_subscribe(
    env: Env<'_>,
    sd: ResourceArc<DictResource>,
    events: Vec<Atom>,
) -> NifResult<Term<'_>> {
    if sd.dict.is_destroyed() {
        return dict_error(env, DictError::Destroyed);
    }
    let pid = env.pid();
    let mask = events_mask(&events);
    if !DictResource::monitor(&sd, env, pid) {
        return Ok(atoms::ok().encode(env));
    }
    let mut subs = sd.beam.subscribers.lock();
    match subs.iter_mut().find(|(p, _)| *p == pid) {
        Some((_, m)) => *m |= mask,
        None => subs.push((pid, mask)),
    }
    sd.beam.has_subscribers.store(true, Ordering::Release);
    Ok(atoms::ok().encode(env))
}

/// Unsubscribes the caller from `events` (all of them for `nil`).
#[rustler::nif]
fn shared_dict_unsubscribe(
    env: Env<'_>,
    sd: ResourceArc<DictResource>,
    events: Option<Vec<Atom>>,
) -> Atom {
    let pid = env.pid();
    let drop_mask = events.map_or(u8::MAX, |e| events_mask(&e));
    let mut subs = sd.beam.subscribers.lock();
    for (p, m) in subs.iter_mut() {
        if *p == pid {
            *m &= !drop_mask;
        }
    }
    subs.retain(|(_, m)| *m != 0);
    sd.beam
        .has_subscribers
        .store(!subs.is_empty(), Ordering::Release);
    atoms::ok()
}

/// Drops subscribers that could not be sent to (dead).
pub(super) fn drop_subscribers(handle: &DictResource, dead: &[LocalPid]) {
    let mut subs = handle.beam.subscribers.lock();
    subs.retain(|(p, _)| !dead.contains(p));
    handle
        .beam
        .has_subscribers
        .store(!subs.is_empty(), Ordering::Release);
}

// ── Per-key locks ───────────────────────────────────────────────────────

/// Takes `key`'s lock for the caller: `:ok`, or `:wait` when another holds
/// it (the caller is then sent `{:"$py_shared_dict_unlocked", id, key}`
/// when it is released, and tries again). Never blocks.
#[rustler::nif]
fn shared_dict_lock<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    let key = key(&k)?;
    let pid = env.pid();
    let holder = beam_holder(&pid);
    // Registered under the waiters' lock, so a release between the attempt
    // and the registration still wakes this caller.
    let mut waiters = sd.beam.waiters.lock();
    match sd.dict.try_lock(key, holder) {
        Ok(Ok(())) => {
            drop(waiters);
            if !DictResource::monitor(&sd, env, pid) {
                // Exiting: do not keep a lock nobody will release.
                sd.dict.release_all(holder);
            }
            Ok(atoms::ok().encode(env))
        }
        Ok(Err(_other)) => {
            let list = waiters.entry(key.to_owned()).or_default();
            if !list.contains(&pid) {
                list.push(pid);
            }
            Ok(atoms::wait().encode(env))
        }
        Err(err) => {
            drop(waiters);
            dict_error(env, err)
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
    let pid = env.pid();
    let mut waiters = sd.beam.waiters.lock();
    if let Some(list) = waiters.get_mut(key) {
        list.retain(|p| *p != pid);
        if list.is_empty() {
            waiters.remove(key);
        }
    }
    Ok(atoms::ok())
}

/// Releases `key`'s lock if the caller holds it: `true`, else `false`.
#[rustler::nif]
fn shared_dict_unlock<'a>(
    env: Env<'a>,
    sd: ResourceArc<DictResource>,
    k: Binary<'a>,
) -> NifResult<Term<'a>> {
    let key = key(&k)?;
    let pid = env.pid();
    match sd.dict.unlock(key, beam_holder(&pid)) {
        Ok(released) => Ok(released.encode(env)),
        Err(err) => dict_error(env, err),
    }
}
