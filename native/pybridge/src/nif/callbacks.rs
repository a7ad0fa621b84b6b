//! Callbacks: Python asking the BEAM to run a registered function
//! (`erlang.call`), and `erlang.send`.
//!
//! A callback made during a call is the message `{tag, :callback, {slot,
//! name, args, remaining_ms}}` to the process waiting for that call (`tag` is the call's
//! reply tag, so `Py.Call`'s receive picks it out like the reply); one made
//! elsewhere is `{:"$pybridge_callback", {slot, name, args, :infinity}}` to a process of
//! the callback pool (`Py.Callback.Pool`, installed with
//! `callback_setup/1`). Either way the process runs the function and
//! answers with `callback_reply/2`:
//!
//! | answer                                  | Python sees                  |
//! |-----------------------------------------|------------------------------|
//! | `{:ok, value}`                          | the value                    |
//! | `{:raised, kind, reason, message}`      | `erlang.Error` and subclasses|
//! | `{:unknown, message}`                   | `erlang.UnknownFunction`     |
//! | `{:failed, message}`                    | `erlang.Error`               |
//!
//! The slot is a resource: if every process holding it lets go without
//! answering (it died, the message was dropped), its destructor answers
//! with a failure, so Python never waits for an answer that cannot come.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::callback::{self, Answer, Beam, Caller, SendError, Slot};
use crate::convert::Value;
use crate::limits::SCHEDULER_NODES;

use super::atoms;
use super::mailer;
use super::reply::ReplyTo;
use super::term::{decode, encode, DecodeError};

/// One callback's reply slot, held by the BEAM until it answers.
pub struct SlotResource(Arc<Slot>);

#[rustler::resource_impl]
impl rustler::Resource for SlotResource {}

impl Drop for SlotResource {
    fn drop(&mut self) {
        self.0.fulfil(Answer::Failed(
            "the BEAM process running the callback exited without answering".into(),
        ));
    }
}

/// `callback_reply/2` on a normal scheduler: decodes within
/// [`SCHEDULER_NODES`] and answers `:dirty` past it (then
/// `callback_reply_dirty/2` does it on a dirty scheduler).
#[rustler::nif]
fn callback_reply<'a>(
    env: Env<'a>,
    slot: ResourceArc<SlotResource>,
    answer: Term<'a>,
) -> NifResult<Term<'a>> {
    reply_with(env, &slot, answer, Some(SCHEDULER_NODES))
}

#[rustler::nif(schedule = "DirtyCpu")]
fn callback_reply_dirty<'a>(
    env: Env<'a>,
    slot: ResourceArc<SlotResource>,
    answer: Term<'a>,
) -> NifResult<Term<'a>> {
    reply_with(env, &slot, answer, None)
}

fn reply_with<'a>(
    env: Env<'a>,
    slot: &SlotResource,
    answer: Term<'a>,
    budget: Option<usize>,
) -> NifResult<Term<'a>> {
    let parts = rustler::types::tuple::get_tuple(answer)?;
    let text = |t: &Term<'a>| -> String {
        t.decode::<String>()
            .unwrap_or_else(|_| "(no description)".to_string())
    };
    let answer = match parts.as_slice() {
        [tag, value] if tag.decode::<Atom>()? == atoms::ok() => match decode(*value, budget) {
            Ok(v) => Answer::Value(v),
            Err(DecodeError::OverBudget) => return Ok(atoms::dirty().encode(env)),
            Err(DecodeError::Convert(e)) => Answer::Failed(format!(
                "the callback's result cannot cross to Python: {}",
                e.0
            )),
        },
        [tag, kind, reason, message] if tag.decode::<Atom>()? == atoms::raised() => {
            let reason = match decode(*reason, budget) {
                Ok(v) => v,
                Err(DecodeError::OverBudget) => return Ok(atoms::dirty().encode(env)),
                // A reason that cannot cross (a fun): the message describes it.
                Err(DecodeError::Convert(_)) => Value::None,
            };
            Answer::Raised {
                kind: kind.atom_to_string()?,
                reason,
                message: text(message),
            }
        }
        [tag, message] if tag.decode::<Atom>()? == atoms::unknown() => {
            Answer::Unknown(text(message))
        }
        [tag, message] if tag.decode::<Atom>()? == atoms::failed() => Answer::Failed(text(message)),
        _ => return Err(rustler::Error::BadArg),
    };
    slot.0.fulfil(answer);
    Ok(atoms::ok().encode(env))
}

/// `callback_setup(pids)`: the callback pool's processes (requests from
/// threads no call waits on go to them), or `[]` when the application
/// stops (such requests then fail at once).
#[rustler::nif]
fn callback_setup(pids: Vec<LocalPid>) -> Atom {
    if pids.is_empty() {
        callback::install(None);
    } else {
        callback::install(Some(Arc::new(Pool { pids })));
    }
    atoms::ok()
}

