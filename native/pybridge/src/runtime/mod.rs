//! Starting the embedded interpreter and the thread states that run Python.
//!
//! libpython is not linked into this library: the loader NIF `dlopen`s the
//! libpython of the Python chosen at application start (with `RTLD_GLOBAL`, so
//! C extension modules resolve their symbols) before this library is loaded.
//! Everything here is written against the stable ABI, so one build serves any
//! CPython >= 3.10.

pub mod alloc;
mod interp;
mod sigchld;
mod spin_wait;
mod thread;

use std::ffi::CString;
use std::sync::{mpsc, OnceLock};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyList;

pub use alloc::{note_release, trim_if_released};
pub use interp::{new_subinterpreter, subinterpreters_supported, Interp, InterpState, Kind};
pub use spin_wait::{poll_for, CpuHint};
pub use thread::ThreadState;

/// What the application start found out about the chosen Python.
#[derive(Debug, Clone)]
pub struct InitConfig {
    /// The Python executable; the interpreter computes `sys.prefix` and
    /// `sys.executable` from it exactly as that executable would.
    pub program: Option<String>,
    /// Directories added with `site.addsitedir` (a venv's site-packages).
    pub site_dirs: Vec<String>,
    /// Directories prepended to `sys.path`.
    pub python_path: Vec<String>,
    /// `sys.setswitchinterval`, in seconds; Python's default when `None`.
    pub switch_interval: Option<f64>,
    /// Run executor threads as low-priority batch work (Linux).
    pub batch_priority: bool,
    /// Restore `SIGCHLD`'s default disposition, so that the processes
    /// Python starts keep their exit status until Python waits for them
    /// (see `sigchld.rs`).
    pub restore_sigchld: bool,
    /// The cap on items per converted result; the default when `None`.
    pub max_result_items: Option<usize>,
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            program: None,
            site_dirs: Vec::new(),
            python_path: Vec::new(),
            switch_interval: None,
            batch_priority: true,
            restore_sigchld: false,
            max_result_items: None,
        }
    }
}

static BATCH_PRIORITY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether executor threads lower their CPU priority (set at start).
pub fn batch_priority() -> bool {
    BATCH_PRIORITY.load(std::sync::atomic::Ordering::Relaxed)
}

static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

/// Starts the interpreter once for the life of the OS process.
///
/// The interpreter is initialised on a dedicated thread that stays parked
/// afterwards, so Python's "main thread" is never a BEAM scheduler. Calling
/// it again returns the first call's result.
pub fn initialize(config: &InitConfig) -> Result<(), String> {
    STARTED
        .get_or_init(|| {
            BATCH_PRIORITY.store(config.batch_priority, std::sync::atomic::Ordering::Relaxed);
            if let Some(n) = config.max_result_items {
                crate::convert::from_py::set_max_items(n);
            }
            let (tx, rx) = mpsc::channel();
            let config = config.clone();
            std::thread::Builder::new()
                .name("pybridge-main".into())
                .stack_size(crate::limits::PYTHON_THREAD_STACK_BYTES)
                .spawn(move || {
                    let result = init_on_this_thread(&config);
                    let ok = result.is_ok();
                    let _ = tx.send(result);
                    if ok {
                        // Keep the main thread state alive without the GIL.
                        loop {
                            std::thread::park();
                        }
                    }
                })
                .map_err(|e| format!("cannot start the Python main thread: {e}"))?;
            rx.recv()
                .map_err(|_| "the Python main thread died during start-up".to_string())?
        })
        .clone()
}

/// True once [`initialize`] has succeeded.
pub fn is_initialized() -> bool {
    matches!(STARTED.get(), Some(Ok(())))
}

