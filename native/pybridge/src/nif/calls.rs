//! Calls: `eval`, `exec`, `call` and the other jobs, submitted to a context,
//! and cancelling one.
//!
//! A call is decoded into a [`Job`] on the calling scheduler (or a dirty one
//! when its arguments are large), queued on a context, and answered later by
//! a worker thread (see [`super::reply`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::context::{
    self, CallState, Cancel, Code, ErrorInfo, ErrorKind, Job, Namespace, Reply, SubmitError,
};
use crate::convert::Value;
use crate::limits::{MAX_STREAM_BATCH, SCHEDULER_CODE_BYTES, SCHEDULER_NODES};

use super::atoms;
use super::callbacks::{wait_inline, Inlined};
use super::contexts::{RoomWaker, WaitTicket};
use super::error::encode_error;
use super::handles::{CallResource, ContextResource, NamespaceResource};
use super::reply::{take_env, BeamReply, Inline, ReplyTo};
use super::term::{decode, DecodeError};

/// `submit/6` and `submit_dirty/6` take the same arguments: the first runs
/// on a normal scheduler within [`SCHEDULER_NODES`] (and answers `:dirty`
/// past it), the second on a dirty one without a budget. The last is `nil`,
/// or the ticket of a caller that waited for room (`{:wait, id, ticket}`,
/// then `{:py_room, id}`): the call takes the place kept for it. A ticket
/// the call does not use (it was refused, or raised) is given up, unless
/// the call goes on to `submit_dirty/6` with it.
macro_rules! submit_nif {
    ($(#[$schedule:meta])* $name:ident, $budget:expr) => {
        $(#[$schedule])*
        fn $name<'a>(
            env: Env<'a>,
            ctx: ResourceArc<ContextResource>,
            namespace: Term<'a>,
            tag: Term<'a>,
            job: Term<'a>,
            timeout: Term<'a>,
            ticket: Term<'a>,
        ) -> NifResult<Term<'a>> {
            let ticket = ticket.decode::<ResourceArc<WaitTicket>>().ok();
            let call = Submission { namespace, tag, job, timeout, ticket: ticket.as_deref() };
            let result = submit_with(env, &ctx, call, $budget);
            if let Some(ticket) = ticket {
                if !matches!(result, Ok(term) if term == atoms::dirty().encode(env)) {
                    ticket.give_up();
                }
            }
            result
        }
    };
}

/// The arguments of `submit/6`, past the context.
pub(super) struct Submission<'a, 't> {
    pub namespace: Term<'a>,
    pub tag: Term<'a>,
    pub job: Term<'a>,
    pub timeout: Term<'a>,
    pub ticket: Option<&'t WaitTicket>,
}

submit_nif!(
    #[rustler::nif]
    submit,
    Some(SCHEDULER_NODES)
);
submit_nif!(
    #[rustler::nif(schedule = "DirtyCpu")]
    submit_dirty,
    None
);

/// Sends a running call's reply to `pid` instead of the process that
/// submitted it: `:ok`, or `:sent` when the reply has gone to the submitter
/// already (it is in its mailbox).
#[rustler::nif]
fn redirect(handle: ResourceArc<CallResource>, pid: LocalPid) -> Atom {
    if handle.1.redirect(pid) {
        atoms::ok()
    } else {
        atoms::sent()
    }
}

#[rustler::nif]
fn cancel(handle: ResourceArc<CallResource>) -> Atom {
    match context::cancel(&handle.0) {
        Cancel::Cancelled { .. } => atoms::cancelled(),
        Cancel::Replied => atoms::replied(),
    }
}

