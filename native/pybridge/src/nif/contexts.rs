//! Contexts: starting, closing and inspecting one.

use rustler::{Atom, Encoder, Env, NifResult, ResourceArc, Term};

use crate::context::{Context, ContextConfig};

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
