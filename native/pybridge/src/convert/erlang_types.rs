//! BEAM pids and references in Python: `erlang.Pid` and `erlang.Ref`.
//!
//! The classes are written in Python (python/erlang/__init__.py) and
//! executed in every interpreter pybridge starts, so that each interpreter —
//! the main one and each sub-interpreter context — has classes of its own
//! (a type object must not be shared between interpreters with their own
//! GIL). They hold the term in the external term format and its
//! [seal](super::seal); this module builds them from, and reads them back
//! into, [`Value::Pid`]/[`Value::Ref`].
//!
//! Python cannot call the classes; only this module makes instances, through
//! `object.__new__` and the slot descriptors the interpreter's state captured
//! at start (so a patched class cannot divert them). Reading one back checks
//! its seal: an instance Python made by other means is refused.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::runtime::Interp;

use super::seal::{seal, verify, Sealed};
use super::{ConvertError, Value};

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeamId {
    Pid,
    Ref,
}

impl BeamId {
    fn sealed(self) -> Sealed {
        match self {
            BeamId::Pid => Sealed::Pid,
            BeamId::Ref => Sealed::Ref,
        }
    }
}

/// A new, sealed `erlang.Pid`/`erlang.Ref` of the attached interpreter.
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
    let set = intern!(py, "__set__");
    let make = || -> PyResult<Bound<'py, PyAny>> {
        // `object.__new__`: the classes' own `__new__` refuses to run.
        let obj = py
            .get_type::<PyAny>()
            .call_method1(intern!(py, "__new__"), (class.bind(py),))?;
        state
            .etf_slot
            .bind(py)
            .call_method1(set, (&obj, PyBytes::new(py, etf)))?;
        state
            .seal_slot
            .bind(py)
            .call_method1(set, (&obj, seal(kind.sealed(), etf)))?;
        Ok(obj)
    };
    make().map_err(fail)
}

/// The pid or reference `obj` holds, when it is an `erlang.Pid`/`erlang.Ref`
/// of the attached interpreter; an error when it is one the bridge did not
/// make (or whose term was changed since).
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
    let get = |slot: &Py<PyAny>| {
        slot.bind(py)
            .call_method1(intern!(py, "__get__"), (obj, &ty))
            .ok()
    };
    let etf = get(&state.etf_slot)
        .and_then(|b| b.cast_into::<PyBytes>().ok())
        .map(|b| b.as_bytes().to_vec());
    let sealed = get(&state.seal_slot).and_then(|s| s.extract::<u64>().ok());
    match (etf, sealed) {
        (Some(etf), Some(sealed)) if verify(kind.sealed(), &etf, sealed) => Ok(Some(match kind {
            BeamId::Pid => Value::Pid(etf),
            BeamId::Ref => Value::Ref(etf),
        })),
        _ => Err(ConvertError(format!(
            "this erlang.{kind:?} was not made by pybridge (or was altered): only pids and \
             references that came from the BEAM can go back to it"
        ))),
    }
}
