//! Subscriptions (`subscribe/2`, `unsubscribe/2`) and the thread that
//! delivers events and lock releases to BEAM processes (`py-dict-events`).
//!
//! Events happen on schedulers, Python threads and the sweeper; a message
//! can only be sent from a scheduler through the caller's env, and from any
//! other thread through an env of its own. So every event is handed to this
//! one thread through a channel, which keeps a writer's cost to a push and
//! delivers each dict's events in the order they were raised. A subscriber
//! the message cannot reach (it died) is dropped.
//!
//! Telemetry (`shared_dict_telemetry/1`): while switched on, every dict's
//! batches of events also go, through the same thread, to one BEAM process
//! (`Py.Telemetry.Relay`), which executes the `:telemetry` events.

use std::sync::OnceLock;
use std::thread;

use crossbeam_channel::{unbounded, Sender};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, OwnedEnv, ResourceArc, Term};

use parking_lot::Mutex;

use crate::nif::atoms;
use crate::shared_dict::callbacks::{self, Failure};
use crate::shared_dict::telemetry::{self, TapEvent};
use crate::shared_dict::{DictError, EventKind, SharedDict};

use super::handle::{dict_error, handle_term, handles, DictResource};

pub(super) enum Message {
    /// Dict id, what happened, key, the subscribers to tell.
    Event(u64, EventKind, String, Vec<LocalPid>),
    /// Dict id, key, the processes waiting for its lock.
    Unlocked(u64, String, Vec<LocalPid>),
    /// For telemetry: dict id, name, backend, the batch of events.
    Telemetry(u64, Option<String>, &'static str, Vec<TapEvent>),
    /// A Python callback failed: tell the process that logs it.
    CallbackFailed(Failure, LocalPid),
}

/// The process telemetry batches go to, while telemetry is on.
static SINK: Mutex<Option<LocalPid>> = Mutex::new(None);

fn sender() -> Option<&'static Sender<Message>> {
    static TX: OnceLock<Option<Sender<Message>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = unbounded::<Message>();
        let spawned = thread::Builder::new()
            .name("py-dict-events".into())
            .spawn(move || {
                let mut env = OwnedEnv::new();
                for message in rx {
                    deliver(&mut env, message);
                }
            });
        spawned.ok().map(|_| tx)
    })
    .as_ref()
}

/// Queues `message` for delivery.
pub(super) fn send(message: Message) {
    if let Some(tx) = sender() {
        let _ = tx.send(message);
    }
}

fn kind_atom(kind: EventKind) -> rustler::Atom {
    match kind {
        EventKind::Put => atoms::put(),
        EventKind::Delete => atoms::delete(),
        EventKind::Expire => atoms::expire(),
        EventKind::Access => atoms::access(),
    }
}

fn deliver(env: &mut OwnedEnv, message: Message) {
    match message {
        Message::Event(id, kind, key, pids) => {
            let Some(handle) = handles().lock().get(&id).cloned() else {
                return;
            };
            let mut dead = Vec::new();
            for pid in pids {
                let sent = env.send_and_clear(&pid, |env| {
                    (
                        atoms::shared_dict(),
                        handle_term(env, &handle),
                        kind_atom(kind),
                        key.as_str(),
                    )
                        .encode(env)
                });
                if sent.is_err() {
                    dead.push(pid);
                }
            }
            if !dead.is_empty() {
                drop_subscribers(&handle, &dead);
            }
        }
        Message::Telemetry(id, name, backend, batch) => {
            let Some(sink) = *SINK.lock() else {
                return;
            };
            let _ = env.send_and_clear(&sink, |env| {
                let name = match &name {
                    Some(name) => name.encode(env),
                    None => atoms::nil().encode(env),
                };
                let backend = Atom::from_str(env, backend)
                    .map_or_else(|_| backend.encode(env), |a| a.encode(env));
                let events: Vec<Term<'_>> = batch
                    .iter()
                    .map(|(kind, key)| {
                        let key = match key {
                            Some(key) => key.encode(env),
                            None => atoms::nil().encode(env),
                        };
                        (kind_atom(*kind), key).encode(env)
                    })
                    .collect();
                (
                    atoms::py_telemetry(),
                    atoms::shared_dict(),
                    id,
                    name,
                    backend,
                    events,
                )
                    .encode(env)
            });
        }
        Message::CallbackFailed(f, pid) => {
            let _ = env.send_and_clear(&pid, |env| {
                let reason = if f.timed_out {
                    atoms::timeout()
                } else {
                    atoms::error()
                };
                (
                    atoms::py_shared_dict_callback_failed(),
                    (f.dict.as_str(), f.callback, callbacks::event_name(f.event)),
                    (f.key.as_str(), reason, f.message.as_str()),
                )
                    .encode(env)
            });
        }
        Message::Unlocked(id, key, pids) => {
            for pid in pids {
                let _ = env.send_and_clear(&pid, |env| {
                    (atoms::py_shared_dict_unlocked(), id, key.as_str()).encode(env)
                });
            }
        }
    }
}

// ── Telemetry ───────────────────────────────────────────────────────────

fn tap(dict: &SharedDict, batch: Vec<TapEvent>) {
    send(Message::Telemetry(
        dict.id(),
        dict.name().map(str::to_owned),
        dict.backend_kind(),
        batch,
    ));
}

/// `true`: every dict's events go to the caller as
/// `{:py_telemetry, :shared_dict, id, name, backend, [{kind, key | nil}]}`;
/// `false`: to nobody (writes then pay one atomic load for telemetry).
#[rustler::nif]
fn shared_dict_telemetry(env: Env<'_>, on: bool) -> Atom {
    telemetry::install(Box::new(tap));
    *SINK.lock() = on.then(|| env.pid());
    telemetry::set_enabled(on);
    atoms::ok()
}

// ── Subscriptions ───────────────────────────────────────────────────────

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
    sd.subscribed(true);
    drop(subs);
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
    sd.subscribed(!subs.is_empty());
    atoms::ok()
}

/// Drops subscribers that could not be sent to (dead).
pub(super) fn drop_subscribers(handle: &DictResource, dead: &[LocalPid]) {
    let mut subs = handle.beam.subscribers.lock();
    subs.retain(|(p, _)| !dead.contains(p));
    handle.subscribed(!subs.is_empty());
}

// ── Python callbacks' failures ──────────────────────────────────────────

static LOGGER: parking_lot::Mutex<Option<LocalPid>> = parking_lot::Mutex::new(None);

/// Makes the caller the process told about every failed Python callback
/// (`Py.SharedDict.CallbackLog`, which logs them); replaces any earlier one.
#[rustler::nif]
fn shared_dict_callback_log(env: Env<'_>) -> Atom {
    *LOGGER.lock() = Some(env.pid());
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        callbacks::set_failure_sink(Box::new(|failure| {
            let logger = *LOGGER.lock();
            if let Some(pid) = logger {
                send(Message::CallbackFailed(failure, pid));
            }
        }))
    });
    atoms::ok()
}
