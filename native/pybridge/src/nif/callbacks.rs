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
//!
//! A callback made while the calling process waits in a NIF for the call
//! (the submitting NIF, or the one answering the call's previous callback)
//! is not sent: it is handed to that NIF, which returns it to be run (see
//! [`Inline`]). The process waiting for a call answers its callbacks with
//! `callback_reply_inline/2`, which then waits a moment for the call's
//! result or next callback, as the submitting NIF does: a call whose Python
//! code finishes soon after its callback answers inline, without a reply
//! message and the wake-up that comes with it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::callback::{self, Answer, Beam, Caller, Gate, SendError, Slot};
use crate::convert::Value;
use crate::limits::SCHEDULER_NODES;

use super::atoms;
use super::mailer;
use super::reply::{encode_outcome, Inline, PooledEnv, ReplyTo, Request, Waited};
use super::term::{decode, encode, DecodeError};

/// One callback's reply slot, held by the BEAM until it answers, and the
/// inline wait of the call that made it (None from the callback pool).
pub struct SlotResource {
    slot: Arc<Slot>,
    inline: Option<Arc<Inline>>,
}

#[rustler::resource_impl]
impl rustler::Resource for SlotResource {}

impl Drop for SlotResource {
    fn drop(&mut self) {
        if !self.slot.is_ready() {
            self.slot.fulfil(Answer::Failed(
                "the BEAM process running the callback exited without answering".into(),
            ));
        }
    }
}

/// `callback_reply/2` on a normal scheduler: decodes within
/// [`SCHEDULER_NODES`] and answers `:dirty` past it (then
/// `callback_reply_dirty/2` does it on a dirty scheduler).
#[rustler::nif]
fn callback_reply(slot: ResourceArc<SlotResource>, answer: Term<'_>) -> NifResult<Atom> {
    fulfil(&slot, answer, Some(SCHEDULER_NODES))
}

#[rustler::nif(schedule = "DirtyCpu")]
fn callback_reply_dirty(slot: ResourceArc<SlotResource>, answer: Term<'_>) -> NifResult<Atom> {
    fulfil(&slot, answer, None)
}

/// Answers the slot: `:ok`, or `:dirty` when the answer is too big to
/// decode within `budget`.
fn fulfil(slot: &SlotResource, answer: Term<'_>, budget: Option<usize>) -> NifResult<Atom> {
    Ok(match decode_answer(answer, budget)? {
        Some(answer) => {
            slot.slot.fulfil(answer);
            atoms::ok()
        }
        None => atoms::dirty(),
    })
}

/// `callback_reply_inline/2`: as `callback_reply/2`, by the process waiting
/// for the call that made the callback; then waits up to
/// [`crate::limits::INLINE_WAIT`] for that call's result and returns it as
/// `{:done, result, queue_us, run_us}`, or its next callback as
/// `{:callback, request}` (run it, as a request message), or `:ok` when
/// what comes next comes by message (the call wrote output, or is still
/// running).
#[rustler::nif]
fn callback_reply_inline<'a>(
    env: Env<'a>,
    slot: ResourceArc<SlotResource>,
    answer: Term<'a>,
) -> NifResult<Term<'a>> {
    let Some(answer) = decode_answer(answer, Some(SCHEDULER_NODES))? else {
        return Ok(atoms::dirty().encode(env));
    };
    // Re-armed before the answer wakes the call's thread, which cannot have
    // replied meanwhile: it waits for this answer.
    let armed = slot.inline.as_ref().filter(|inline| inline.rearm());
    slot.slot.fulfil(answer);
    let Some(inline) = armed else {
        return Ok(atoms::ok().encode(env));
    };
    Ok(match wait_inline(env, inline) {
        Inlined::Done(done) => done,
        Inlined::Request(request) => (atoms::callback(), request).encode(env),
        Inlined::Message => atoms::ok().encode(env),
    })
}

