//! The Rustler layer: decode terms, call the core, encode the answer.
//!
//! Nothing here runs Python. A call is decoded into a [`Job`] on the calling
//! scheduler (or a dirty one when its arguments are large), queued on a
//! context, and answered later by a worker thread with a message
//! `{tag, result}` sent to the caller.

mod term;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use rustler::env::{OwnedEnv, SavedTerm};
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::context::{
    self, CallState, Cancel, Code, Context, ContextConfig, ErrorKind, Job, Outcome, ProcessEnv,
    Reply, SubmitError,
};
use crate::convert::Value;
use crate::runtime::{self, InitConfig};

use term::{decode, encode, DecodeError};

mod atoms {
    rustler::atoms! {
        ok,
        error,
        nil,
        dirty,
        done,
        cancelled,
        replied,
        conversion,
        closed,
        not_started,
        internal,
        badarg,
        infinity,
        eval,
        exec,
        call,
        getattr,
        call_method,
        reload,
        program,
        site_dirs,
        python_path,
        switch_interval,
        executor_priority,
        normal,
        max_workers,
        code_cache_size,
        subinterpreter,
        mode,
        main,
        calls_total,
        errors_total,
        cancelled_total,
        in_flight,
        queue_length,
        busy_us,
        compiles_total,
        envs,
        workers,
        idle_workers,
    }
}

/// Nodes decoded on a normal scheduler before the call moves to a dirty one.
const SCHEDULER_BUDGET: usize = 20_000;
/// Bytes of source handled on a normal scheduler; longer code goes dirty.
const SCHEDULER_CODE_BYTES: usize = 256 * 1024;

pub struct ContextResource(Context);
pub struct EnvResource(Arc<ProcessEnv>);
pub struct CallResource(Arc<CallState>);

#[rustler::resource_impl]
impl rustler::Resource for ContextResource {}
#[rustler::resource_impl]
impl rustler::Resource for EnvResource {}
#[rustler::resource_impl]
impl rustler::Resource for CallResource {}

#[rustler::nif(schedule = "DirtyIo")]
fn init<'a>(env: Env<'a>, config: Term<'a>) -> NifResult<Term<'a>> {
    let get = |key: Atom| config.map_get(key).ok();
    let strings = |key: Atom| -> NifResult<Vec<String>> {
        get(key).map_or(Ok(Vec::new()), |t| t.decode::<Vec<String>>())
    };
    let program = match get(atoms::program()) {
        Some(t) if t.is_binary() => Some(t.decode::<String>()?),
        _ => None,
    };
    let switch_interval = match get(atoms::switch_interval()) {
        Some(t) if t.is_number() => Some(t.decode::<f64>()?),
        _ => None,
    };
    let batch_priority =
        get(atoms::executor_priority()) != Some(atoms::normal().encode(config.get_env()));
    let config = InitConfig {
        program,
        site_dirs: strings(atoms::site_dirs())?,
        python_path: strings(atoms::python_path())?,
        switch_interval,
        batch_priority,
    };
    Ok(match runtime::initialize(&config) {
        Ok(()) => atoms::ok().encode(env),
        Err(message) => (atoms::error(), message).encode(env),
    })
}

// Dirty: making a sub-interpreter takes milliseconds.
#[rustler::nif(schedule = "DirtyIo")]
fn context_new<'a>(
    env: Env<'a>,
    pool: Term<'a>,
    index: usize,
    opts: Term<'a>,
) -> NifResult<Term<'a>> {
    let defaults = ContextConfig::default();
    let option = |key: Atom, default: usize| -> NifResult<usize> {
        opts.map_get(key).map_or(Ok(default), |t| t.decode())
    };
    let config = ContextConfig {
        pool: pool.atom_to_string()?,
        index,
        max_workers: option(atoms::max_workers(), defaults.max_workers)?,
        code_cache_size: option(atoms::code_cache_size(), defaults.code_cache_size)?,
        subinterpreter: opts
            .map_get(atoms::mode())
            .and_then(|mode| mode.decode::<Atom>())
            .is_ok_and(|mode| mode == atoms::subinterpreter()),
    };
    match Context::new(config) {
        Ok(ctx) => Ok(ResourceArc::new(ContextResource(ctx)).encode(env)),
        Err(err) => Err(rustler::Error::RaiseTerm(Box::new(err.to_string()))),
    }
}

