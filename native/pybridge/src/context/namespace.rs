//! Process namespaces: one Python namespace per (BEAM process, context).

use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ContextState;

/// The namespace of one BEAM process in one context.
///
/// The BEAM side keeps it in the owning process' dictionary, so it is dropped
/// when that process exits. The dict is created on first use, under the GIL,
/// and handed back to the context to be released under the GIL on drop.
#[derive(Debug)]
pub struct Namespace {
    context: Arc<ContextState>,
    dict: OnceLock<Py<PyDict>>,
}

impl Namespace {
    pub(super) fn new(context: Arc<ContextState>) -> Self {
        Namespace {
            context,
            dict: OnceLock::new(),
        }
    }

    /// True when this namespace belongs to the context `context`.
    pub(super) fn belongs_to(&self, context: &Arc<ContextState>) -> bool {
        Arc::ptr_eq(&self.context, context)
    }

    /// The namespace dict, created with `__name__ = "__main__"` on first use.
    pub(super) fn dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(dict) = self.dict.get() {
            return Ok(dict.bind(py).clone());
        }
        let dict = PyDict::new(py);
        dict.set_item("__name__", "__main__")?;
        dict.set_item("__builtins__", py.import("builtins")?)?;
        // Only one thread holds the GIL, so nobody can have set it meanwhile.
        let _ = self.dict.set(dict.clone().unbind());
        self.context.stats.namespace_created();
        Ok(dict)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(dict) = self.dict.take() {
            self.context.stats.namespace_released();
            self.context.release(dict.into_any());
        }
    }
}
