//! A Python thread state owned by one of our own threads for its whole life.

use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;

use super::interp::{self, Interp, Kind};

/// The thread state of an executor thread.
///
/// Creating a thread state is expensive, so a worker makes one when it starts
/// and keeps it (without the GIL) between batches of calls, instead of letting
/// `PyGILState_Ensure`/`Release` create and destroy one per call.
///
/// A thread makes at most one: PyO3 attaches through `PyGILState_Ensure`,
/// which knows only the first thread state of a thread (see
/// [`interp`](super::interp)).
pub struct ThreadState {
    tstate: *mut ffi::PyThreadState,
    gstate: ffi::PyGILState_STATE,
    ident: u64,
    interp: Arc<Interp>,
}

impl ThreadState {
    /// Creates this thread's thread state in the main interpreter. The
    /// interpreter must be running.
    pub fn in_main() -> ThreadState {
        ThreadState::in_interp(Interp::main())
    }

    /// Creates this thread's thread state in `interp`. The interpreter must
    /// be running and this thread must have no thread state yet.
    pub fn in_interp(interp: &Arc<Interp>) -> ThreadState {
        // SAFETY (both branches): the interpreter is initialised and this
        // thread has no thread state yet (the caller's promise). Main: Ensure
        // creates one and takes the GIL. Sub: PyThreadState_New creates one,
        // bound as this thread's first (so PyGILState_Ensure finds it), and
        // RestoreThread takes that interpreter's GIL.
        let gstate = unsafe {
            match interp.kind() {
                Kind::Main => ffi::PyGILState_Ensure(),
                Kind::Sub => {
                    ffi::PyEval_RestoreThread(ffi::PyThreadState_New(interp.as_ptr()));
                    ffi::PyGILState_STATE::PyGILState_LOCKED
                }
            }
        };
        // SAFETY: we hold the GIL; the ident identifies this OS thread for
        // PyThreadState_SetAsyncExc.
        let ident = unsafe { ffi::PyThread_get_thread_ident() } as u64;
        // SAFETY: we hold the GIL through the thread state just made.
        let tstate = unsafe { ffi::PyEval_SaveThread() };
        Interp::enter(interp);
        ThreadState {
            tstate,
            gstate,
            ident,
            interp: interp.clone(),
        }
    }

    /// Python's identifier of this thread (`threading.get_ident()`).
    pub fn ident(&self) -> u64 {
        self.ident
    }

    /// The interpreter this thread state belongs to.
    pub fn interp(&self) -> &Arc<Interp> {
        &self.interp
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

    /// Runs `f` holding the GIL on this thread's state, without telling
    /// PyO3: no deferred reference is dropped here, so no Python finaliser
    /// can run on the calling thread (for the monitor and the interrupter,
    /// which must never be held up by user code).
    ///
    /// # Safety
    /// `f` may only make raw C API calls valid with the GIL held, and must not
    /// release it.
    pub unsafe fn with_gil_raw<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // SAFETY: as in `with_gil`; `f` keeps the GIL (caller's promise), so
        // SaveThread releases what RestoreThread took.
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            let result = f();
            self.tstate = ffi::PyEval_SaveThread();
            result
        }
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        Interp::leave();
        // SAFETY: re-attach the detached state on its own thread, then
        // destroy it: the main one through PyGILState_Release (its counter
        // drops to zero), a sub-interpreter's by clearing and deleting it.
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            match self.interp.kind() {
                Kind::Main => ffi::PyGILState_Release(self.gstate),
                Kind::Sub => {
                    ffi::PyThreadState_Clear(self.tstate);
                    interp::delete_current();
                }
            }
        }
    }
}