#[rustler::nif]
fn context_close(ctx: ResourceArc<ContextResource>) -> Atom {
    ctx.0.close();
    atoms::ok()
}

#[rustler::nif]
fn context_info(env: Env<'_>, ctx: ResourceArc<ContextResource>) -> NifResult<Term<'_>> {
    let s = ctx.0.stats();
    let pairs = [
        (atoms::calls_total(), s.calls_total),
        (atoms::errors_total(), s.errors_total),
        (atoms::cancelled_total(), s.cancelled_total),
        (atoms::in_flight(), s.in_flight),
        (atoms::queue_length(), s.queue_length),
        (atoms::busy_us(), s.busy_us),
        (atoms::compiles_total(), s.compiles_total),
        (atoms::envs(), s.envs),
        (atoms::workers(), s.workers),
        (atoms::idle_workers(), s.idle_workers),
    ];
    let keys: Vec<Term> = pairs.iter().map(|(k, _)| k.encode(env)).collect();
    let values: Vec<Term> = pairs.iter().map(|(_, v)| v.encode(env)).collect();
    let mode = if ctx.0.is_subinterpreter() {
        atoms::subinterpreter()
    } else {
        atoms::main()
    };
    Term::map_from_arrays(env, &keys, &values)?.map_put(atoms::mode().encode(env), mode)
}

#[rustler::nif]
fn env_new(env: Env<'_>, ctx: ResourceArc<ContextResource>) -> Term<'_> {
    ResourceArc::new(EnvResource(ctx.0.new_env())).encode(env)
}

#[rustler::nif]
fn submit<'a>(
    env: Env<'a>,
    ctx: ResourceArc<ContextResource>,
    penv: Term<'a>,
    tag: Term<'a>,
    job: Term<'a>,
    timeout: Term<'a>,
) -> NifResult<Term<'a>> {
    submit_with(env, &ctx, penv, tag, job, timeout, Some(SCHEDULER_BUDGET))
}

#[rustler::nif(schedule = "DirtyCpu")]
fn submit_dirty<'a>(
    env: Env<'a>,
    ctx: ResourceArc<ContextResource>,
    penv: Term<'a>,
    tag: Term<'a>,
    job: Term<'a>,
    timeout: Term<'a>,
) -> NifResult<Term<'a>> {
    submit_with(env, &ctx, penv, tag, job, timeout, None)
}

#[rustler::nif]
fn cancel(handle: ResourceArc<CallResource>) -> Atom {
    match context::cancel(&handle.0) {
        Cancel::Cancelled { .. } => atoms::cancelled(),
        Cancel::Replied => atoms::replied(),
    }
}

fn submit_with<'a>(
    env: Env<'a>,
    ctx: &ContextResource,
    penv: Term<'a>,
    tag: Term<'a>,
    job: Term<'a>,
    timeout: Term<'a>,
    budget: Option<usize>,
) -> NifResult<Term<'a>> {
    let penv = if penv.is_atom() {
        None
    } else {
        Some(penv.decode::<ResourceArc<EnvResource>>()?.0.clone())
    };
    let deadline = match timeout.decode::<u64>() {
        Ok(ms) => Some(Instant::now() + Duration::from_millis(ms)),
        Err(_) if timeout == atoms::infinity().encode(env) => None,
        Err(err) => return Err(err),
    };
    let job = match decode_job(job, penv, budget) {
        Ok(job) => job,
        Err(JobError::OverBudget) => return Ok(atoms::dirty().encode(env)),
        Err(JobError::Convert(message)) => {
            return Ok((atoms::error(), (atoms::conversion(), message)).encode(env))
        }
        Err(JobError::BadArg) => return Err(rustler::Error::BadArg),
    };
    let reply_env = take_env();
    let saved_tag = reply_env.save(tag);
    let message = BeamReply {
        pid: env.pid(),
        env: reply_env,
        tag: saved_tag,
    };
    let state = CallState::new(deadline);
    // Waiting inline only pays when nothing is queued ahead of this call,
    // and never on a dirty scheduler (those calls are big anyway).
    let inline = (budget.is_some() && ctx.0.is_idle()).then(|| {
        Arc::new(Inline {
            state: AtomicU8::new(WAITING),
            outcome: Mutex::new(None),
            fallback: Mutex::new(None),
        })
    });
    let reply: Box<dyn Reply> = match &inline {
        Some(inline) => {
            *inline.fallback.lock() = Some(message);
            Box::new(InlineReply(inline.clone()))
        }
        None => Box::new(message),
    };
    if let Err(err) = ctx.0.submit(job, reply, state.clone()) {
        let kind = match err {
            SubmitError::Closed => atoms::closed(),
            SubmitError::NotInitialized => atoms::not_started(),
            SubmitError::ForeignEnv => atoms::badarg(),
            SubmitError::Spawn(_) | SubmitError::Interpreter(_) => atoms::internal(),
        };
        return Ok((atoms::error(), (kind, err.to_string())).encode(env));
    }
    if let Some(outcome) = inline.and_then(|inline| inline.wait()) {
        return Ok((atoms::done(), encode_outcome(env, &outcome)).encode(env));
    }
    Ok(ResourceArc::new(CallResource(state)).encode(env))
}

