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

use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyModule;

/// Source of the `pybridge` module (python/pybridge/__init__.py).
const SUPPORT_SOURCE: &CStr = source(concat!(
    include_str!("../../../../python/pybridge/__init__.py"),
    "\0"
));
/// Source of `erlang._shared_call` (python/erlang/_shared_call.py), which
/// the `erlang` module re-exports (`SharedCall`, `AsyncSharedCall`, `Stats`).
const SHARED_CALL_SOURCE: &CStr = source(concat!(
    include_str!("../../../../python/erlang/_shared_call.py"),
    "\0"
));
/// Source of `erlang._shared_dict` (python/erlang/_shared_dict.py), the
/// Python face of SharedDicts over `erlang._shared_dict_native`.
const SHARED_DICT_SOURCE: &CStr = source(concat!(
    include_str!("../../../../python/erlang/_shared_dict.py"),
    "\0"
));
/// Source of `erlang._callback` (python/erlang/_callback.py): `erlang.call`,
/// `erlang.send`, `erlang.self` and their exceptions, over
/// `erlang._callback_native`.
const CALLBACK_SOURCE: &CStr = source(concat!(
    include_str!("../../../../python/erlang/_callback.py"),
    "\0"
));
/// Source of `erlang._livedict` (python/erlang/_livedict.py), LiveDict 2.0's
/// API over `erlang._shared_dict`.
const LIVEDICT_SOURCE: &CStr = source(concat!(
    include_str!("../../../../python/erlang/_livedict.py"),
    "\0"
));
/// Source of the `erlang` module (python/erlang/__init__.py).
const ERLANG_SOURCE: &CStr = source(concat!(
    include_str!("../../../../python/erlang/__init__.py"),
    "\0"
));

const fn source(text: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(text.as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("a file under python/ contains a NUL byte"),
    }
}

/// Which kind of interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Main,
    Sub,
}

/// What pybridge keeps of one interpreter, created in it on first use.
#[derive(Debug)]
pub struct InterpState {
    /// The `pybridge` module.
    pub support: Py<PyModule>,
    /// `pybridge.Timeout`, raised asynchronously in calls given up on.
    pub timeout: Py<PyAny>,
    /// The genuine `compile` builtin, taken when the interpreter was set
    /// up: code sent to `eval`/`exec` is compiled with it, whatever user code
    /// later does to `builtins` or to the `pybridge` module.
    pub compile: Py<PyAny>,
    /// The type of code objects, checked before evaluating compiled code.
    pub code_type: Py<PyAny>,
    /// The type of native coroutines: a call returning one is awaited on
    /// the interpreter's event loop ([`crate::aio`]).
    pub coroutine_type: Py<PyAny>,
    /// `pybridge.format_exception` and `pybridge.reload` as the module
    /// defined them (replacing the module's attributes changes nothing).
    pub format_exception: Py<PyAny>,
    pub reload: Py<PyAny>,
    /// `erlang.Pid` and `erlang.Ref`.
    pub pid_type: Py<PyAny>,
    pub ref_type: Py<PyAny>,
    /// The slot descriptors of their term and seal, taken at start: the
    /// bridge fills and reads the slots through these alone.
    pub etf_slot: Py<PyAny>,
    pub seal_slot: Py<PyAny>,
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
            let ptr = unsafe { main_interpreter() };
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
        SUBS.lock()
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
        let state = setup(py)?;
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

    /// Hands a reference over to be dropped with this interpreter attached.
    /// Needs no GIL. Returns true when nothing else was waiting, that is
    /// when a collection may need asking for.
    pub fn release(&self, obj: Py<PyAny>) -> bool {
        let mut garbage = self.garbage.lock();
        garbage.push(obj);
        !self.pending.swap(true, Ordering::AcqRel)
    }

