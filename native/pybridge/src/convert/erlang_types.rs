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
pub enum BeamId {
    Pid,
    Ref,
}

/// A new `erlang.Pid`/`erlang.Ref` of the attached interpreter.
pub fn new_beam_id<'py>(
    py: Python<'py>,
    kind: BeamId,
    etf: &[u8],
) -> Result<Bound<'py, PyAny>, ConvertError> {
    let fail = |e| ConvertError::python(&format!("cannot create an erlang.{kind:?}"), e);
    let state = Interp::current().state(py).map_err(fail)?;
    let class = match kind {
        BeamId::Pid => &state.pid_type,
        BeamId::Ref => &state.ref_type,
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
    let kind = if ty.is(state.pid_type.bind(py)) {
        BeamId::Pid
    } else if ty.is(state.ref_type.bind(py)) {
        BeamId::Ref
    } else {
        return Ok(None);
    };
    let etf = obj
        .getattr("_etf")
        .and_then(|b| Ok(b.cast_into::<PyBytes>()?.as_bytes().to_vec()))
        .map_err(read)?;
    Ok(Some(match kind {
        BeamId::Pid => Value::Pid(etf),
        BeamId::Ref => Value::Ref(etf),
    }))
}
