//! A Python thread state owned by one of our own threads for its whole life.

use pyo3::ffi;
use pyo3::prelude::*;

/// The thread state of an executor thread.
///
/// Creating a thread state is expensive, so a worker makes one when it starts
/// and keeps it (without the GIL) between batches of calls, instead of letting
/// `PyGILState_Ensure`/`Release` create and destroy one per call.
pub struct ThreadState {
    tstate: *mut ffi::PyThreadState,
    gstate: ffi::PyGILState_STATE,
    ident: u64,
}

impl ThreadState {
    /// Creates this thread's Python thread state. The interpreter must be running.
    pub fn new() -> ThreadState {
        // SAFETY: the caller guarantees the interpreter is initialised (the
        // runtime starts before any context); this thread has no thread state
        // yet, so Ensure creates one and takes the GIL.
        let gstate = unsafe { ffi::PyGILState_Ensure() };
        // SAFETY: we hold the GIL; the ident identifies this OS thread for
        // PyThreadState_SetAsyncExc.
        let ident = unsafe { ffi::PyThread_get_thread_ident() } as u64;
        // SAFETY: we hold the GIL through the thread state Ensure just made.
        let tstate = unsafe { ffi::PyEval_SaveThread() };
        ThreadState {
            tstate,
            gstate,
            ident,
        }
    }

    /// Python's identifier of this thread (`threading.get_ident()`).
    pub fn ident(&self) -> u64 {
        self.ident
    }

    /// Runs `f` holding the GIL on this thread's state, then releases it.
    pub fn with_gil<R>(&mut self, f: impl FnOnce(Python<'_>) -> R) -> R {
        struct Release<'a>(&'a mut ThreadState);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                // SAFETY: the GIL was taken by RestoreThread below and every
                // PyO3 attach inside `f` has ended, so this thread holds it.
                self.0.tstate = unsafe { ffi::PyEval_SaveThread() };
            }
        }
        // SAFETY: `tstate` was detached by SaveThread on this same thread and
        // is not attached anywhere else.
        unsafe { ffi::PyEval_RestoreThread(self.tstate) };
        let _release = Release(self);
        Python::attach(f)
    }
}

impl Default for ThreadState {
    fn default() -> Self {
        ThreadState::new()
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        // SAFETY: re-attach the detached state on its own thread, then let
        // PyGILState_Release destroy it (its counter drops to zero).
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            ffi::PyGILState_Release(self.gstate);
        }
    }
}
