//! The `pybridge` Python module (python/pybridge/__init__.py), compiled into
//! this library and executed when the interpreter starts.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

const SOURCE: &std::ffi::CStr = {
    const TEXT: &str = concat!(
        include_str!("../../../../python/pybridge/__init__.py"),
        "\0"
    );
    match std::ffi::CStr::from_bytes_with_nul(TEXT.as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("python/pybridge/__init__.py contains a NUL byte"),
    }
};

static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static TIMEOUT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Executes the support module and registers it as `sys.modules["pybridge"]`.
pub(super) fn install(py: Python<'_>) -> PyResult<()> {
    support_module(py).map(|_| ())
}

/// The `pybridge` module.
pub fn support_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    MODULE
        .get_or_try_init(py, || {
            PyModule::from_code(py, SOURCE, c"pybridge/__init__.py", c"pybridge").map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

/// `pybridge.Timeout`, raised asynchronously in calls whose caller gave up.
pub fn timeout_exception(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    TIMEOUT
        .get_or_try_init(py, || {
            support_module(py)?.getattr("Timeout").map(Bound::unbind)
        })
        .map(|t| t.bind(py))
}