/// What a NIF waiting inline for a call got, encoded for its caller.
pub(super) enum Inlined<'a> {
    /// The call's result: `{:done, result, queue_us, run_us}`.
    Done(Term<'a>),
    /// The call's next callback, as `Py.Callback.run/1` takes it.
    Request(Term<'a>),
    /// Nothing yet: what comes next comes by message.
    Message,
}

/// Waits inline for the call (see [`Inline::wait`]) and encodes what came:
/// the NIF that submitted the call and the one answering its callback
/// wrap it each in their own reply.
pub(super) fn wait_inline<'a>(env: Env<'a>, inline: &Arc<Inline>) -> Inlined<'a> {
    match inline.wait() {
        Waited::Done(outcome, timing) => {
            let result = encode_outcome(env, &outcome);
            Inlined::Done((atoms::done(), result, timing.queue_us, timing.run_us).encode(env))
        }
        Waited::Request(request) => Inlined::Request(encode_request(env, Some(inline), request)),
        Waited::Message => Inlined::Message,
    }
}

/// A callback request as `Py.Callback.run/1` takes it: `{slot, name, args,
/// remaining_ms | :infinity}`; `inline` is the wait of the call that made
/// it (None from the pool).
fn encode_request<'a>(env: Env<'a>, inline: Option<&Arc<Inline>>, request: Request) -> Term<'a> {
    let Request {
        slot,
        name,
        args,
        remaining,
    } = request;
    encode_request_parts(env, inline, slot, &name, &args, remaining)
}

fn encode_request_parts<'a>(
    env: Env<'a>,
    inline: Option<&Arc<Inline>>,
    slot: Arc<Slot>,
    name: &str,
    args: &[Value],
    remaining: Option<Duration>,
) -> Term<'a> {
    let remaining = match remaining {
        Some(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX).encode(env),
        None => atoms::infinity().encode(env),
    };
    let slot = ResourceArc::new(SlotResource {
        slot,
        inline: inline.cloned(),
    });
    (slot, name, encode_args(env, args), remaining).encode(env)
}

