//! The thread that delivers SharedDict events to BEAM processes
//! (`py-dict-events`).
//!
//! Events happen on schedulers, Python threads and the sweeper; a message
//! can only be sent from a scheduler through the caller's env, and from any
//! other thread through an env of its own. So every event is handed to this
//! one thread through a channel, which keeps a writer's cost to a push and
//! delivers each dict's events in the order they were raised. A subscriber
//! the message cannot reach (it died) is dropped.

use std::sync::OnceLock;
use std::thread;

use crossbeam_channel::{unbounded, Sender};
use rustler::{Encoder, LocalPid, OwnedEnv};

use crate::shared_dict::EventKind;

use super::atoms;
use super::shared_dict::{drop_subscribers, handle_term, handles};

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
