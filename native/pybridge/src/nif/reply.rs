//! Replies: how a worker's [`Outcome`] gets back to the BEAM process that
//! made the call — handed straight back to a submitter still waiting in the
//! NIF, or sent as a message `{tag, result}`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Encoder, Env, LocalPid, Term};

use crate::callback::Slot;
use crate::context::{BatchEnd, ErrorInfo, ErrorKind, Outcome, Reply, Timing};
use crate::convert::Value;
use crate::limits::{INLINE_NODES, INLINE_WAIT, MESSAGE_ENV_POOL};
use crate::runtime;

use super::atoms;
use super::error::encode_error;
use super::term::encode;

const WAITING: u8 = 0;
const DELIVERED: u8 = 1;
const GAVE_UP: u8 = 2;
const REDIRECTED: u8 = 3;
/// The reply went by message (terminal: never waited for inline again).
const MESSAGED: u8 = 4;
/// A callback request is handed to the waiting NIF instead of a message
/// (the NIF has stopped waiting, as after REDIRECTED).
const REQUESTED: u8 = 5;

/// A result handed straight back to a submitter that is still waiting in
/// the NIF: no message, no second wake-up.
///
/// A callback the call makes while the NIF waits is handed to that NIF too
/// ([`Inline::offer`]: no message, no receive, no wake-up); the NIF returns
/// it for its caller to run. Any message the call sends (a callback request
/// made while nobody waits, output) stops the wait instead
/// ([`Inline::redirect`]), so while the state is WAITING no message of the
/// call is on its way or unread. The caller answering a callback re-arms
/// the wait ([`Inline::rearm`], `callback_reply_inline`), so the call's
/// next callback, or its result, comes back inline to the NIF that
/// answered.
pub(super) struct Inline {
    /// WAITING → DELIVERED, GAVE_UP, REDIRECTED, REQUESTED or MESSAGED;
    /// REDIRECTED, REQUESTED or GAVE_UP → WAITING again when re-armed.
    /// Acquire/Release (AcqRel to change it): the winner of the transition
    /// sends the reply.
    state: AtomicU8,
    outcome: Mutex<Option<(Outcome, Timing)>>,
    fallback: Mutex<Option<BeamReply>>,
    /// The callback request of state REQUESTED (written under its lock
    /// together with the transition, so the NIF that sees the state finds it).
    request: Mutex<Option<Request>>,
    /// Where the call's thread made its last callback, asked before a
    /// re-armed wait: when it shares the waiting thread's core, spinning
    /// would only take the core from it. Recorded at each callback (the
    /// context's hint of its home worker is recorded once per call, stale
    /// in a call that calls back in a long loop while the threads move).
    worker_cpu: runtime::CpuHint,
}

struct InlineReply(Arc<Inline>);

impl Reply for InlineReply {
    fn send(self: Box<Self>, outcome: Outcome, timing: Timing) {
        let inline = self.0;
        if outcome_nodes(&outcome) <= INLINE_NODES {
            *inline.outcome.lock() = Some((outcome, timing));
            if inline
                .state
                .compare_exchange(WAITING, DELIVERED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
            // The submitter stopped waiting: reply by message after all.
            inline.state.store(MESSAGED, Ordering::Release);
            let outcome = inline.outcome.lock().take();
            let fallback = inline.fallback.lock().take();
            if let (Some((outcome, timing)), Some(reply)) = (outcome, fallback) {
                Box::new(reply).send(outcome, timing);
            }
        } else {
            inline.state.store(MESSAGED, Ordering::Release);
            if let Some(reply) = inline.fallback.lock().take() {
                Box::new(reply).send(outcome, timing);
            }
        }
    }

    fn caller(&self) -> Option<Box<dyn crate::callback::Caller>> {
        // Nothing is sent yet (`erlang.self()` sends nothing at all): the
        // caller keeps waiting; a request is offered to it, and a message
        // stops its wait once sent (`CallCaller`).
        // The tag is copied only when a message is sent.
        self.0.fallback.lock().as_ref().map(|reply| {
            Box::new(super::callbacks::CallCaller::inline(
                reply.to.clone(),
                self.0.clone(),
            )) as Box<dyn crate::callback::Caller>
        })
    }
}

impl Inline {
    pub(super) fn new() -> Arc<Inline> {
        Arc::new(Inline {
            state: AtomicU8::new(WAITING),
            outcome: Mutex::new(None),
            fallback: Mutex::new(None),
            request: Mutex::new(None),
            worker_cpu: runtime::CpuHint::default(),
        })
    }

