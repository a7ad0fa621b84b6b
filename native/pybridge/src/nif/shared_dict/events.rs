//! Subscriptions (`subscribe/2`, `unsubscribe/2`) and the thread that
//! delivers events and lock releases to BEAM processes (`py-dict-events`).
//!
//! Events happen on schedulers, Python threads and the sweeper; a message
//! can only be sent from a scheduler through the caller's env, and from any
//! other thread through an env of its own. So every event is handed to this
//! one thread through a channel, which keeps a writer's cost to a push and
//! delivers each dict's events in the order they were raised. A subscriber
//! the message cannot reach (it died) is dropped.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::thread;

use crossbeam_channel::{unbounded, Sender};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, OwnedEnv, ResourceArc, Term};

use crate::nif::atoms;
use crate::shared_dict::{DictError, EventKind};

use super::handle::{dict_error, handle_term, handles, DictResource};

pub(super) enum Message {
    /// Dict id, what happened, key, the subscribers to tell.
    Event(u64, EventKind, String, Vec<LocalPid>),
    /// Dict id, key, the processes waiting for its lock.
    Unlocked(u64, String, Vec<LocalPid>),
}

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
        Message::Unlocked(id, key, pids) => {
            for pid in pids {
                let _ = env.send_and_clear(&pid, |env| {
                    (atoms::py_shared_dict_unlocked(), id, key.as_str()).encode(env)
                });
            }
        }
    }
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
