//! Process namespaces: one Python namespace per (BEAM process, context).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::request::CallState;
use super::ContextState;

/// How often a call waiting for a namespace checks that it was not
/// cancelled meanwhile.
const WAIT_TICK: Duration = Duration::from_millis(5);

/// The namespace of one BEAM process in one context.
///
/// The BEAM side keeps it in the owning process' dictionary, so it is dropped
/// when that process exits. The dict is created on first use and handed
/// back to the context to be released under the GIL on drop.
///
/// A call whose caller gave up (a timeout) leaves no trace in it: every call
/// that can be cancelled runs with a copy of the bindings it found, which
/// are restored if it is cancelled, and the process's next call waits for
/// that before it starts (see [`Namespace::enter`]).
#[derive(Debug)]
pub struct Namespace {
    context: Arc<ContextState>,
    dict: OnceLock<Py<PyDict>>,
    /// The calls running on this namespace. A process's calls follow each
    /// other, so there is one at most, except after a cancellation.
    running: Mutex<Vec<Arc<CallState>>>,
    /// Signalled when a call leaves.
    left: Condvar,
}

impl Namespace {
    pub(super) fn new(context: Arc<ContextState>) -> Self {
        Namespace {
            context,
            dict: OnceLock::new(),
            running: Mutex::new(Vec::new()),
            left: Condvar::new(),
        }
    }

    /// True when this namespace belongs to the context `context`.
    pub(super) fn belongs_to(&self, context: &Arc<ContextState>) -> bool {
        Arc::ptr_eq(&self.context, context)
    }

    /// The namespace dict, created with `__name__ = "__main__"` on first use.
    pub(super) fn dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(dict) = self.dict.get() {
            return Ok(dict.bind(py).clone());
        }
        let dict = PyDict::new(py);
        dict.set_item("__name__", "__main__")?;
        dict.set_item("__builtins__", py.import("builtins")?)?;
        // On a free-threaded Python two calls may get here at once: the
        // first to store its dict wins, and both use that one.
        let mut created = false;
        let stored = self.dict.get_or_init(|| {
            created = true;
            dict.unbind()
        });
        if created {
            self.context.stats.namespace_created();
        }
        Ok(stored.bind(py).clone())
    }

    /// Starts the call `state` on this namespace.
    ///
    /// If an earlier call on it was cancelled but is still running (blocked
    /// in C code, where an interrupt cannot reach it), this waits, without
    /// the GIL, until that call has stopped and its changes were undone;
    /// returns None if `state` is cancelled meanwhile. A call that can be
    /// cancelled (it has a deadline) gets a copy of the bindings to restore.
    pub(super) fn enter(
        self: &Arc<Self>,
        py: Python<'_>,
        state: &Arc<CallState>,
    ) -> PyResult<Option<Entry>> {
        let blocked = |running: &Vec<Arc<CallState>>| running.iter().any(|c| c.is_cancelled());
        let entered = {
            let mut running = self.running.lock();
            if blocked(&running) {
                None
            } else {
                running.push(state.clone());
                Some(())
            }
        };
        if entered.is_none() {
            let entered = py.detach(|| {
                let mut running = self.running.lock();
                while blocked(&running) {
                    if state.is_cancelled() {
                        return false;
                    }
                    self.left.wait_for(&mut running, WAIT_TICK);
                }
                running.push(state.clone());
                true
            });
            if !entered {
                return Ok(None);
            }
        }
        let mut entry = Entry {
            namespace: self.clone(),
            state: state.clone(),
            before: None,
        };
        if state.deadline.is_some() {
            entry.before = Some(self.dict(py)?.copy()?.unbind());
        }
        Ok(Some(entry))
    }
}

/// A call's stay in a namespace, from [`Namespace::enter`] to
/// [`Entry::leave`] (or its drop).
pub(super) struct Entry {
    namespace: Arc<Namespace>,
    state: Arc<CallState>,
    /// The bindings as the call found them.
    before: Option<Py<PyDict>>,
}

impl Entry {
    /// Ends the call's stay: if it was cancelled (`replied` false), first
    /// puts back the bindings it found, so nothing it set or deleted stays.
    /// Objects it changed in place stay changed.
    pub(super) fn leave(mut self, py: Python<'_>, replied: bool) {
        if let (false, Some(before), Some(dict)) =
            (replied, self.before.take(), self.namespace.dict.get())
        {
            // Best effort: a key whose comparison raises is left as it is.
            let _ = restore(dict.bind(py), before.bind(py));
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut running = self.namespace.running.lock();
        running.retain(|c| !Arc::ptr_eq(c, &self.state));
        self.namespace.left.notify_all();
    }
}

/// Makes `dict` hold exactly the bindings of `before`: names added since go,
/// names rebound or deleted get their old value back.
fn restore(dict: &Bound<'_, PyDict>, before: &Bound<'_, PyDict>) -> PyResult<()> {
    let names: Bound<'_, PyList> = dict.keys();
    for name in names.iter() {
        if !before.contains(&name)? {
            dict.del_item(&name)?;
        }
    }
    for (name, value) in before.iter() {
        let current = dict.get_item(&name)?;
        if !current.is_some_and(|c| c.is(&value)) {
            dict.set_item(&name, &value)?;
        }
    }
    Ok(())
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(dict) = self.dict.take() {
            self.context.stats.namespace_released();
            self.context.release(dict.into_any());
        }
    }
}