fn init_on_this_thread(config: &InitConfig) -> Result<(), String> {
    // SAFETY: Py_IsInitialized may be called at any time, with or without the GIL.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Err("a Python interpreter is already running in this process".into());
    }
    check_abi()?;
    if config.restore_sigchld {
        sigchld::restore_default()?;
    }
    alloc::tune_malloc();
    if let Some(program) = &config.program {
        set_program_name(program)?;
    }
    // SAFETY: called once, on this thread, before any other Python API use;
    // initsigs = 0 keeps Python's signal handlers out of the BEAM.
    unsafe { ffi::Py_InitializeEx(0) };
    let setup = Python::attach(|py| setup_interpreter(py, config).map_err(|e| describe(py, e)));
    // SAFETY: this thread holds the GIL since Py_InitializeEx; releasing it
    // here lets the executors take it. The thread state is kept (this thread
    // parks forever) and never used again.
    unsafe { ffi::PyEval_SaveThread() };
    setup
}

fn setup_interpreter(py: Python<'_>, config: &InitConfig) -> PyResult<()> {
    let sys = py.import("sys")?;
    if let Some(interval) = config.switch_interval {
        sys.call_method1("setswitchinterval", (interval,))?;
    }
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    for (i, dir) in config.python_path.iter().enumerate() {
        path.insert(i, dir)?;
    }
    if !config.site_dirs.is_empty() {
        let site = py.import("site")?;
        for dir in &config.site_dirs {
            site.call_method1("addsitedir", (dir,))?;
        }
    }
    Interp::main().state(py)?;
    Ok(())
}

/// Refuses a libpython of the other kind: a free-threaded libpython lays out
/// every object differently from one with the GIL, so a library built for one
/// would corrupt memory in the other. `_Py_MergeZeroLocalRefcount` is
/// exported by free-threaded builds only.
fn check_abi() -> Result<(), String> {
    // SAFETY: dlsym with RTLD_DEFAULT only reads the global symbol table; the
    // name is a valid NUL-terminated C string.
    let lib_free_threaded =
        !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Py_MergeZeroLocalRefcount".as_ptr()) }
            .is_null();
    match (cfg!(Py_GIL_DISABLED), lib_free_threaded) {
        (true, false) => Err("this pybridge library is built for free-threaded Python, \
             but the loaded libpython has the GIL"
            .into()),
        (false, true) => Err("the loaded libpython is free-threaded, \
             but this pybridge library is built for Pythons with the GIL"
            .into()),
        _ => Ok(()),
    }
}

/// Points the interpreter at the chosen executable so that `sys.prefix`,
/// `sys.exec_prefix` and `sys.executable` come out as that executable reports
/// them (venvs included, through their `pyvenv.cfg`).
fn set_program_name(program: &str) -> Result<(), String> {
    type SetProgramName = unsafe extern "C" fn(*const libc::wchar_t);
    let c_program = CString::new(program).map_err(|_| "python path contains a NUL byte")?;
    // SAFETY: dlsym with RTLD_DEFAULT only reads the global symbol table; the
    // name is a valid NUL-terminated C string.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"Py_SetProgramName".as_ptr()) };
    if sym.is_null() {
        // Removed in some future CPython: fall back to the default search.
        return Ok(());
    }
    // SAFETY: Py_DecodeLocale may be called before Py_Initialize (documented);
    // it returns a PyMem_RawMalloc'ed buffer or NULL.
    let wide = unsafe { ffi::Py_DecodeLocale(c_program.as_ptr(), std::ptr::null_mut()) };
    if wide.is_null() {
        return Err(format!("cannot decode the python path {program:?}"));
    }
    // SAFETY: `sym` is CPython's Py_SetProgramName, whose C signature is
    // `void (const wchar_t *)`. CPython keeps the pointer until finalisation,
    // so `wide` is deliberately leaked.
    unsafe {
        let set: SetProgramName = std::mem::transmute::<*mut libc::c_void, SetProgramName>(sym);
        set(wide);
    }
    Ok(())
}

/// Formats a Python exception as `Type: message` for start-up errors.
pub fn describe(py: Python<'_>, err: PyErr) -> String {
    let name = err
        .get_type(py)
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    format!("{name}: {}", err.value(py))
}
