//! The native functions behind `pybridge._BeamWriter` and
//! `pybridge.LogHandler` (python/pybridge/__init__.py), made into a module
//! `pybridge._output_native` in every interpreter (see `runtime/interp/support.rs`).
//! Each returns whether the text or record was delivered.

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// Text written to `stream` during a call: to the call's caller. False
/// outside a call (the writer then buffers it into lines for `line`).
#[pyfunction]
fn write(stream: &str, text: &str) -> bool {
    super::to_caller("io", &super::text(stream, text))
}

/// A whole line written to `stream` outside a call: to the sink (Logger).
#[pyfunction]
fn line(stream: &str, text: &str) -> bool {
    super::to_sink("io", &super::text(stream, text))
}

/// A log record: to the caller during a call, else to the sink.
#[pyfunction]
fn log(levelno: i64, name: &str, message: &str) -> bool {
    let record = super::record(levelno, name, message);
    super::to_caller("log", &record) || super::to_sink("log", &record)
}

/// The module `pybridge._output_native`.
pub fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "pybridge._output_native")?;
    m.add_function(wrap_pyfunction!(write, &m)?)?;
    m.add_function(wrap_pyfunction!(line, &m)?)?;
    m.add_function(wrap_pyfunction!(log, &m)?)?;
    Ok(m)
}