pub(super) fn submit_with<'a>(
    env: Env<'a>,
    ctx: &ContextResource,
    call: Submission<'a, '_>,
    budget: Option<usize>,
) -> NifResult<Term<'a>> {
    let Submission {
        namespace,
        tag,
        job,
        timeout,
        ticket,
    } = call;
    let namespace = if namespace.is_atom() {
        None
    } else {
        Some(
            namespace
                .decode::<ResourceArc<NamespaceResource>>()?
                .0
                .clone(),
        )
    };
    let deadline = match timeout.decode::<u64>() {
        Ok(ms) => Some(Instant::now() + Duration::from_millis(ms)),
        Err(_) if timeout == atoms::infinity().encode(env) => None,
        Err(err) => return Err(err),
    };
    let job = match decode_job(job, namespace, budget) {
        Ok(job) => job,
        Err(JobError::OverBudget) => return Ok(atoms::dirty().encode(env)),
        Err(JobError::Convert(message)) => {
            return Ok(encode_error(
                env,
                &ErrorInfo::new(ErrorKind::Conversion, message),
            ))
        }
        Err(JobError::BadArg) => return Err(rustler::Error::BadArg),
    };
    let reply_env = take_env();
    let saved_tag = reply_env.save(tag);
    let reply_to = ReplyTo::new(env.pid());
    let message = BeamReply {
        to: reply_to.clone(),
        env: reply_env,
        tag: saved_tag,
    };
    let state = CallState::new(deadline);
    // Waiting inline only pays when nothing is queued ahead of this call,
    // never on a dirty scheduler (those calls are big anyway), and never
    // when the home worker shares this scheduler's core (the spin would
    // take the very core the worker needs).
    let inline = (budget.is_some() && ctx.0.is_idle() && !ctx.0.state_ref().shares_my_cpu())
        .then(Inline::new);
    let reply: Box<dyn Reply> = match &inline {
        Some(inline) => inline.reply_or(message),
        None => Box::new(message),
    };
    let pid = env.pid();
    let mut waker = |id| Box::new(RoomWaker { pid, id }) as Box<dyn context::Waker>;
    // Ids are per context: a ticket of another one claims nothing here.
    let claim = ticket
        .filter(|ticket| ticket.is_for(&ctx.0))
        .and_then(WaitTicket::take);
    match ctx
        .0
        .submit_or_wait(job, reply, state.clone(), claim, Some(&mut waker))
    {
        Ok(()) => {}
        // Full, and the context lets callers wait: `{:py_room, id}` comes
        // when a place is kept for this caller, and it submits again with
        // the ticket.
        Err(SubmitError::Waiting(id)) => {
            let ticket = ResourceArc::new(WaitTicket::new(ctx.0.clone(), id));
            return Ok((atoms::wait(), id, ticket).encode(env));
        }
        Err(err) => {
            let info = ErrorInfo::new(err.kind(), err.to_string());
            return Ok(encode_error(env, &info));
        }
    }
    let handle = || ResourceArc::new(CallResource(state, reply_to)).encode(env);
    let Some(inline) = inline else {
        return Ok(handle());
    };
    Ok(match wait_inline(env, &inline) {
        Inlined::Done(done) => done,
        // The caller has no handle yet: it comes with the request.
        Inlined::Request(request) => (atoms::callback(), handle(), request).encode(env),
        Inlined::Message => handle(),
    })
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
    namespace: Option<Arc<Namespace>>,
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
    let needs_namespace = || namespace.clone().ok_or(JobError::BadArg);
    Ok(match rest {
        [source, locals] if kind == atoms::eval() => Job::Eval {
            code: code(source)?,
            locals: pairs(locals)?,
            namespace: needs_namespace()?,
        },
        [source] if kind == atoms::exec() => Job::Exec {
            code: code(source)?,
            namespace: needs_namespace()?,
        },
        [module, function, args, kwargs] if kind == atoms::call() => Job::Call {
            module: text(module)?,
            function: text(function)?,
            args: list(args)?,
            kwargs: pairs(kwargs)?,
            namespace: namespace.clone(),
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
        // A stream's jobs (`Py.Stream`): only an eval or a call can start one.
        [inner] if kind == atoms::iterate() => match decode_job(*inner, namespace, budget)? {
            inner @ (Job::Eval { .. } | Job::Call { .. }) => Job::Iterate(Box::new(inner)),
            _ => return Err(JobError::BadArg),
        },
        [iter, max] if kind == atoms::next() => Job::Next {
            iter: object(iter)?,
            max: match max.decode::<usize>()? {
                n @ 1..=MAX_STREAM_BATCH => n,
                _ => return Err(JobError::BadArg),
            },
        },
        [iter] if kind == atoms::close() => Job::Close {
            iter: object(iter)?,
        },
        _ => return Err(JobError::BadArg),
    })
}
