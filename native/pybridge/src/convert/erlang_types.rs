//! BEAM pids and references in Python: `erlang.Pid` and `erlang.Ref`.
//!
//! The classes are written in Python (python/erlang/__init__.py) and
//! executed in every interpreter pybridge starts, so that each interpreter —
//! the main one and each sub-interpreter context — has classes of its own
//! (a type object must not be shared between interpreters with their own
//! GIL). They hold the term in the external term format; this module builds
//! them from, and reads them back into, [`Value::Pid`]/[`Value::Ref`].

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::runtime::Interp;

use super::{ConvertError, Value};

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Pid,
    Ref,
}

/// A new `erlang.Pid`/`erlang.Ref` of the attached interpreter.
pub fn new_term<'py>(
    py: Python<'py>,
    term: Term,
    etf: &[u8],
) -> Result<Bound<'py, PyAny>, ConvertError> {
    let what = match term {
        Term::Pid => "an erlang.Pid",
        Term::Ref => "an erlang.Ref",
    };
    let fail = |e| ConvertError::python(&format!("cannot create {what}"), e);
    let state = Interp::current().state(py).map_err(fail)?;
    let class = match term {
        Term::Pid => &state.pid_type,
        Term::Ref => &state.ref_type,
    };
    class.bind(py).call1((PyBytes::new(py, etf),)).map_err(fail)
}

/// The pid or reference `obj` holds, when it is an `erlang.Pid`/`erlang.Ref`
/// of the attached interpreter.
pub fn term_value(obj: &Bound<'_, PyAny>) -> Result<Option<Value>, ConvertError> {
    let py = obj.py();
    let read = |e| ConvertError::python("cannot read an erlang term", e);
    let state = Interp::current().state(py).map_err(read)?;
    let ty = obj.get_type();
    let term = if ty.is(state.pid_type.bind(py)) {
        Term::Pid
    } else if ty.is(state.ref_type.bind(py)) {
        Term::Ref
    } else {
        return Ok(None);
    };
    let etf = obj
        .getattr("_etf")
        .and_then(|b| Ok(b.cast_into::<PyBytes>()?.as_bytes().to_vec()))
        .map_err(read)?;
    Ok(Some(match term {
        Term::Pid => Value::Pid(etf),
        Term::Ref => Value::Ref(etf),
    }))
}