/// The answer as Python will see it; None when it is too big to decode
/// within `budget` (answer on a dirty scheduler).
fn decode_answer(answer: Term<'_>, budget: Option<usize>) -> NifResult<Option<Answer>> {
    let parts = rustler::types::tuple::get_tuple(answer)?;
    let text = |t: &Term<'_>| -> String {
        t.decode::<String>()
            .unwrap_or_else(|_| "(no description)".to_string())
    };
    let answer = match parts.as_slice() {
        [tag, value] if tag.decode::<Atom>()? == atoms::ok() => match decode(*value, budget) {
            Ok(v) => Answer::Value(v),
            Err(DecodeError::OverBudget) => return Ok(None),
            Err(DecodeError::Convert(e)) => Answer::Failed(format!(
                "the callback's result cannot cross to Python: {}",
                e.0
            )),
        },
        [tag, kind, reason, message] if tag.decode::<Atom>()? == atoms::raised() => {
            let reason = match decode(*reason, budget) {
                Ok(v) => v,
                Err(DecodeError::OverBudget) => return Ok(None),
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
    Ok(Some(answer))
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
            let request = encode_request_parts(env, None, slot.clone(), name, &args, None);
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
    /// What sending a message takes, made at the first message: a call
    /// whose callbacks are all handed to its waiting caller (and which
    /// writes no output) never needs it.
    envs: Mutex<Option<MessageEnvs>>,
    /// The call's inline wait, when its caller waited in the NIF: a request
    /// is handed to a caller waiting there, and a message stops its wait
    /// (see [`Inline`]). Its fallback reply holds the call's tag until then.
    inline: Option<Arc<Inline>>,
}

/// The envs a [`CallCaller`] sends its messages with.
struct MessageEnvs {
    /// Holds the copy of the call's reply tag.
    tag_env: PooledEnv,
    tag: SavedTerm,
    /// Reused for each message.
    message_env: PooledEnv,
}

impl MessageEnvs {
    /// Copies the tag (saved in `env`).
    fn new(env: &OwnedEnv, tag: &SavedTerm) -> MessageEnvs {
        let tag_env = PooledEnv::take();
        let copy = env.run(|env| tag_env.save(tag.load(env)));
        MessageEnvs {
            tag_env,
            tag: copy,
            message_env: PooledEnv::take(),
        }
    }
}

impl CallCaller {
    /// A target for the call answered to `to` under `tag` (saved in `env`),
    /// its caller not waiting inline.
    pub(super) fn new(to: Arc<ReplyTo>, env: &OwnedEnv, tag: &SavedTerm) -> CallCaller {
        CallCaller {
            to,
            envs: Mutex::new(Some(MessageEnvs::new(env, tag))),
            inline: None,
        }
    }

    /// A target for a call whose caller waits inline: the tag is copied
    /// from the inline wait's fallback reply at the first message.
    pub(super) fn inline(to: Arc<ReplyTo>, inline: Arc<Inline>) -> CallCaller {
        CallCaller {
            to,
            envs: Mutex::new(None),
            inline: Some(inline),
        }
    }

    /// Sends `{tag, kind, payload}` to the caller through `gate`; then a
    /// caller waiting inline for the call's result must go and receive it.
    /// The message is built before the gate, which only sends it.
    fn send<F>(&self, gate: &Gate<'_>, build: F) -> Result<(), String>
    where
        F: for<'a> FnOnce(Env<'a>) -> (Term<'a>, Term<'a>),
    {
        let mut envs = self.envs.lock();
        if envs.is_none() {
            *envs = self
                .inline
                .as_ref()
                .and_then(|inline| inline.with_fallback(MessageEnvs::new));
        }
        let Some(MessageEnvs {
            tag_env,
            tag,
            message_env,
        }) = envs.as_mut()
        else {
            // The fallback goes only with the call's reply, after which
            // the call makes no callback.
            return Err("the call has already replied".to_string());
        };
        let message = mailer::prepare(message_env, |env| {
            let tag = tag_env.run(|tag_env| tag.load(tag_env).in_env(env));
            let (kind, payload) = build(env);
            (tag, kind, payload).encode(env)
        });
        gate.pass(|| {
            message
                .send(&self.to.pid())
                .map_err(|_| "the BEAM process that made the call is gone".to_string())?;
            if let Some(inline) = &self.inline {
                inline.redirect();
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(callback::CANCELLED.to_string()))
    }
}

impl Caller for CallCaller {
    fn request(
        &self,
        slot: &Arc<Slot>,
        name: &str,
        args: Vec<Value>,
        remaining: Option<Duration>,
        gate: &Gate<'_>,
    ) -> Result<(), String> {
        // The slot is cloned once: into the offered request, which a
        // failed offer hands back for the message.
        let (slot, args) = match &self.inline {
            Some(inline) => {
                inline.record_worker_cpu();
                let request = Request {
                    slot: slot.clone(),
                    name: name.to_owned(),
                    args,
                    remaining,
                };
                // Handed over only while the call is not cancelled, as a
                // message is sent.
                match gate.pass(|| inline.offer(request)) {
                    None => return Err(callback::CANCELLED.to_string()),
                    Some(Ok(())) => return Ok(()),
                    Some(Err(request)) => (request.slot, request.args),
                }
            }
            None => (slot.clone(), args),
        };
        self.send(gate, |env| {
            let request =
                encode_request_parts(env, self.inline.as_ref(), slot, name, &args, remaining);
            (atoms::callback().encode(env), request)
        })
    }

    fn notify(&self, kind: &str, payload: &Value, gate: &Gate<'_>) -> Result<(), String> {
        self.send(gate, |env| {
            let kind = match Atom::from_str(env, kind) {
                Ok(atom) => atom.encode(env),
                Err(_) => atoms::nil().encode(env),
            };
            (kind, encode(env, payload))
        })
    }

    fn pid(&self) -> Value {
        let mut env = OwnedEnv::new();
        let etf = env.run(|env| self.to.pid().encode(env).to_binary().as_slice().to_vec());
        env.clear();
        Value::Pid(etf)
    }
}
