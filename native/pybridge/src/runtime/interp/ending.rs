//! Ending a sub-interpreter when its last handle goes, on a thread of its
//! own.

use pyo3::ffi;
use pyo3::prelude::*;

use super::{Interp, InterpState, Kind};

impl Drop for Interp {
    fn drop(&mut self) {
        if self.kind == Kind::Main {
            return;
        }
        // Ending an interpreter needs a thread state of its own: do it on a
        // fresh thread, so that the thread dropping the last handle (a BEAM
        // scheduler, an exiting worker) is never attached elsewhere, and is
        // not held up while the interpreter's modules are finalised.
        let ending = Ending {
            keeper: self.keeper,
            state: std::mem::ManuallyDrop::new(self.state.take()),
            garbage: std::mem::ManuallyDrop::new(std::mem::take(&mut *self.garbage.lock())),
        };
        // If no thread can be started, the interpreter and its objects are
        // leaked (the closure is dropped unrun, and Ending drops nothing):
        // ending it from here could deadlock or crash.
        let _ = std::thread::Builder::new()
            .name("py-end-interp".into())
            .spawn(move || ending.end());
    }
}

/// What is left of a sub-interpreter to end. Its references are dropped only
/// by [`Ending::end`], attached; dropped otherwise they are leaked.
struct Ending {
    keeper: *mut ffi::PyThreadState,
    state: std::mem::ManuallyDrop<Option<InterpState>>,
    garbage: std::mem::ManuallyDrop<Vec<Py<PyAny>>>,
}

// SAFETY: moved once to the thread that ends the interpreter, which attaches
// to it before touching any of the references.
unsafe impl Send for Ending {}

impl Ending {
    fn end(self) {
        let Ending {
            keeper,
            state,
            garbage,
        } = self;
        // SAFETY: no thread runs Python in this interpreter any more: every
        // worker, call and monitor use holds an Arc<Interp>, and this is the
        // drop of the last one (a thread Python code started itself is
        // joined or stopped by Py_EndInterpreter). `keeper` is its first
        // thread state, detached since creation: attached here, it holds the
        // interpreter's GIL while the references are released (raw decrefs:
        // this thread is not attached as far as PyO3 knows, and a PyO3 drop
        // would defer them), then Py_EndInterpreter finalises the
        // interpreter with it and leaves no thread state current.
        unsafe {
            ffi::PyEval_RestoreThread(keeper);
            for obj in std::mem::ManuallyDrop::into_inner(garbage) {
                ffi::Py_DecRef(obj.into_ptr());
            }
            if let Some(state) = std::mem::ManuallyDrop::into_inner(state) {
                let InterpState {
                    support,
                    timeout,
                    compile,
                    code_type,
                    coroutine_type,
                    format_exception,
                    reload,
                    pid_type,
                    ref_type,
                    etf_slot,
                    seal_slot,
                    pickle_loads,
                } = state;
                ffi::Py_DecRef(support.into_ptr());
                for obj in [
                    timeout,
                    compile,
                    code_type,
                    coroutine_type,
                    format_exception,
                    reload,
                    pid_type,
                    ref_type,
                    etf_slot,
                    seal_slot,
                    pickle_loads,
                ] {
                    ffi::Py_DecRef(obj.into_ptr());
                }
            }
            ffi::Py_EndInterpreter(keeper);
        }
    }
}
