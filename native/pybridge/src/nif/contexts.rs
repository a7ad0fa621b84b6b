//! Contexts: starting, closing and inspecting one, and the callers waiting
//! for room in a full queue (`overload: :wait`).

use std::sync::atomic::{AtomicU64, Ordering};

use rustler::env::OwnedEnv;
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::context::{Context, ContextConfig, Overload, Waker};

use super::atoms;
use super::handles::ContextResource;

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
        max_queue: option(atoms::max_queue(), defaults.max_queue)?,
        overload: match opts.map_get(atoms::overload()) {
            Ok(mode) if mode.decode::<Atom>()? == atoms::wait() => Overload::Wait,
            _ => Overload::Refuse,
        },
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
    let mode = if ctx.0.is_subinterpreter() {
        atoms::subinterpreter()
    } else {
        atoms::main()
    };
    ctx.0
        .stats()
        .encode(env)
        .map_put(atoms::mode().encode(env), mode)
}

/// The caller holding `ticket` (`{:wait, id, ticket}` from `submit/6`)
/// gives up waiting.
#[rustler::nif]
fn context_cancel_wait(ticket: ResourceArc<WaitTicket>) -> Atom {
    ticket.give_up();
    atoms::ok()
}

/// A caller's turn in a full queue: `{:wait, id, ticket}` from `submit/6`.
/// Passed back to `submit/6` after `{:py_room, id}`, it takes the place
/// kept for the caller. Given up (`context_cancel_wait/1`), or dropped
/// unused (its process died), it passes that place, or the turn, on: a
/// place kept for a caller that never comes back is never lost.
pub(super) struct WaitTicket {
    ctx: Context,
    /// The id waited under; 0 once used or given up.
    id: AtomicU64,
}

#[rustler::resource_impl]
impl rustler::Resource for WaitTicket {}

impl WaitTicket {
    pub(super) fn new(ctx: Context, id: u64) -> WaitTicket {
        WaitTicket {
            ctx,
            id: AtomicU64::new(id),
        }
    }

    /// True when this is a turn in `ctx`'s queue.
    pub(super) fn is_for(&self, ctx: &Context) -> bool {
        self.ctx.same_as(ctx)
    }

    /// The id, to claim the place with; `None` once taken.
    pub(super) fn take(&self) -> Option<u64> {
        Some(self.id.swap(0, Ordering::SeqCst)).filter(|&id| id != 0)
    }

    /// Stops waiting, passing on a place kept for this caller.
    pub(super) fn give_up(&self) {
        if let Some(id) = self.take() {
            self.ctx.cancel_wait(id);
        }
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        self.give_up();
    }
}

/// Tells a BEAM process waiting for room in a full queue that a place is
/// kept for it: `{:py_room, id}`.
pub(super) struct RoomWaker {
    pub(super) pid: LocalPid,
    pub(super) id: u64,
}

impl Waker for RoomWaker {
    fn wake(self: Box<Self>) -> bool {
        let RoomWaker { pid, id } = *self;
        // Workers wake waiters; a caller giving up its turn, or a context
        // closing, wakes one from a scheduler thread, where the mailer
        // sends it (and it counts as woken even if the process died
        // meanwhile: its ticket, dropped with it, passes the place on).
        super::mailer::send(&mut OwnedEnv::new(), &pid, |env| {
            (atoms::py_room(), id).encode(env)
        })
        .is_ok()
    }
}