    /// True when references are waiting to be dropped.
    pub fn has_garbage(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Drops the released references (and notes the freed memory for
    /// [`trim_if_released`](super::trim_if_released)). `_py` must be attached
    /// to this interpreter. Returns how many there were.
    pub fn collect(&self, _py: Python<'_>) -> usize {
        if !self.has_garbage() {
            return 0;
        }
        let garbage = {
            let mut list = self.garbage.lock();
            self.pending.store(false, Ordering::Release);
            std::mem::take(&mut *list)
        };
        let n = garbage.len();
        drop(garbage);
        if n > 0 {
            super::note_release();
        }
        n
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
            delete_current();
            result
        }
    }
}

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
                ] {
                    ffi::Py_DecRef(obj.into_ptr());
                }
            }
            ffi::Py_EndInterpreter(keeper);
        }
    }
}

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

/// Looks up a C API function that is not in the stable ABI.
fn symbol(name: &CStr) -> Option<*mut libc::c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT only reads the global symbol table;
    // the name is a valid NUL-terminated C string.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!sym.is_null()).then_some(sym)
}

/// `PyThreadState_DeleteCurrent`: deletes the attached thread state and
/// releases its GIL.
///
/// # Safety
/// The calling thread must have a cleared thread state attached.
pub(super) unsafe fn delete_current() {
    type DeleteCurrent = unsafe extern "C" fn();
    match symbol(c"PyThreadState_DeleteCurrent") {
        // SAFETY: the symbol is CPython's `void PyThreadState_DeleteCurrent(void)`
        // (public since 3.9); the caller has a cleared thread state attached.
        Some(sym) => unsafe { std::mem::transmute::<*mut libc::c_void, DeleteCurrent>(sym)() },
        // SAFETY: same effect through the stable ABI: detach, then delete.
        None => unsafe { ffi::PyThreadState_Delete(ffi::PyEval_SaveThread()) },
    }
}

/// The main interpreter.
///
/// # Safety
/// The interpreter must be initialised; without `PyInterpreterState_Main`
/// (not in the stable ABI, but exported by every CPython we support) the
/// caller must also hold the main interpreter's GIL.
unsafe fn main_interpreter() -> *mut ffi::PyInterpreterState {
    type Main = unsafe extern "C" fn() -> *mut ffi::PyInterpreterState;
    match symbol(c"PyInterpreterState_Main") {
        // SAFETY: CPython's `PyInterpreterState *PyInterpreterState_Main(void)`,
        // valid once the runtime is initialised.
        Some(sym) => unsafe { std::mem::transmute::<*mut libc::c_void, Main>(sym)() },
        // SAFETY: the caller holds the GIL of the main interpreter.
        None => unsafe { ffi::PyInterpreterState_Get() },
    }
}

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
static SUBS: Mutex<Vec<std::sync::Weak<Interp>>> = Mutex::new(Vec::new());

/// Executes the `erlang` and `pybridge` modules in the attached interpreter
/// and registers them in its `sys.modules`.
fn setup(py: Python<'_>) -> PyResult<InterpState> {
    let modules = py.import("sys")?.getattr("modules")?;
    // Before `erlang`, which imports it from sys.modules.
    let shared_call = PyModule::from_code(
        py,
        SHARED_CALL_SOURCE,
        c"erlang/_shared_call.py",
        c"erlang._shared_call",
    )?;
    modules.set_item("erlang._shared_call", &shared_call)?;
    let native = crate::shared_dict::python::module(py)?;
    modules.set_item("erlang._shared_dict_native", &native)?;
    let shared_dict = PyModule::from_code(
        py,
        SHARED_DICT_SOURCE,
        c"erlang/_shared_dict.py",
        c"erlang._shared_dict",
    )?;
    modules.set_item("erlang._shared_dict", &shared_dict)?;
    let native = crate::callback::python::module(py)?;
    modules.set_item("erlang._callback_native", &native)?;
    let callback = PyModule::from_code(
        py,
        CALLBACK_SOURCE,
        c"erlang/_callback.py",
        c"erlang._callback",
    )?;
    modules.set_item("erlang._callback", &callback)?;
    let livedict = PyModule::from_code(
        py,
        LIVEDICT_SOURCE,
        c"erlang/_livedict.py",
        c"erlang._livedict",
    )?;
    modules.set_item("erlang._livedict", &livedict)?;
    let erlang = PyModule::from_code(py, ERLANG_SOURCE, c"erlang/__init__.py", c"erlang")?;
    modules.set_item("erlang", &erlang)?;
    let support = PyModule::from_code(py, SUPPORT_SOURCE, c"pybridge/__init__.py", c"pybridge")?;
    modules.set_item("pybridge", &support)?;
    // Output and log records to the BEAM (crate::output).
    let output = crate::output::python::module(py)?;
    modules.set_item("pybridge._output_native", &output)?;
    support.call_method1("_install_output", (output,))?;
    let compile = genuine_compile(py)?;
    let code_type = compile
        .call1(("0", "<pybridge>", "eval"))?
        .get_type()
        .into_any()
        .unbind();
    Ok(InterpState {
        timeout: support.getattr("Timeout")?.unbind(),
        compile: compile.unbind(),
        code_type,
        coroutine_type: py.import("types")?.getattr("CoroutineType")?.unbind(),
        format_exception: support.getattr("format_exception")?.unbind(),
        reload: support.getattr("reload")?.unbind(),
        pid_type: erlang.getattr("Pid")?.unbind(),
        ref_type: erlang.getattr("Ref")?.unbind(),
        etf_slot: slot(&erlang, "_etf")?,
        seal_slot: slot(&erlang, "_seal")?,
        support: support.unbind(),
    })
}

