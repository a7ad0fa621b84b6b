//! The monitor of a leader whose call did not answer at once: set up by
//! `coalesce_mark/3` with the call it records, removed when the flight is
//! taken. Should the leader die first, its flight is ended here when
//! nobody is joined to it: its call cancelled (nobody waits for it any
//! more) and its end reported to `Py.Coalesce.Tables`, which counts it
//! (`{:py_coalesce_leader_down, group}`, the flight's group, all it
//! counts). When joiners are in, each monitors the leader itself and
//! the first to see it die takes the flight over (`Py.Coalesce.Leader`);
//! one that leaves and then finds the leader dead ends the flight if
//! nobody else is in (`coalesce_take_alone/1`). Either this monitor or
//! that joiner sees both the death and the empty flight, whatever the
//! order: the leader's flight never outlives it unnoticed.
//!
//! No process per call does this: a monitor set up in the NIF costs a
//! fraction of the process `Py.Coalesce.Leader` spawned to watch its
//! leader before.

use std::sync::{Mutex, Weak};

use rustler::{Encoder, Env, LocalPid, Monitor, OwnedEnv, ResourceArc};

use super::key::group_term;
use super::{FlightArc, SavedCall, TABLE};
use crate::context;
use crate::nif::handles::CallResource;
use crate::nif::mailer;

/// Who counts a dead leader's flight ended here (`coalesce_reporter/1`).
static REPORTER: Mutex<Option<LocalPid>> = Mutex::new(None);

mod kinds {
    rustler::atoms! { py_coalesce_leader_down }
}

/// The resource the leader's monitor belongs to: the flight it watches,
/// not kept alive by it (the flight holds this through its saved call).
pub struct LeaderWatch(Weak<<FlightArc as std::ops::Deref>::Target>);

#[rustler::resource_impl]
impl rustler::Resource for LeaderWatch {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        let Some(flight) = self.0.upgrade() else {
            return;
        };
        let Some(taken) = TABLE.take_alone(&flight) else {
            return;
        };
        if let Some(call) = &taken.call {
            call.cancel();
        }
        report(flight.key());
    }
}

/// A monitor of a flight's leader.
pub struct Watch {
    resource: ResourceArc<LeaderWatch>,
    monitor: Monitor,
}

impl Watch {
    /// Monitors the leader of `flight` (None if it could not be: the
    /// leader is the caller, alive; a joiner still sees it die).
    pub fn start(env: Env<'_>, flight: &FlightArc) -> Option<Watch> {
        let resource = ResourceArc::new(LeaderWatch(std::sync::Arc::downgrade(flight)));
        let monitor = resource.monitor(Some(env), &flight.owner())?;
        Some(Watch { resource, monitor })
    }
}

impl SavedCall {
    /// Removes the leader's monitor (the flight was taken).
    pub fn unwatch(&self, env: Env<'_>) {
        if let Some(w) = &self.watch {
            w.resource.demonitor(Some(env), &w.monitor);
        }
    }

    /// Cancels the recorded call, `{handle, ref}`.
    fn cancel(&self) {
        self.env.run(|env| {
            if let Ok((handle, _)) = self
                .term
                .load(env)
                .decode::<(ResourceArc<CallResource>, rustler::Term)>()
            {
                context::cancel(&handle.0);
            }
        });
    }
}

/// Tells the reporter that the flight of `key` (its encoding) ended with
/// its leader's death: sends it the flight's group.
fn report(key: &[u8]) {
    let Some(to) = REPORTER.lock().ok().and_then(|r| *r) else {
        return;
    };
    let mut env = OwnedEnv::new();
    // A reporter that is gone (restarting) misses this count only.
    let _ = mailer::send(&mut env, &to, |e| {
        // A key read back: its group always decodes (else `nil` is counted).
        let group = group_term(e, key).unwrap_or_else(|| crate::nif::atoms::nil().encode(e));
        (kinds::py_coalesce_leader_down(), group).encode(e)
    });
}

/// Makes `pid` the process told of dead leaders' flights ended here.
#[rustler::nif]
fn coalesce_reporter(pid: LocalPid) -> rustler::Atom {
    if let Ok(mut r) = REPORTER.lock() {
        *r = Some(pid);
    }
    crate::nif::atoms::ok()
}
