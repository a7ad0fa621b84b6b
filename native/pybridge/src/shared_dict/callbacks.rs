//! Python callbacks on a dict's events (`sd.register_callback` in Python).
//!
//! A dict's callbacks are one [`Listener`] of the dict, so they hear every
//! event exactly once, whatever raised it: a Python write, a BEAM write, an
//! eviction or the sweeper. For each event and each enabled callback that
//! wants it, the listener queues one call on pybridge's callback context
//! (pool `"pybridge.callbacks"`, one context of the main interpreter, made
//! on the first registration) through the one call path ([`Context::submit`]
//! with a [`Job::CallMethod`] on the Python side's runner object). The thread
//! that raised the event only pays for a copy of the value and a queue push:
//! it never waits for a callback, and a callback never runs on a scheduler,
//! the sweeper or the writer's thread.
//!
//! Sandbox: each callback is its own call, with its own deadline (its
//! `timeout`), so the context's monitor interrupts one that runs too long
//! and opens the overflow for the others meanwhile. A callback that raises
//! or runs out of time is counted in the dict's stats and reported to the
//! failure sink (the NIF layer forwards it to a BEAM process that logs it
//! with Logger); nothing else notices.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::{DictError, EventKind, Item, Listener, SharedDict, Stored};
use crate::context::{
    CallState, Context, ContextConfig, ErrorKind, Job, Outcome, Reply, SubmitError, Timing,
};
use crate::convert::{PyObject, Value};
use crate::limits::CALLBACK_MAX_WORKERS;

/// The kinds of the payload handed to the runner: no value, plain data,
/// a pickle (the same codes as `get` in [`super::python`]).
const MISSING: i64 = 0;
const PLAIN: i64 = 1;
const PICKLED: i64 = 2;

/// The bit of `kind` in a callback's event mask.
pub fn event_bit(kind: EventKind) -> u8 {
    match kind {
        EventKind::Put => 1,
        EventKind::Delete => 2,
        EventKind::Expire => 4,
        EventKind::Access => 8,
    }
}

/// The event's name on the Python side (`"set"`, `"delete"`, `"expire"`,
/// `"access"`).
pub fn event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Put => "set",
        EventKind::Delete => "delete",
        EventKind::Expire => "expire",
        EventKind::Access => "access",
    }
}

/// A callback to register.
pub struct Registration {
    /// The events it wants ([`event_bit`]s).
    pub mask: u8,
    /// Only this key's events, or every key's.
    pub key: Option<String>,
    /// The Python runner: its `_run(key, event, kind, payload)` calls the
    /// user's function (and runs its coroutine for an async one).
    pub runner: PyObject,
    /// How long one run may take before it is interrupted and counted as
    /// a timeout.
    pub timeout: Option<Duration>,
}

struct Callback {
    id: u64,
    mask: u8,
    key: Option<String>,
    enabled: AtomicBool,
    runner: PyObject,
    timeout: Option<Duration>,
}

/// One dict's callbacks: its listener.
struct DictCallbacks {
    dict: Weak<SharedDict>,
    /// The dict's name, or `#id`, for the log.
    label: String,
    list: RwLock<Vec<Arc<Callback>>>,
}

/// A callback that raised or ran out of time, for the log.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The dict's name, or `#id`.
    pub dict: String,
    pub callback: u64,
    pub event: EventKind,
    pub key: String,
    pub timed_out: bool,
    pub message: String,
}

type Sink = Box<dyn Fn(Failure) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Sets where failures are reported (once; the NIF layer does it at load).
pub fn set_failure_sink(sink: Sink) {
    let _ = SINK.set(sink);
}

/// Every dict with callbacks, by dict id.
fn registry() -> &'static Mutex<HashMap<u64, Arc<DictCallbacks>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Arc<DictCallbacks>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The callback context, made on first use.
fn executor() -> Result<Context, SubmitError> {
    static EXECUTOR: Mutex<Option<Context>> = Mutex::new(None);
    let mut slot = EXECUTOR.lock();
    if let Some(context) = &*slot {
        return Ok(context.clone());
    }
    let context = Context::new(ContextConfig {
        pool: "pybridge.callbacks".into(),
        index: 1,
        max_workers: CALLBACK_MAX_WORKERS,
        ..ContextConfig::default()
    })?;
    *slot = Some(context.clone());
    Ok(context)
}

/// Why a registration failed.
#[derive(Debug)]
pub enum RegisterError {
    Dict(DictError),
    /// The callback context could not be started.
    Executor(SubmitError),
}

/// Registers a callback on `dict`; returns its id (unique in this OS
/// process).
pub fn register(dict: &Arc<SharedDict>, reg: Registration) -> Result<u64, RegisterError> {
    executor().map_err(RegisterError::Executor)?;
    let callback = Arc::new(Callback {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        mask: reg.mask,
        key: reg.key,
        enabled: AtomicBool::new(true),
        runner: reg.runner,
        timeout: reg.timeout,
    });
    let id = callback.id;
    let mut all = registry().lock();
    let callbacks = match all.get(&dict.id()) {
        Some(c) => c.clone(),
        None => {
            let c = Arc::new(DictCallbacks {
                dict: Arc::downgrade(dict),
                label: match dict.name() {
                    Some(name) => name.to_owned(),
                    None => format!("#{}", dict.id()),
                },
                list: RwLock::new(Vec::new()),
            });
            dict.listen(c.clone()).map_err(RegisterError::Dict)?;
            all.insert(dict.id(), c.clone());
            c
        }
    };
    if reg.mask & event_bit(EventKind::Access) != 0 {
        dict.listen_access();
    }
    callbacks.list.write().push(callback);
    Ok(id)
}

