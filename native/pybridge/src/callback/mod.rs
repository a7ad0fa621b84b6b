//! Python → BEAM callbacks: `erlang.call("name", *args)` runs a function
//! registered on the BEAM side and hands its result back to Python.
//!
//! Where the request goes:
//!
//! * **During a call** (the thread runs a call a BEAM process waits on),
//!   to that very process: it is waiting in `Py.Call`'s receive anyway, and
//!   runs the function there, with its bindings and namespace. The worker
//!   records the call in a thread-local [`Frame`] while it runs; the request
//!   message is tagged like the call's reply.
//! * **Anywhere else** (a thread Python started itself, a finaliser, an
//!   asyncio loop), to the BEAM's supervised callback pool ([`Beam`]).
//!
//! The asking thread then releases the GIL and waits on a [`Slot`], which
//! the BEAM fills through a NIF. While a worker waits, its context counts
//! it as waiting on the BEAM ([`crate::context`]), so a call the callback
//! makes back into the same context is served at once by another thread.
//! The wait ends at the call's deadline, and at once when the call is
//! cancelled ([`crate::context::CallState`] wakes the slot).
//!
//! The BEAM side (the messages, the NIFs that answer) is in
//! `nif/callbacks.rs`; this folder knows the BEAM only through [`Caller`]
//! and [`Beam`]. Python's side is `python/erlang/_callback.py` over the
//! native functions in [`python`].

pub mod python;
mod slot;
#[cfg(test)]
mod tests;

use std::cell::{OnceCell, RefCell};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::context::{CallState, ContextState, Reply};
use crate::convert::Value;

pub use slot::{Answer, Slot};

/// The BEAM process a running call answers to, as a callback target.
/// Made by the call's [`Reply`] the first time the call makes a callback.
///
/// Each message is built first and then handed to the [`Gate`], which
/// sends it unless the call is cancelled: the call's cancellation waits for
/// the send under way, never for an encoding.
pub trait Caller: Send {
    /// Sends the request `name(args)`, to be answered into `slot`, with the
    /// time left before the call's deadline (None: no deadline), through
    /// `gate`. An error says why it was not sent (the process is gone, the
    /// gate refused it).
    fn request(
        &self,
        slot: &Arc<Slot>,
        name: &str,
        args: Vec<Value>,
        remaining: Option<std::time::Duration>,
        gate: &Gate<'_>,
    ) -> Result<(), String>;
    /// The process's pid (`erlang.self()`).
    fn pid(&self) -> Value;
    /// Sends `{tag, kind, payload}` through `gate`: news of the call that
    /// needs no answer (its output, its log records; see [`crate::output`]).
    /// Sent from the call's thread like the reply, so the process gets them
    /// in the order they were made, before the reply. An error says the
    /// process is gone (or the gate refused it).
    fn notify(&self, kind: &str, payload: &Value, gate: &Gate<'_>) -> Result<(), String>;
}

/// What a [`Caller`] sends a message of a call through once it has built
/// it: the send happens unless the call is cancelled, under the lock
/// [`CallState::cancel`] takes once it has marked the call cancelled. So a
/// message is either in the caller's mailbox before `cancel` returns (where
/// the caller, dropping the messages of a call it gave up on, finds it) or
/// never sent: none reaches a caller that has moved on. `cancel` may run on
/// a normal BEAM scheduler (a timeout, a dead coalescing leader, a dropped
/// handle), so only the send itself may happen in [`Gate::pass`]: build the
/// message (copy the tag, encode the arguments) before.
pub struct Gate<'a> {
    state: &'a CallState,
    refused: std::cell::Cell<bool>,
    /// Run at a refusal, before the caller drops the message it built.
    on_refusal: Option<&'a dyn Fn()>,
}

impl<'a> Gate<'a> {
    pub(crate) fn new(state: &'a CallState) -> Gate<'a> {
        Gate {
            state,
            refused: std::cell::Cell::new(false),
            on_refusal: None,
        }
    }

    /// A gate that runs `on_refusal` when it refuses a message, before the
    /// [`Caller`] drops it (a request's slot is answered before the
    /// request's term lets go of it, whose destructor would answer it
    /// otherwise).
    fn with_refusal(state: &'a CallState, on_refusal: &'a dyn Fn()) -> Gate<'a> {
        Gate {
            on_refusal: Some(on_refusal),
            ..Gate::new(state)
        }
    }

