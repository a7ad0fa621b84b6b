//! Creating sub-interpreters with their own GIL (CPython 3.12+), and the
//! registry of those made.

use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pyo3::ffi;

use super::capi::symbol;
use super::{Interp, Kind};

/// Options of `Py_NewInterpreterFromConfig` (CPython 3.12+ layout).
#[repr(C)]
struct InterpreterConfig {
    use_main_obmalloc: c_int,
    allow_fork: c_int,
    allow_exec: c_int,
    allow_threads: c_int,
    allow_daemon_threads: c_int,
    check_multi_interp_extensions: c_int,
    gil: c_int,
}

/// `PyStatus` (CPython 3.8+ layout).
#[repr(C)]
struct Status {
    kind: c_int,
    func: *const c_char,
    err_msg: *const c_char,
    exitcode: c_int,
}

const OWN_GIL: c_int = 2;

type NewInterpreterFromConfig =
    unsafe extern "C" fn(*mut *mut ffi::PyThreadState, *const InterpreterConfig) -> Status;

/// True when this Python can make sub-interpreters with their own GIL.
pub fn subinterpreters_supported() -> bool {
    symbol(c"Py_NewInterpreterFromConfig").is_some()
}

/// Creates a sub-interpreter with its own GIL. The interpreter must be
/// running; the calling thread must have no thread state attached.
///
/// The creation runs on a short-lived thread: it needs a main-interpreter
/// thread state to start from, and a thread that has made one could never
/// attach to the new interpreter through PyO3 afterwards.
pub fn new_subinterpreter() -> Result<Arc<Interp>, String> {
    let Some(sym) = symbol(c"Py_NewInterpreterFromConfig") else {
        return Err("sub-interpreter contexts need Python 3.12 or newer".into());
    };
    // SAFETY: the symbol is CPython's Py_NewInterpreterFromConfig, whose C
    // signature NewInterpreterFromConfig matches.
    let create = unsafe { std::mem::transmute::<*mut libc::c_void, NewInterpreterFromConfig>(sym) };
    struct Made(*mut ffi::PyInterpreterState, *mut ffi::PyThreadState);
    // SAFETY: the pointers are handed over once, to the Interp that owns
    // them (see Interp).
    unsafe impl Send for Made {}
    let made = std::thread::Builder::new()
        .name("py-new-interp".into())
        .spawn(move || -> Result<Made, String> {
            let config = InterpreterConfig {
                use_main_obmalloc: 0,
                allow_fork: 0,
                allow_exec: 0,
                allow_threads: 1,
                allow_daemon_threads: 0,
                check_multi_interp_extensions: 1,
                gil: OWN_GIL,
            };
            // SAFETY: this fresh thread takes a main thread state (Ensure),
            // as Py_NewInterpreterFromConfig requires one attached. On
            // success the new interpreter's first thread state is attached
            // (own GIL held) and the main GIL released; that thread state is
            // detached and kept, then the main one restored and released.
            // On failure the main thread state is still attached.
            unsafe {
                let gstate = ffi::PyGILState_Ensure();
                let main = ffi::PyThreadState_Get();
                let mut tstate: *mut ffi::PyThreadState = std::ptr::null_mut();
                let status = create(&mut tstate, &config);
                let result = if status.kind == 0 && !tstate.is_null() {
                    let interp = ffi::PyThreadState_GetInterpreter(tstate);
                    // Keep the first thread state, detached (see Interp).
                    let keeper = ffi::PyEval_SaveThread();
                    ffi::PyEval_RestoreThread(main);
                    Ok(Made(interp, keeper))
                } else {
                    let msg = if status.err_msg.is_null() {
                        "unknown error".to_string()
                    } else {
                        CStr::from_ptr(status.err_msg)
                            .to_string_lossy()
                            .into_owned()
                    };
                    Err(format!("cannot create a sub-interpreter: {msg}"))
                };
                ffi::PyGILState_Release(gstate);
                result
            }
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?
        .join()
        .map_err(|_| "the thread creating a sub-interpreter panicked".to_string())??;
    let interp = Arc::new(Interp {
        ptr: made.0,
        keeper: made.1,
        kind: Kind::Sub,
        state: OnceLock::new(),
        garbage: Mutex::new(Vec::new()),
        pending: AtomicBool::new(false),
    });
    let mut subs = SUBS.lock();
    subs.retain(|w| w.strong_count() > 0);
    subs.push(Arc::downgrade(&interp));
    drop(subs);
    Ok(interp)
}

/// Every sub-interpreter made, for [`Interp::running`].
pub(super) static SUBS: Mutex<Vec<std::sync::Weak<Interp>>> = Mutex::new(Vec::new());

#[cfg(test)]
mod tests {
    use pyo3::prelude::*;

    use super::*;

    #[test]
    fn sub_interpreters_exactly_from_python_3_12() {
        Python::initialize();
        let version = Python::attach(|py| py.version_info());
        let made = new_subinterpreter();
        assert_eq!(subinterpreters_supported(), version >= (3, 12));
        match made {
            Ok(interp) => {
                assert_eq!(interp.kind(), Kind::Sub);
                assert!(!interp.is(Interp::main()));
            }
            Err(message) => {
                assert!(version < (3, 12));
                assert_eq!(
                    message,
                    "sub-interpreter contexts need Python 3.12 or newer"
                );
            }
        }
    }
}