enum JobError {
    OverBudget,
    Convert(String),
    BadArg,
}

impl From<DecodeError> for JobError {
    fn from(err: DecodeError) -> Self {
        match err {
            DecodeError::OverBudget => JobError::OverBudget,
            DecodeError::Convert(e) => JobError::Convert(e.0),
        }
    }
}

impl From<rustler::Error> for JobError {
    fn from(_: rustler::Error) -> Self {
        JobError::BadArg
    }
}

fn decode_job(
    job: Term<'_>,
    penv: Option<Arc<ProcessEnv>>,
    budget: Option<usize>,
) -> Result<Job, JobError> {
    let parts = get_tuple(job)?;
    let (kind, rest) = parts.split_first().ok_or(JobError::BadArg)?;
    let kind: Atom = kind.decode()?;
    let text = |t: &Term| -> Result<String, JobError> {
        let bytes = t.decode::<Binary>()?;
        match std::str::from_utf8(bytes.as_slice()) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(JobError::Convert(format!(
                "a Python name must be valid UTF-8, got {:?}",
                String::from_utf8_lossy(bytes.as_slice())
            ))),
        }
    };
    let pairs = |t: &Term| -> Result<Vec<(Value, Value)>, JobError> {
        match decode(*t, budget)? {
            Value::Map(pairs) => Ok(pairs),
            _ => Err(JobError::BadArg),
        }
    };
    let list = |t: &Term| -> Result<Vec<Value>, JobError> {
        match decode(*t, budget)? {
            Value::List(items) => Ok(items),
            _ => Err(JobError::BadArg),
        }
    };
    let object = |t: &Term| -> Result<crate::convert::PyObject, JobError> {
        match decode(*t, budget)? {
            Value::Object(obj) => Ok(obj),
            _ => Err(JobError::BadArg),
        }
    };
    let code = |t: &Term| -> Result<Code, JobError> {
        let source = t.decode::<Binary>()?;
        // Copying and checking a big source on a normal scheduler takes too
        // long: such calls move to a dirty scheduler like big arguments do.
        if budget.is_some() && source.len() > SCHEDULER_CODE_BYTES {
            return Err(JobError::OverBudget);
        }
        Ok(Code::from_bytes(source.as_slice()))
    };
    let needs_env = || penv.clone().ok_or(JobError::BadArg);
    Ok(match rest {
        [source, locals] if kind == atoms::eval() => Job::Eval {
            code: code(source)?,
            locals: pairs(locals)?,
            env: needs_env()?,
        },
        [source] if kind == atoms::exec() => Job::Exec {
            code: code(source)?,
            env: needs_env()?,
        },
        [module, function, args, kwargs] if kind == atoms::call() => Job::Call {
            module: text(module)?,
            function: text(function)?,
            args: list(args)?,
            kwargs: pairs(kwargs)?,
            env: penv.clone(),
        },
        [obj, name] if kind == atoms::getattr() => Job::GetAttr {
            obj: object(obj)?,
            name: text(name)?,
        },
        [obj, name, args, kwargs] if kind == atoms::call_method() => Job::CallMethod {
            obj: object(obj)?,
            name: text(name)?,
            args: list(args)?,
            kwargs: pairs(kwargs)?,
        },
        [module] if kind == atoms::reload() => Job::Reload {
            module: text(module)?,
        },
        _ => return Err(JobError::BadArg),
    })
}

