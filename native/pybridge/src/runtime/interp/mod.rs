//! Python interpreters: the main one, shared by ordinary contexts, and the
//! sub-interpreters of isolated contexts (CPython 3.12+), each with its own
//! GIL, modules and objects.
//!
//! Everything pybridge keeps of an interpreter lives in its [`Interp`]: the
//! `pybridge` and `erlang` modules executed in it, the classes the
//! converters use, and the references to drop in it. Nothing Python is kept
//! in process-wide statics, because an object of one interpreter must never
//! be touched while another one's GIL is held.
//!
//! Rules that keep sub-interpreters sound:
//!
//! * A thread that runs Python in a sub-interpreter has that interpreter's
//!   thread state as the first one it ever made (PyO3 attaches through
//!   `PyGILState_Ensure`, which only knows a thread's first thread state).
//!   [`ThreadState::in_interp`](super::ThreadState::in_interp) makes it.
//! * A Python reference is never dropped without its interpreter attached:
//!   PyO3 would defer the decref to whichever thread attaches next, in any
//!   interpreter. References released from elsewhere go to the owner's
//!   [`garbage`](Interp::release), dropped by its workers.
//! * The monitor touches a sub-interpreter only through [`Interp::service`],
//!   with raw C calls on a thread state made for the occasion.
//! * A sub-interpreter keeps its first thread state until it ends, when the
//!   last [`Arc<Interp>`] goes, on a thread of its own.

mod capi;
mod ending;
mod garbage;
mod subinterp;
mod support;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;

pub(super) use capi::delete_current;
pub use subinterp::{new_subinterpreter, subinterpreters_supported};
pub use support::InterpState;

/// Which kind of interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Main,
    Sub,
}

/// One Python interpreter.
#[derive(Debug)]
pub struct Interp {
    ptr: *mut ffi::PyInterpreterState,
    /// A sub-interpreter's first thread state, kept (detached) until it is
    /// ended with it: CPython 3.12 cannot make a thread state for an
    /// interpreter that has none left.
    keeper: *mut ffi::PyThreadState,
    kind: Kind,
    state: OnceLock<InterpState>,
    garbage: Mutex<Vec<Py<PyAny>>>,
    /// Set while `garbage` is not empty: a lock-free check for the workers.
    /// Changed under `garbage`'s lock; Acquire/Release (AcqRel to swap it)
    /// so a reader that sees it set also sees what was pushed.
    pending: AtomicBool,
}

// SAFETY: `ptr` is only an identifier handed to CPython calls, which do their
// own locking; the Python references inside are only used or dropped with
// this interpreter attached (see the module doc).
unsafe impl Send for Interp {}
// SAFETY: as above; shared access only reads `ptr` and `kind` or goes
// through the OnceLock and Mutex.
unsafe impl Sync for Interp {}

static MAIN: OnceLock<Arc<Interp>> = OnceLock::new();

thread_local! {
    /// The interpreter of this thread's thread state (main when unset).
    static CURRENT: std::cell::Cell<*const Interp> = const { std::cell::Cell::new(std::ptr::null()) };
}