    /// The reply a worker answers through: inline while the submitter
    /// waits, else by `message`.
    pub(super) fn reply_or(self: &Arc<Self>, message: BeamReply) -> Box<dyn Reply> {
        *self.fallback.lock() = Some(message);
        Box::new(InlineReply(self.clone()))
    }

    /// `f` of the env and tag of the message reply, while the call has not
    /// replied (None after).
    pub(super) fn with_fallback<T>(&self, f: impl FnOnce(&OwnedEnv, &SavedTerm) -> T) -> Option<T> {
        self.fallback
            .lock()
            .as_ref()
            .map(|reply| f(&reply.env, &reply.tag))
    }

    /// Stops a waiting submitter (or callback answerer) waiting: a message
    /// for the call (a callback request, output) is on its way.
    pub(super) fn redirect(&self) {
        let _ =
            self.state
                .compare_exchange(WAITING, REDIRECTED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Records the CPU of the call's thread as it makes a callback.
    pub(super) fn record_worker_cpu(&self) {
        self.worker_cpu.record();
    }

    /// Hands the callback request to the NIF waiting for the call, if one
    /// is; else gives it back (send it by message).
    pub(super) fn offer(&self, request: Request) -> Result<(), Request> {
        let mut slot = self.request.lock();
        match self
            .state
            .compare_exchange(WAITING, REQUESTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                *slot = Some(request);
                Ok(())
            }
            Err(_) => Err(request),
        }
    }

    /// Waits for the outcome again (the caller is answering a callback the
    /// call waits on, so the call cannot have replied yet, unless it gave
    /// up on the callback). False when the reply went by message already, or
    /// when the call's thread shares this thread's core.
    pub(super) fn rearm(&self) -> bool {
        if self.worker_cpu.is_mine() {
            return false;
        }
        [REDIRECTED, REQUESTED, GAVE_UP].into_iter().any(|from| {
            self.state
                .compare_exchange(from, WAITING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// Waits up to [`INLINE_WAIT`] for the outcome or a callback request.
    pub(super) fn wait(&self) -> Waited {
        let settled = runtime::poll_for(INLINE_WAIT, || match self.state.load(Ordering::Acquire) {
            WAITING => None,
            state => Some(state),
        });
        let state = match settled {
            Some(state) => state,
            None => match self.state.compare_exchange(
                WAITING,
                GAVE_UP,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => GAVE_UP,
                Err(state) => state,
            },
        };
        match state {
            DELIVERED => {
                // The message was not needed: keep its env for the next call.
                if let Some(reply) = self.fallback.lock().take() {
                    recycle_env(reply.env);
                }
                match self.outcome.lock().take() {
                    Some((outcome, timing)) => Waited::Done(outcome, timing),
                    None => Waited::Message,
                }
            }
            REQUESTED => match self.request.lock().take() {
                Some(request) => Waited::Request(request),
                None => Waited::Message,
            },
            _ => Waited::Message,
        }
    }
}

/// What a NIF waiting inline for a call got.
pub(super) enum Waited {
    /// The call's outcome.
    Done(Outcome, Timing),
    /// A callback the call makes: the NIF's caller must run it.
    Request(Request),
    /// Nothing yet: what comes next comes by message.
    Message,
}

/// A callback request handed to the waiting NIF (see [`Inline::offer`]).
pub(super) struct Request {
    pub(super) slot: Arc<Slot>,
    pub(super) name: String,
    pub(super) args: Vec<Value>,
    pub(super) remaining: Option<Duration>,
}

/// Size of an outcome, counting no further than [`INLINE_NODES`].
fn outcome_nodes(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Value(value) => value.size_up_to(INLINE_NODES),
        Outcome::Batch { items, .. } => {
            let mut nodes = 1;
            for item in items {
                nodes += item.size_up_to(INLINE_NODES);
                if nodes > INLINE_NODES {
                    break;
                }
            }
            nodes
        }
        Outcome::Done | Outcome::Error(_) | Outcome::Await(_) => 1,
    }
}

thread_local! {
    /// Cleared message envs, per scheduler thread: a call answered inline
    /// hands its unused env back here instead of freeing it.
    static ENV_POOL: std::cell::RefCell<Vec<OwnedEnv>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An env from the thread's pool that goes back to the pool of the thread
/// that drops it (a callback target's envs, kept for the thread's next call).
pub(super) struct PooledEnv(std::mem::ManuallyDrop<OwnedEnv>);

impl PooledEnv {
    pub(super) fn take() -> PooledEnv {
        PooledEnv(std::mem::ManuallyDrop::new(take_env()))
    }
}

impl std::ops::Deref for PooledEnv {
    type Target = OwnedEnv;
    fn deref(&self) -> &OwnedEnv {
        &self.0
    }
}

impl std::ops::DerefMut for PooledEnv {
    fn deref_mut(&mut self) -> &mut OwnedEnv {
        &mut self.0
    }
}

impl Drop for PooledEnv {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and `self.0` is never used again.
        let env = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        recycle_env(env);
    }
}

pub(super) fn take_env() -> OwnedEnv {
    ENV_POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default()
}

fn recycle_env(mut env: OwnedEnv) {
    env.clear();
    ENV_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < MESSAGE_ENV_POOL {
            pool.push(env);
        }
    });
}

/// Where a call's reply message goes: the process that submitted it, until
/// that process hands the call on with [`ReplyTo::redirect`] (a coalesced
/// call whose first caller stops waiting while others still wait for it).
pub(crate) struct ReplyTo(Mutex<Destination>);

struct Destination {
    pid: LocalPid,
    sent: bool,
}

impl ReplyTo {
    pub(super) fn new(pid: LocalPid) -> Arc<ReplyTo> {
        Arc::new(ReplyTo(Mutex::new(Destination { pid, sent: false })))
    }

    /// Where the reply goes now.
    pub(super) fn pid(&self) -> LocalPid {
        self.0.lock().pid
    }

    /// Sends the reply to `pid` instead. False when it has been sent
    /// already: it is then in the old destination's mailbox (the send
    /// happens under the same lock, so it is there by the time this
    /// returns).
    pub(super) fn redirect(&self, pid: LocalPid) -> bool {
        let mut destination = self.0.lock();
        if destination.sent {
            false
        } else {
            destination.pid = pid;
            true
        }
    }
}

/// Sends the outcome of a call to the BEAM process that made it.
pub(super) struct BeamReply {
    pub(super) to: Arc<ReplyTo>,
    pub(super) env: OwnedEnv,
    pub(super) tag: SavedTerm,
}

impl Reply for BeamReply {
    fn send(self: Box<Self>, outcome: Outcome, timing: Timing) {
        let BeamReply { to, mut env, tag } = *self;
        // Encoded before taking the lock, which `redirect/2` takes on a
        // normal scheduler: a big result must not hold it up.
        let message = env.run(|term_env| {
            let tag = tag.load(term_env);
            let result = encode_outcome(term_env, &outcome);
            env.save((tag, result, timing.queue_us, timing.run_us).encode(term_env))
        });
        // Held across the send, so a redirect either comes first or sees
        // `sent`.
        let mut destination = to.0.lock();
        destination.sent = true;
        // A dead caller cannot receive; nothing else to do then.
        let _ = env.send_and_clear(&destination.pid, |env| message.load(env));
    }

    fn caller(&self) -> Option<Box<dyn crate::callback::Caller>> {
        // Callbacks follow the reply when it is redirected.
        Some(Box::new(super::callbacks::CallCaller::new(
            self.to.clone(),
            &self.env,
            &self.tag,
        )))
    }
}

pub(super) fn encode_outcome<'a>(env: Env<'a>, outcome: &Outcome) -> Term<'a> {
    match outcome {
        Outcome::Value(value) => (atoms::ok(), encode(env, value)).encode(env),
        Outcome::Done => atoms::ok().encode(env),
        Outcome::Error(info) => encode_error(env, info),
        // `{:ok, {items, :more | :done | {:error, {kind, message, traceback}}}}`
        Outcome::Batch { items, end } => {
            let items: Vec<Term<'a>> = items.iter().map(|item| encode(env, item)).collect();
            let end = match end {
                BatchEnd::More => atoms::more().encode(env),
                BatchEnd::Done => atoms::done().encode(env),
                BatchEnd::Failed(info) => encode_error(env, info),
            };
            (atoms::ok(), (items, end)).encode(env)
        }
        // Never sent (the event loop replies instead); a bug if it were.
        Outcome::Await(_) => encode_error(
            env,
            &ErrorInfo::new(
                ErrorKind::Internal,
                "pybridge internal error (please report it): a coroutine reached a reply",
            ),
        ),
    }
}