/// How long a submitting NIF waits for a quick call's result before leaving
/// it to the reply message. Bounded, so a scheduler is never held for long.
const INLINE_WAIT: Duration = Duration::from_micros(20);
/// Results up to this many nodes may be handed back inline; bigger ones are
/// encoded by the worker, never on a scheduler.
const INLINE_NODES: usize = 256;

const WAITING: u8 = 0;
const DELIVERED: u8 = 1;
const GAVE_UP: u8 = 2;
const REDIRECTED: u8 = 3;

/// A result handed straight back to a submitter that is still waiting in
/// the NIF: no message, no second wake-up.
struct Inline {
    state: AtomicU8,
    outcome: Mutex<Option<Outcome>>,
    fallback: Mutex<Option<BeamReply>>,
}

struct InlineReply(Arc<Inline>);

impl Reply for InlineReply {
    fn send(self: Box<Self>, outcome: Outcome) {
        let inline = self.0;
        if outcome_nodes(&outcome) <= INLINE_NODES {
            *inline.outcome.lock() = Some(outcome);
            if inline
                .state
                .compare_exchange(WAITING, DELIVERED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
            // The submitter stopped waiting: reply by message after all.
            let outcome = inline.outcome.lock().take();
            let fallback = inline.fallback.lock().take();
            if let (Some(outcome), Some(reply)) = (outcome, fallback) {
                Box::new(reply).send(outcome);
            }
        } else {
            let _ = inline.state.compare_exchange(
                WAITING,
                REDIRECTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if let Some(reply) = inline.fallback.lock().take() {
                Box::new(reply).send(outcome);
            }
        }
    }
}

impl Inline {
    /// Waits up to [`INLINE_WAIT`] for the outcome; None means "a message will come".
    fn wait(&self) -> Option<Outcome> {
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
                self.outcome.lock().take()
            }
            _ => None,
        }
    }
}

/// Size of an outcome, counting no further than [`INLINE_NODES`].
fn outcome_nodes(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Value(value) => value.size_up_to(INLINE_NODES),
        Outcome::Done | Outcome::Error(_) => 1,
    }
}

thread_local! {
    /// Cleared message envs, per scheduler thread: a call answered inline
    /// hands its unused env back here instead of freeing it.
    static ENV_POOL: std::cell::RefCell<Vec<OwnedEnv>> = const { std::cell::RefCell::new(Vec::new()) };
}

const ENV_POOL_SIZE: usize = 8;

fn take_env() -> OwnedEnv {
    ENV_POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default()
}

fn recycle_env(mut env: OwnedEnv) {
    env.clear();
    ENV_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < ENV_POOL_SIZE {
            pool.push(env);
        }
    });
}

/// Sends the outcome of a call to the BEAM process that made it.
struct BeamReply {
    pid: LocalPid,
    env: OwnedEnv,
    tag: SavedTerm,
}

impl Reply for BeamReply {
    fn send(self: Box<Self>, outcome: Outcome) {
        let BeamReply { pid, mut env, tag } = *self;
        // A dead caller cannot receive; nothing else to do then.
        let _ = env.send_and_clear(&pid, |env| {
            let tag = tag.load(env);
            (tag, encode_outcome(env, &outcome)).encode(env)
        });
    }
}

fn encode_outcome<'a>(env: Env<'a>, outcome: &Outcome) -> Term<'a> {
    match outcome {
        Outcome::Value(value) => (atoms::ok(), encode(env, value)).encode(env),
        Outcome::Done => atoms::ok().encode(env),
        Outcome::Error(info) => {
            let kind = match &info.kind {
                ErrorKind::Python(name) => name.encode(env),
                ErrorKind::Conversion => atoms::conversion().encode(env),
                ErrorKind::Closed => atoms::closed().encode(env),
                ErrorKind::Internal => atoms::internal().encode(env),
            };
            let traceback = match &info.traceback {
                Some(tb) => tb.encode(env),
                None => atoms::nil().encode(env),
            };
            (atoms::error(), (kind, info.message.as_str(), traceback)).encode(env)
        }
    }
}

rustler::init!("Elixir.Py.Native");