impl Interp {
    /// The main interpreter. The interpreter must be running.
    pub fn main() -> &'static Arc<Interp> {
        MAIN.get_or_init(|| {
            // SAFETY: the interpreter is initialised: callers run after the
            // start (or, in tests, after Python::initialize).
            let ptr = unsafe { capi::main_interpreter() };
            Arc::new(Interp {
                ptr,
                keeper: std::ptr::null_mut(),
                kind: Kind::Main,
                state: OnceLock::new(),
                garbage: Mutex::new(Vec::new()),
                pending: AtomicBool::new(false),
            })
        })
    }

    /// The interpreter the current thread runs Python in. The reference is
    /// for use within the current call only (see below).
    pub(crate) fn current() -> &'static Interp {
        let ptr = CURRENT.with(|c| c.get());
        if ptr.is_null() {
            Interp::main()
        } else {
            // SAFETY: set by `enter` from an `Arc<Interp>` that the thread's
            // ThreadState keeps alive until it calls `leave`; the reference
            // is not kept past that (callers use it within one call).
            unsafe { &*ptr }
        }
    }

    /// The interpreter the current thread runs Python in, as a handle.
    pub fn current_arc() -> Arc<Interp> {
        let ptr = CURRENT.with(|c| c.get());
        if ptr.is_null() {
            Interp::main().clone()
        } else {
            // SAFETY: `ptr` came from Arc::as_ptr of the Arc the thread's
            // ThreadState holds (see `current`), so the allocation is live;
            // taking one more strong count and wrapping it gives a new handle.
            unsafe {
                Arc::increment_strong_count(ptr);
                Arc::from_raw(ptr)
            }
        }
    }

    /// The interpreter the calling thread is attached to, found by its
    /// pointer, also for a thread pybridge did not start (one that Python
    /// code started), whose record [`current`](Self::current) lacks.
    pub(crate) fn running(_py: Python<'_>) -> Option<Arc<Interp>> {
        // SAFETY: the thread is attached (`_py`), so it has a current thread
        // state, whose interpreter this reads.
        let ptr = unsafe { ffi::PyInterpreterState_Get() };
        let main = Interp::main();
        if main.ptr == ptr {
            return Some(main.clone());
        }
        subinterp::SUBS
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|i| i.ptr == ptr)
    }

    /// Runs `f` with `interp` recorded as this thread's interpreter, then
    /// restores the record (for a thread Python started, see `running`).
    pub(crate) fn with_recorded<R>(interp: &Arc<Interp>, f: impl FnOnce() -> R) -> R {
        struct Restore(*const Interp);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(Arc::as_ptr(interp))));
        f()
    }

    /// Records `interp` as this thread's interpreter (`ThreadState::in_interp`).
    pub(super) fn enter(interp: &Arc<Interp>) {
        CURRENT.with(|c| c.set(Arc::as_ptr(interp)));
    }

    /// Forgets this thread's interpreter (ThreadState's drop).
    pub(super) fn leave() {
        CURRENT.with(|c| c.set(std::ptr::null()));
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::PyInterpreterState {
        self.ptr
    }

    /// True when `self` and `other` are the same interpreter (there is one
    /// `Interp` per interpreter).
    pub fn is(&self, other: &Interp) -> bool {
        std::ptr::eq(self, other)
    }

    /// pybridge's modules and classes in this interpreter, set up on first
    /// use. `py` must be attached to this interpreter.
    pub fn state(&self, py: Python<'_>) -> PyResult<&InterpState> {
        if let Some(state) = self.state.get() {
            return Ok(state);
        }
        let state = support::setup(py)?;
        // With the GIL nobody can have set it meanwhile; on free-threaded
        // Python a racing thread may have, and then this copy is dropped
        // here, attached.
        let _ = self.state.set(state);
        self.state
            .get()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("interpreter state lost"))
    }

    /// `pybridge.Timeout` of this interpreter as a raw pointer, once its
    /// state is set up. The pointer stays valid as long as `self`.
    pub fn timeout_class(&self) -> Option<*mut ffi::PyObject> {
        self.state.get().map(|s| s.timeout.as_ptr())
    }

    /// Runs `f` attached to this interpreter on the calling thread through a
    /// thread state made for the occasion, without PyO3 (see the module doc):
    /// for the monitor, whose own thread state belongs to the main
    /// interpreter. The main interpreter is served through `main_tstate`,
    /// also without PyO3, so that no deferred reference (and no finaliser)
    /// is ever dropped on the monitor's or the interrupter's thread.
    ///
    /// # Safety
    /// `f` may only make raw C API calls valid with the GIL held, and the
    /// calling thread must have no thread state attached.
    pub unsafe fn service<R>(
        &self,
        main_tstate: &mut super::ThreadState,
        f: impl FnOnce() -> R,
    ) -> R {
        if self.kind == Kind::Main {
            // SAFETY: `f` only makes raw C API calls under the GIL (caller's
            // promise), and this thread has no thread state attached.
            return unsafe { main_tstate.with_gil_raw(f) };
        }
        // SAFETY: `ptr` is a live sub-interpreter (self is alive, and it ends
        // only when dropped); the new thread state is attached, used and
        // deleted on this thread, which has none attached (caller's promise).
        unsafe {
            let tstate = ffi::PyThreadState_New(self.ptr);
            ffi::PyEval_RestoreThread(tstate);
            let result = f();
            ffi::PyThreadState_Clear(tstate);
            capi::delete_current();
            result
        }
    }
}
