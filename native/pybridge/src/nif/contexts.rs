//! Contexts: starting, closing and inspecting one, and the callers waiting
//! for room in a full queue (`overload: :wait`).

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

/// The caller waiting under `id` (`{:wait, id}` from `submit/5`) gives up.
#[rustler::nif]
fn context_cancel_wait(ctx: ResourceArc<ContextResource>, id: u64) -> Atom {
    ctx.0.cancel_wait(id);
    atoms::ok()
}

/// Tells a BEAM process waiting for room in a full queue that there is
/// some: `{:py_room, id}`.
pub(super) struct RoomWaker {
    pub(super) pid: LocalPid,
    pub(super) id: u64,
}

impl Waker for RoomWaker {
    fn wake(self: Box<Self>) -> bool {
        let RoomWaker { pid, id } = *self;
        let send = move || {
            OwnedEnv::new()
                .send_and_clear(&pid, |env| (atoms::py_room(), id).encode(env))
                .is_ok()
        };
        if rustler::thread::is_scheduler_thread() {
            // Waiters are woken by workers; only a caller giving up or a
            // context closing wakes one from a scheduler, where a message
            // can only be sent through the calling process's env. Rare, so
            // a short thread sends it (and the room counts as taken even if
            // the waiter died meanwhile: its next call frees it).
            std::thread::Builder::new()
                .name("py-room".into())
                .spawn(move || {
                    send();
                })
                .is_ok()
        } else {
            send()
        }
    }
}
