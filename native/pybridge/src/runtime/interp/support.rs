//! The Python support modules compiled into the NIF (`pybridge`, `erlang`
//! and its parts), executed in each interpreter on first use, and what
//! pybridge keeps of them.

use std::ffi::CStr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyModule;

/// Source of the `pybridge` module (python/pybridge/__init__.py).
const SUPPORT_SOURCE: &CStr = source(concat!(
    include_str!("../../../../../python/pybridge/__init__.py"),
    "\0"
));
/// Source of `erlang._shared_call` (python/erlang/_shared_call.py), which
/// the `erlang` module re-exports (`SharedCall`, `AsyncSharedCall`, `Stats`).
const SHARED_CALL_SOURCE: &CStr = source(concat!(
    include_str!("../../../../../python/erlang/_shared_call.py"),
    "\0"
));
/// Source of `erlang._shared_dict` (python/erlang/_shared_dict.py), the
/// Python face of SharedDicts over `erlang._shared_dict_native`.
const SHARED_DICT_SOURCE: &CStr = source(concat!(
    include_str!("../../../../../python/erlang/_shared_dict.py"),
    "\0"
));
/// Source of `erlang._callback` (python/erlang/_callback.py): `erlang.call`,
/// `erlang.send`, `erlang.self` and their exceptions, over
/// `erlang._callback_native`.
const CALLBACK_SOURCE: &CStr = source(concat!(
    include_str!("../../../../../python/erlang/_callback.py"),
    "\0"
));
/// Source of `erlang._livedict` (python/erlang/_livedict.py), LiveDict 2.0's
/// API over `erlang._shared_dict`.
const LIVEDICT_SOURCE: &CStr = source(concat!(
    include_str!("../../../../../python/erlang/_livedict.py"),
    "\0"
));
/// Source of the `erlang` module (python/erlang/__init__.py).
const ERLANG_SOURCE: &CStr = source(concat!(
    include_str!("../../../../../python/erlang/__init__.py"),
    "\0"
));

const fn source(text: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(text.as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("a file under python/ contains a NUL byte"),
    }
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
    /// `pickle.loads` (imported by `erlang._shared_dict` at setup): a
    /// pickled SharedDict value read from Python is unpickled with it.
    pub pickle_loads: Py<PyAny>,
}

/// Executes the `erlang` and `pybridge` modules in the attached interpreter
/// and registers them in its `sys.modules`.
pub(super) fn setup(py: Python<'_>) -> PyResult<InterpState> {
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
        pickle_loads: py.import("pickle")?.getattr("loads")?.unbind(),
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
