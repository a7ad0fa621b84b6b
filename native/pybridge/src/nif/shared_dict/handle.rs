//! The handle of a dict on the BEAM side: the resource (one per dict, kept
//! in [`HANDLES`] until the dict is destroyed, so `lookup/1` returns the very
//! handle `new/1` did), the processes it monitors (owner, subscribers, lock
//! holders) and what their exit releases, and the helpers every NIF of the
//! dict shares.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rustler::sys::ErlNifPid;
use rustler::{Binary, Encoder, Env, LocalPid, Monitor, NifResult, ResourceArc, Term};

use crate::context::{ErrorInfo, ErrorKind};
use crate::nif::atoms;
use crate::nif::error::{encode_error, raise};
use crate::shared_dict::{DictError, EventKind, Holder, Item, Listener, SharedDict};

use super::events;

/// A dict handle (`%Py.SharedDict{ref: _}`).
pub struct DictResource {
    pub dict: Arc<SharedDict>,
    /// The process whose exit destroys an unnamed dict.
    owner: Option<LocalPid>,
    pub(super) beam: Arc<BeamSide>,
}

/// The dict's BEAM processes: subscribers and lock waiters, and the
/// processes the resource monitors (owner, subscribers, lock holders).
pub(super) struct BeamSide {
    id: u64,
    pub(super) subscribers: Mutex<Vec<(LocalPid, u8)>>,
    pub(super) has_subscribers: AtomicBool,
    /// Processes waiting for a key's lock, told when it is released.
    pub(super) waiters: Mutex<HashMap<String, Vec<LocalPid>>>,
    monitored: Mutex<HashSet<LocalPid>>,
}

pub(super) fn event_bit(kind: EventKind) -> u8 {
    match kind {
        EventKind::Put => 1,
        EventKind::Delete => 2,
        EventKind::Expire => 4,
        EventKind::Access => 0,
    }
}

impl Listener for BeamSide {
    fn event(&self, kind: EventKind, key: &str, _value: Option<&Item>) {
        if !self.has_subscribers.load(Ordering::Acquire) || kind == EventKind::Access {
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

    fn destroyed(&self) {
        // Dropped outside the lock: the resource's destructor may run here.
        let handle = handles().lock().remove(&self.id);
        drop(handle);
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
pub(super) fn beam_holder(pid: &LocalPid) -> Holder {
    // SAFETY: `ErlNifPid` is `repr(C)` with one field, an `ErlNifTerm`,
    // which is `repr(transparent)` over `usize`: the two have the same size
    // and layout, and every bit pattern is a valid `usize`.
    let term: usize = unsafe { std::mem::transmute::<ErlNifPid, usize>(*pid.as_c_arg()) };
    Holder::Beam(term as u64)
}

impl DictResource {
    /// Records whether any process is subscribed now (called with the
    /// subscribers' lock held, so the changes come in order): the dict
    /// hands this side its events only while one is.
    pub(super) fn subscribed(&self, any: bool) {
        if self.beam.has_subscribers.swap(any, Ordering::AcqRel) != any {
            self.dict.set_listening(any);
        }
    }

    /// Monitors `pid` (once), so its exit drops what it holds.
    pub(super) fn monitor(handle: &ResourceArc<DictResource>, env: Env<'_>, pid: LocalPid) -> bool {
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
            if self.dict.blocking() {
                // Closing waits for a write in flight (an fsync, or another
                // OS process's lock): never on this normal scheduler.
                let dict = self.dict.clone();
                let spawned = std::thread::Builder::new()
                    .name("py-dict-close".into())
                    .spawn(move || destroy(&dict));
                if spawned.is_err() {
                    destroy(&self.dict);
                }
            } else {
                destroy(&self.dict);
            }
        }
        {
            let mut subs = self.beam.subscribers.lock();
            subs.retain(|(p, _)| *p != pid);
            self.subscribed(!subs.is_empty());
        }
        for waiting in self.beam.waiters.lock().values_mut() {
            waiting.retain(|p| *p != pid);
        }
        self.dict.release_all(beam_holder(&pid));
    }
}

/// The one resource of each live dict, by dict id.
static HANDLES: OnceLock<Mutex<HashMap<u64, ResourceArc<DictResource>>>> = OnceLock::new();

pub(super) fn handles() -> &'static Mutex<HashMap<u64, ResourceArc<DictResource>>> {
    HANDLES.get_or_init(Default::default)
}

/// Destroys the dict; its handle leaves [`HANDLES`] through
/// [`Listener::destroyed`], whichever side destroys it.
pub(super) fn destroy(dict: &SharedDict) {
    dict.destroy();
}

/// `DictError` as what the Elixir side expects: an `{:error, atom}` result
/// for the outcomes a caller handles, a raised `%Py.Error{}` for the rest.
pub(super) fn dict_error<'a>(env: Env<'a>, err: DictError) -> NifResult<Term<'a>> {
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
        DictError::Backend(why) => {
            let info = ErrorInfo::new(ErrorKind::Backend, why);
            return Ok(encode_error(env, &info));
        }
        DictError::Destroyed => return Err(raise(ErrorKind::Destroyed, err.to_string())),
    };
    Ok((atoms::error(), reason).encode(env))
}

pub(super) fn key<'b>(key: &'b Binary<'_>) -> NifResult<&'b str> {
    std::str::from_utf8(key.as_slice()).map_err(|_| rustler::Error::BadArg)
}

/// `%Py.SharedDict{ref: handle, id: id, name: name | nil, io: boolean}`
/// (`io`: every operation goes through the dirty-IO NIF).
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
        (atoms::io().encode(env), handle.dict.blocking().encode(env)),
    ];
    Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| handle.encode(env))
}

/// The one handle of `dict`, made now if it has none (a dict made by
/// Python has no handle until the BEAM first looks it up).
pub(super) fn handle_of(dict: Arc<SharedDict>) -> Option<ResourceArc<DictResource>> {
    let mut handles = handles().lock();
    if let Some(handle) = handles.get(&dict.id()) {
        return Some(handle.clone());
    }
    let handle = make_handle(&dict, None).ok()?;
    handles.insert(dict.id(), handle.clone());
    Some(handle)
}

/// A new resource for `dict`, listening to its events.
pub(super) fn make_handle(
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
    // Idle until a process subscribes (`DictResource::subscribed`).
    dict.listen_idle(beam.clone())?;
    Ok(ResourceArc::new(DictResource {
        dict: dict.clone(),
        owner,
        beam,
    }))
}