fn find(id: u64) -> Option<(Arc<DictCallbacks>, Arc<Callback>)> {
    let all = registry().lock();
    all.values().find_map(|c| {
        let found = c.list.read().iter().find(|cb| cb.id == id).cloned();
        found.map(|cb| (c.clone(), cb))
    })
}

/// Turns a callback on or off; false when there is no such callback.
pub fn set_enabled(id: u64, enabled: bool) -> bool {
    match find(id) {
        Some((_, cb)) => {
            cb.enabled.store(enabled, Ordering::Release);
            true
        }
        None => false,
    }
}

/// Removes a callback (runs already queued still happen); false when there
/// is no such callback.
pub fn unregister(id: u64) -> bool {
    match find(id) {
        Some((dict, _)) => {
            dict.list.write().retain(|cb| cb.id != id);
            true
        }
        None => false,
    }
}

/// How many callbacks `dict` has (for the tests).
pub fn count(dict: &SharedDict) -> usize {
    registry()
        .lock()
        .get(&dict.id())
        .map_or(0, |c| c.list.read().len())
}

fn payload(value: Option<&Item>) -> (i64, Value) {
    match value.map(|v| &**v) {
        None => (MISSING, Value::None),
        Some(Stored::Plain(v)) => (PLAIN, v.clone()),
        Some(Stored::Pickled { data, .. }) => (PICKLED, Value::Bytes(data.clone())),
    }
}

impl DictCallbacks {
    fn dispatch(&self, cb: &Callback, kind: EventKind, key: &str, value: Option<&Item>) {
        let (code, payload) = payload(value);
        let deadline = cb.timeout.map(|t| Instant::now() + t);
        let job = Job::CallMethod {
            obj: cb.runner.clone(),
            name: "_run".into(),
            args: vec![
                Value::Str(key.to_owned()),
                Value::Str(event_name(kind).to_owned()),
                Value::Int(code),
                payload,
            ],
            kwargs: Vec::new(),
        };
        let done = Box::new(Done {
            dict: self.dict.clone(),
            label: self.label.clone(),
            callback: cb.id,
            kind,
            key: key.to_owned(),
            timeout: cb.timeout,
            deadline,
            answered: false,
        });
        // A refused call drops `done` unanswered before its deadline, which
        // reports it as not run.
        if let Ok(context) = executor() {
            let _ = context.submit(job, done, CallState::new(deadline));
        }
    }
}

impl Listener for DictCallbacks {
    fn wants_values(&self) -> bool {
        !self.list.read().is_empty()
    }

    fn event(&self, kind: EventKind, key: &str, value: Option<&Item>) {
        let bit = event_bit(kind);
        let list = self.list.read();
        for cb in list.iter() {
            if cb.mask & bit != 0
                && cb.enabled.load(Ordering::Acquire)
                && cb.key.as_deref().is_none_or(|k| k == key)
            {
                self.dispatch(cb, kind, key, value);
            }
        }
    }

    fn destroyed(&self) {
        let mine = self.dict.upgrade().map(|d| d.id());
        let removed = match mine {
            Some(id) => registry().lock().remove(&id),
            None => {
                let mut all = registry().lock();
                let id = all
                    .iter()
                    .find(|(_, c)| std::ptr::eq(Arc::as_ptr(c), self))
                    .map(|(id, _)| *id);
                id.and_then(|id| all.remove(&id))
            }
        };
        drop(removed);
    }
}

fn report(
    dict: &Weak<SharedDict>,
    label: &str,
    callback: u64,
    event: EventKind,
    key: &str,
    timed_out: bool,
    message: String,
) {
    if let Some(d) = dict.upgrade() {
        d.count_callback_failure(timed_out);
    }
    if let Some(sink) = SINK.get() {
        sink(Failure {
            dict: label.to_owned(),
            callback,
            event,
            key: key.to_owned(),
            timed_out,
            message,
        });
    }
}

/// The reply of one callback run: reports a failure. A run that never
/// answers (its deadline passed, so the monitor cancelled it) is a timeout.
struct Done {
    dict: Weak<SharedDict>,
    label: String,
    callback: u64,
    kind: EventKind,
    key: String,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    answered: bool,
}

impl Done {
    fn report(&self, timed_out: bool, message: String) {
        report(
            &self.dict,
            &self.label,
            self.callback,
            self.kind,
            &self.key,
            timed_out,
            message,
        );
    }

    fn timeout_message(&self) -> String {
        match self.timeout {
            Some(t) => format!("ran past its timeout of {} s", t.as_secs_f64()),
            None => "was cancelled".to_owned(),
        }
    }
}

impl Reply for Done {
    fn send(mut self: Box<Self>, outcome: Outcome, _timing: Timing) {
        self.answered = true;
        if let Outcome::Error(e) = outcome {
            let timed_out = matches!(e.kind, ErrorKind::Timeout)
                || matches!(&e.kind, ErrorKind::Python(class) if class == "Timeout");
            let message = if timed_out {
                self.timeout_message()
            } else {
                match &e.traceback {
                    Some(tb) => format!("{}\n{}", e.message, tb),
                    None => e.message.clone(),
                }
            };
            self.report(timed_out, message);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        // Dropped unanswered: cancelled past its deadline, or never queued
        // (the callback context is closed).
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            let message = self.timeout_message();
            self.report(true, message);
        } else {
            self.report(false, "was not run: the callback context is closed".into());
        }
    }
}