    /// Runs `send`, which sends a message already built, unless the call
    /// is cancelled: None then, and nothing must be sent.
    /// A refused `send` (and the message it owns) is dropped only after
    /// the refusal has run: a request's term holds its slot, whose
    /// destructor would answer it first ("exited without answering"
    /// instead of the call's cancellation).
    pub fn pass<T>(&self, send: impl FnOnce() -> T) -> Option<T> {
        let mut send = Some(send);
        let sent = self
            .state
            .unless_cancelled(|| send.take().map(|send| send()))
            .flatten();
        if sent.is_none() && !self.refused.replace(true) {
            if let Some(on_refusal) = self.on_refusal {
                on_refusal();
            }
        }
        drop(send);
        sent
    }

    /// True once [`Gate::pass`] refused a message (the call is cancelled).
    pub fn refused(&self) -> bool {
        self.refused.get()
    }
}

/// What a [`Caller`] answers when its gate refused the message.
pub const CANCELLED: &str = "the call was cancelled";

/// The BEAM as a whole, for what needs no call: the callback pool and
/// `erlang.send`. Installed by the NIF layer when the application starts.
pub trait Beam: Send + Sync {
    /// Sends the request to the callback pool; `key` spreads requests over
    /// its processes (a thread's requests keep their order).
    fn request(
        &self,
        key: u64,
        slot: &Arc<Slot>,
        name: &str,
        args: Vec<Value>,
    ) -> Result<(), String>;
    /// Sends `message` to the process `pid` (a [`Value::Pid`]).
    fn send(&self, pid: &Value, message: &Value) -> Result<(), SendError>;
}

/// Why `erlang.send` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No such process (it exited, or never lived on this node).
    NoProcess,
    /// Anything else, described.
    Other(String),
}

static BEAM: RwLock<Option<Arc<dyn Beam>>> = RwLock::new(None);

/// Installs the BEAM's side (None when the application stops: callbacks
/// from threads then fail at once with a clear error).
pub fn install(beam: Option<Arc<dyn Beam>>) {
    *BEAM.write() = beam;
}

fn beam() -> Option<Arc<dyn Beam>> {
    BEAM.read().clone()
}

/// What a worker records while it runs a call.
pub(crate) struct Frame {
    pub(crate) state: Arc<CallState>,
    pub(crate) context: Arc<ContextState>,
    reply: Box<dyn Reply>,
    caller: OnceCell<Option<Box<dyn Caller>>>,
}

thread_local! {
    static FRAME: RefCell<Option<Frame>> = const { RefCell::new(None) };
    /// The context whose worker runs a coroutine's first step on this
    /// thread ([`stepping`]).
    static STEPPING: RefCell<Option<Arc<ContextState>>> = const { RefCell::new(None) };
}

/// Runs `step` (a coroutine's first step, run by a worker of `context`
/// instead of the event loop, see [`crate::aio`]) with the worker counted as
/// waiting on the BEAM while a callback it makes waits: as on the loop's
/// thread, the callback goes to the pool, and a call it makes back into this
/// context gets another thread at once.
pub(crate) fn stepping<T>(context: &Arc<ContextState>, step: impl FnOnce() -> T) -> T {
    struct Reset(Option<Arc<ContextState>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            STEPPING.with(|s| *s.borrow_mut() = previous);
        }
    }
    let _reset = Reset(STEPPING.with(|s| s.borrow_mut().replace(context.clone())));
    step()
}

/// Records the call a worker is about to run on this thread; the call's
/// reply is kept in the frame until [`leave`] gives it back.
pub(crate) fn enter(state: Arc<CallState>, context: Arc<ContextState>, reply: Box<dyn Reply>) {
    let frame = Frame {
        state,
        context,
        reply,
        caller: OnceCell::new(),
    };
    FRAME.with(|f| *f.borrow_mut() = Some(frame));
}

/// Ends the call recorded by [`enter`] and gives its reply back.
pub(crate) fn leave() -> Option<Box<dyn Reply>> {
    FRAME
        .with(|f| f.borrow_mut().take())
        .map(|frame| frame.reply)
}

/// Sends `name(args)` from the calling thread to the BEAM: to the process
/// whose call this thread runs, else to the pool (`pool_only` sends it to
/// the pool in any case, for requests the thread will not wait on at once).
/// Returns the call to wait under (None for the pool), or the failure.
type CallWait = (Arc<CallState>, Arc<ContextState>);

