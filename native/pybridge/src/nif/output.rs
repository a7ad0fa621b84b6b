//! Python's output and log records outside calls: the sink that sends
//! them to the BEAM's `Py.Output` process (installed with `output_setup/1`)
//! as `{:io, {stream, text}}` and `{:log, {levelno, name, message}}`.
//! During a call they go to the caller instead (see [`crate::output`] and
//! `Caller::notify` in `nif/callbacks.rs`).

use std::sync::Arc;

use rustler::env::OwnedEnv;
use rustler::{Atom, Encoder, LocalPid, Term};

use crate::convert::Value;
use crate::output::{self, Sink};

use super::atoms;
use super::term::encode;

struct Process(LocalPid);

impl Sink for Process {
    fn send(&self, kind: &str, payload: &Value) -> bool {
        if rustler::thread::is_scheduler_thread() {
            // Python never runs on a scheduler thread; nothing to send from.
            return false;
        }
        OwnedEnv::new()
            .send_and_clear(&self.0, |env| {
                let kind = match Atom::from_str(env, kind) {
                    Ok(atom) => atom.encode(env),
                    Err(_) => atoms::nil().encode(env),
                };
                (kind, encode(env, payload)).encode(env)
            })
            .is_ok()
    }
}

/// `output_setup(pid | nil)`: the process that logs output made outside
/// calls, or `nil` when it stops (such output is then dropped).
#[rustler::nif]
fn output_setup(pid: Term<'_>) -> Atom {
    match pid.decode::<LocalPid>() {
        Ok(pid) => output::install(Some(Arc::new(Process(pid)))),
        Err(_) => output::install(None),
    }
    atoms::ok()
}
