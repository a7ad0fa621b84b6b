//! Runtime control: starting the embedded interpreter.

use rustler::{Atom, Encoder, Env, NifResult, Term};

use crate::runtime::{self, InitConfig};

use super::atoms;

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
    let max_result_items = match get(atoms::max_result_items()) {
        Some(t) => Some(t.decode::<usize>()?),
        None => None,
    };
    let batch_priority =
        get(atoms::executor_priority()) != Some(atoms::normal().encode(config.get_env()));
    let restore_sigchld = get(atoms::restore_sigchld()) == Some(atoms::true_().encode(env));
    let config = InitConfig {
        program,
        site_dirs: strings(atoms::site_dirs())?,
        python_path: strings(atoms::python_path())?,
        switch_interval,
        batch_priority,
        restore_sigchld,
        max_result_items,
    };
    Ok(match runtime::initialize(&config) {
        Ok(()) => atoms::ok().encode(env),
        Err(message) => (atoms::error(), message).encode(env),
    })
}