fn send_request(
    name: &str,
    args: Vec<Value>,
    slot: &Arc<Slot>,
    pool_only: bool,
) -> Result<Option<CallWait>, String> {
    let mut args = Some(args);
    if !pool_only {
        let sent = FRAME.with(|f| {
            let frame = f.borrow();
            let frame = frame.as_ref()?;
            let caller = frame.caller.get_or_init(|| frame.reply.caller()).as_ref()?;
            let args = args.take().unwrap_or_default();
            let remaining = frame
                .state
                .deadline
                .map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let wait = (frame.state.clone(), frame.context.clone());
            // Not sent once the call is cancelled (its caller has stopped
            // waiting, and dropped the call's messages): the wait ends at
            // once, as the cancellation ends a wait under way.
            let cancelled = || {
                slot.fulfil(Answer::Timeout(
                    "the call making this callback was cancelled (timeout)".into(),
                ));
            };
            let gate = Gate::with_refusal(&frame.state, &cancelled);
            let sent = caller.request(slot, name, args, remaining, &gate);
            if gate.refused() {
                return Some(Ok(wait));
            }
            Some(sent.map(|()| wait))
        });
        if let Some(sent) = sent {
            return sent.map(Some);
        }
    }
    let beam = beam().ok_or_else(|| {
        "the BEAM side of pybridge is not running (the application is stopped or stopping)"
            .to_string()
    })?;
    beam.request(thread_key(), slot, name, args.take().unwrap_or_default())?;
    Ok(None)
}

/// A number for the calling thread, spreading the pool's work.
fn thread_key() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut hasher);
    hasher.finish()
}

/// Makes the callback `name(args)` and waits for its answer. Called without
/// the GIL.
pub fn call(name: &str, args: Vec<Value>) -> Answer {
    let slot = Arc::new(Slot::new());
    match send_request(name, args, &slot, false) {
        Err(why) => Answer::Failed(why),
        Ok(None) => {
            let stepping = STEPPING.with(|s| s.borrow().clone());
            let _waiting = stepping.as_ref().map(|context| context.wait_on_beam());
            slot.wait(None)
                .unwrap_or_else(|| Answer::Failed("the answer was already taken".into()))
        }
        Ok(Some((state, context))) => {
            // The worker counts as waiting on the BEAM (so calls the
            // callback makes into this context get another thread), and a
            // cancellation of the call wakes it.
            let _waiting = context.wait_on_beam();
            state.set_callback(Some(slot.clone()));
            if state.is_cancelled() {
                slot.fulfil(Answer::Timeout("the call was cancelled".into()));
            }
            let answer = slot.wait(state.deadline);
            state.set_callback(None);
            answer.unwrap_or_else(|| Answer::Failed("the answer was already taken".into()))
        }
    }
}

/// Sends `name(args)` to the callback pool and returns the slot its answer
/// will fill, without waiting (the primitive under asynchronous callbacks).
pub fn start(name: &str, args: Vec<Value>) -> Result<Arc<Slot>, String> {
    let slot = Arc::new(Slot::new());
    send_request(name, args, &slot, true)?;
    Ok(slot)
}

/// `erlang.send(pid, message)`.
pub fn send(pid: &Value, message: &Value) -> Result<(), SendError> {
    match beam() {
        Some(beam) => beam.send(pid, message),
        None => Err(SendError::Other(
            "the BEAM side of pybridge is not running (the application is stopped or stopping)"
                .into(),
        )),
    }
}

/// Sends `{tag, kind, payload}` to the process whose call this thread runs
/// (see [`Caller::notify`]); None outside a call.
pub fn notify(kind: &str, payload: &Value) -> Option<Result<(), String>> {
    FRAME.with(|f| {
        let frame = f.borrow();
        let frame = frame.as_ref()?;
        let caller = frame.caller.get_or_init(|| frame.reply.caller()).as_ref()?;
        // Once the call is cancelled its caller has stopped listening: what
        // the call writes goes where output outside calls goes (the gate
        // refuses it, an error).
        Some(caller.notify(kind, payload, &Gate::new(&frame.state)))
    })
}

/// The pid of the process whose call this thread runs (`erlang.self()`),
/// None outside a call.
pub fn self_pid() -> Option<Value> {
    FRAME.with(|f| {
        let frame = f.borrow();
        let frame = frame.as_ref()?;
        frame
            .caller
            .get_or_init(|| frame.reply.caller())
            .as_ref()
            .map(|c| c.pid())
    })
}