/// The BEAM's callback pool, and `erlang.send`.
struct Pool {
    pids: Vec<LocalPid>,
}

impl Beam for Pool {
    fn request(
        &self,
        key: u64,
        slot: &Arc<Slot>,
        name: &str,
        args: Vec<Value>,
    ) -> Result<(), String> {
        let index = usize::try_from(key % self.pids.len().max(1) as u64).unwrap_or(0);
        let pid = self
            .pids
            .get(index)
            .ok_or_else(|| "the callback pool has no process".to_string())?;
        mailer::send(&mut OwnedEnv::new(), pid, |env| {
            let request = (
                ResourceArc::new(SlotResource(slot.clone())),
                name,
                encode_args(env, &args),
                atoms::infinity(),
            );
            (atoms::pybridge_callback(), request).encode(env)
        })
        .map_err(|_| {
            "the callback pool's process is not running (the BEAM is shutting down?)".to_string()
        })
    }

    fn send(&self, pid: &Value, message: &Value) -> Result<(), SendError> {
        send_to(pid, message)
    }
}

fn encode_args<'a>(env: Env<'a>, args: &[Value]) -> Term<'a> {
    let terms: Vec<Term<'a>> = args.iter().map(|a| encode(env, a)).collect();
    terms.encode(env)
}

/// Sends `message` to `pid` (a [`Value::Pid`] of this node).
fn send_to(pid: &Value, message: &Value) -> Result<(), SendError> {
    let Value::Pid(etf) = pid else {
        return Err(SendError::Other("not a pid".into()));
    };
    let mut env = OwnedEnv::new();
    let local = env.run(|env| {
        env.binary_to_term(etf)
            .and_then(|(term, _)| term.decode::<LocalPid>().ok())
    });
    let Some(local) = local else {
        return Err(SendError::Other(
            "the pid is not a process of this node".into(),
        ));
    };
    mailer::send(&mut env, &local, |env| encode(env, message)).map_err(|_| SendError::NoProcess)
}

/// The process waiting for a call, as a callback target (made by the
/// call's reply, see `nif/reply.rs`).
pub(super) struct CallCaller {
    /// Where the call's reply goes: the caller, or whoever it handed the
    /// call to (a coalesced call's flight); read at each message.
    to: Arc<ReplyTo>,
    /// Holds the copy of the call's reply tag.
    tag_env: OwnedEnv,
    tag: SavedTerm,
    /// Reused for each request message.
    message_env: Mutex<OwnedEnv>,
}

impl CallCaller {
    /// A target for the call answered to `to` under `tag` (saved in `env`).
    pub(super) fn new(to: Arc<ReplyTo>, env: &OwnedEnv, tag: &SavedTerm) -> CallCaller {
        let tag_env = OwnedEnv::new();
        let copy = env.run(|env| tag_env.save(tag.load(env)));
        CallCaller {
            to,
            tag_env,
            tag: copy,
            message_env: Mutex::new(OwnedEnv::new()),
        }
    }
}

impl Caller for CallCaller {
    fn request(
        &self,
        slot: &Arc<Slot>,
        name: &str,
        args: Vec<Value>,
        remaining: Option<Duration>,
    ) -> Result<(), String> {
        let mut env = self.message_env.lock();
        mailer::send(&mut env, &self.to.pid(), |env| {
            let tag = self
                .tag_env
                .run(|tag_env| self.tag.load(tag_env).in_env(env));
            let remaining = match remaining {
                Some(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX).encode(env),
                None => atoms::infinity().encode(env),
            };
            let request = (
                ResourceArc::new(SlotResource(slot.clone())),
                name,
                encode_args(env, &args),
                remaining,
            );
            (tag, atoms::callback(), request).encode(env)
        })
        .map_err(|_| "the BEAM process that made the call is gone".to_string())
    }

    fn notify(&self, kind: &str, payload: &Value) -> Result<(), String> {
        let mut env = self.message_env.lock();
        mailer::send(&mut env, &self.to.pid(), |env| {
            let tag = self
                .tag_env
                .run(|tag_env| self.tag.load(tag_env).in_env(env));
            let kind = match Atom::from_str(env, kind) {
                Ok(atom) => atom.encode(env),
                Err(_) => atoms::nil().encode(env),
            };
            (tag, kind, encode(env, payload)).encode(env)
        })
        .map_err(|_| "the BEAM process that made the call is gone".to_string())
    }

    fn pid(&self) -> Value {
        let mut env = OwnedEnv::new();
        let etf = env.run(|env| self.to.pid().encode(env).to_binary().as_slice().to_vec());
        env.clear();
        Value::Pid(etf)
    }
}
