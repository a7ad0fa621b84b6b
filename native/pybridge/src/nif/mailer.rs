//! Sending a message to a BEAM process from any thread.
//!
//! `enif_send` without the env of the NIF call running on the thread (what
//! `OwnedEnv::send_and_clear` does) is only allowed on a thread the BEAM
//! does not manage: on a scheduler thread it is undefined, and rustler
//! panics. Worker threads send directly. Code that may also run on a
//! scheduler thread without that env at hand (a resource's destructor, a
//! caller giving up its turn, a wake-up passed on) builds the message there
//! and hands it to one sender thread of this module, which sends them in
//! the order they came: one thread's messages to a process keep their
//! order. [`prepare`] builds a message ahead of its send, for a send that
//! must happen under a lock the encoding should not hold.

use std::sync::OnceLock;

use crossbeam_channel::Sender;
use rustler::env::{OwnedEnv, SavedTerm, SendError};
use rustler::{Env, LocalPid, Term};

/// A message built on a scheduler thread, for the sender thread to send.
struct Letter {
    env: OwnedEnv,
    message: SavedTerm,
    to: LocalPid,
}

/// Sends the message `build` makes to `to`, from any thread. `env` is used
/// (and cleared) on a thread the BEAM does not manage, where the result
/// says whether `to` was alive. On a scheduler thread the message goes
/// through the sender thread, and `Ok` only means it was handed over (a
/// dead process's messages are dropped there).
pub(super) fn send<F>(env: &mut OwnedEnv, to: &LocalPid, build: F) -> Result<(), SendError>
where
    F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
{
    if !rustler::thread::is_scheduler_thread() {
        return env.send_and_clear(to, build);
    }
    let letter_env = OwnedEnv::new();
    let message = letter_env.run(|term_env| letter_env.save(build(term_env)));
    let letter = Letter {
        env: letter_env,
        message,
        to: *to,
    };
    sender()
        .ok_or(SendError)?
        .send(letter)
        .map_err(|_| SendError)
}

/// A message built ahead of its send ([`prepare`]): what must hold while
/// the message goes (a lock a BEAM scheduler may wait on) need not hold
/// while it is encoded.
pub(super) struct Prepared<'e> {
    /// None once sent.
    env: Option<PreparedEnv<'e>>,
    message: SavedTerm,
}

enum PreparedEnv<'e> {
    /// The caller's env, off a scheduler thread: sent from there, cleared.
    Reused(&'e mut OwnedEnv),
    /// A fresh env, on a scheduler thread: handed to the sender thread.
    Own(OwnedEnv),
}

/// Builds the message `build` makes, to send later with
/// [`Prepared::send`] (from the same thread). `env` holds it off a
/// scheduler thread; on one, a fresh env does, as [`send`] does.
pub(super) fn prepare<F>(env: &mut OwnedEnv, build: F) -> Prepared<'_>
where
    F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
{
    if !rustler::thread::is_scheduler_thread() {
        let message = env.run(|term_env| env.save(build(term_env)));
        return Prepared {
            env: Some(PreparedEnv::Reused(env)),
            message,
        };
    }
    let own = OwnedEnv::new();
    let message = own.run(|term_env| own.save(build(term_env)));
    Prepared {
        env: Some(PreparedEnv::Own(own)),
        message,
    }
}

impl Prepared<'_> {
    /// Sends the message to `to`, as [`send`] does.
    pub(super) fn send(mut self, to: &LocalPid) -> Result<(), SendError> {
        match self.env.take() {
            Some(PreparedEnv::Reused(env)) => {
                env.send_and_clear(to, |term_env| self.message.load(term_env))
            }
            Some(PreparedEnv::Own(env)) => send_saved(env, self.message.clone(), to),
            None => Err(SendError),
        }
    }
}

impl Drop for Prepared<'_> {
    /// A message not sent frees its terms at once.
    fn drop(&mut self) {
        if let Some(PreparedEnv::Reused(env)) = self.env.take() {
            env.clear();
        }
    }
}

/// Sends `message`, saved in `env` (with terms it was built from that
/// only `env` holds), to `to`, from any thread, as [`send`] does.
pub(super) fn send_saved(
    mut env: OwnedEnv,
    message: SavedTerm,
    to: &LocalPid,
) -> Result<(), SendError> {
    if !rustler::thread::is_scheduler_thread() {
        return env.send_and_clear(to, |env| message.load(env));
    }
    let letter = Letter {
        env,
        message,
        to: *to,
    };
    sender()
        .ok_or(SendError)?
        .send(letter)
        .map_err(|_| SendError)
}

/// The sender thread's queue, started on first use; `None` when the OS
/// would not start the thread.
fn sender() -> Option<&'static Sender<Letter>> {
    static SENDER: OnceLock<Option<Sender<Letter>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Letter>();
            std::thread::Builder::new()
                .name("py-mailer".into())
                .spawn(move || {
                    for Letter {
                        mut env,
                        message,
                        to,
                    } in rx
                    {
                        // A dead recipient cannot receive; nothing to do.
                        let _ = env.send_and_clear(&to, |env| message.load(env));
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}