/// The slot descriptor `name` of `erlang._Term`, checked to be one.
fn slot(erlang: &Bound<'_, PyModule>, name: &str) -> PyResult<Py<PyAny>> {
    let py = erlang.py();
    let descriptor = erlang
        .getattr("_Term")?
        .getattr("__dict__")?
        .get_item(name)?;
    let member = py.import("types")?.getattr("MemberDescriptorType")?;
    if !descriptor.get_type().is(&member) {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "erlang._Term.{name} is not a slot"
        )));
    }
    Ok(descriptor.unbind())
}

/// `builtins.compile`, checked to be the built-in function itself: a
/// function defined in C whose module is `builtins` and whose name is
/// `compile`, which no Python code can fake (a `.pth` file run at start-up
/// could have replaced the attribute).
fn genuine_compile(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let builtins = py.import("builtins")?;
    let compile = builtins.getattr("compile")?;
    // SAFETY: `compile` is a live object and the GIL is held;
    // PyCFunction_Check only reads its type.
    let is_c_function = unsafe { ffi::PyCFunction_Check(compile.as_ptr()) } != 0;
    let genuine = is_c_function
        && compile.getattr("__self__")?.is(&builtins)
        && compile.getattr("__name__")?.extract::<String>()? == "compile";
    if !genuine {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "builtins.compile was replaced before pybridge started",
        ));
    }
    Ok(compile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::PyObject;

    /// An interpreter record of the main interpreter that only this test
    /// knows, so the monitor (which collects the main one's garbage) cannot
    /// interfere.
    fn private_main() -> Arc<Interp> {
        Arc::new(Interp {
            ptr: Interp::main().ptr,
            keeper: std::ptr::null_mut(),
            kind: Kind::Main,
            state: OnceLock::new(),
            garbage: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
        })
    }

    fn alive(weak: &Py<PyAny>) -> bool {
        Python::attach(|py| !weak.bind(py).call0().expect("deref").is_none())
    }

    #[test]
    fn a_handle_dropped_without_the_gil_waits_for_its_interpreter() {
        Python::initialize();
        let owner = private_main();
        let (weak, handle) = Python::attach(|py| {
            let obj = py
                .eval(c"type('Tracked', (), {})()", None, None)
                .expect("object");
            let weak = py
                .import("weakref")
                .and_then(|w| w.call_method1("ref", (&obj,)))
                .expect("weakref");
            let handle = PyObject::with_owner(obj.unbind(), owner.clone());
            (weak.unbind(), handle)
        });
        drop(handle);
        assert!(owner.has_garbage(), "the reference went to its interpreter");
        assert!(alive(&weak), "not dropped through PyO3's deferred pool");
        assert_eq!(Python::attach(|py| owner.collect(py)), 1);
        assert!(!owner.has_garbage());
        assert!(!alive(&weak), "dropped once collected, attached");
    }

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
