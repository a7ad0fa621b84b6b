//! Running one job under the GIL: eval, exec, call, attribute access, reload.

use pyo3::exceptions::{PyNameError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::convert::from_py::{from_py_within, to_object, Limits};
use crate::convert::to_py::{map_to_dict, to_py, to_py_tuple};
use crate::convert::{ConvertError, Value};
use crate::runtime::Interp;

use super::code_cache::Mode;
use super::namespace::Namespace;
use super::request::{Awaiting, CallState, Code, ErrorInfo, ErrorKind, Job, Outcome};
use super::stream;
use super::ContextState;

/// Why a job failed before it could produce an outcome.
enum Failure {
    Python(PyErr),
    Convert(ConvertError),
}

impl From<PyErr> for Failure {
    fn from(err: PyErr) -> Self {
        Failure::Python(err)
    }
}

impl From<ConvertError> for Failure {
    fn from(err: ConvertError) -> Self {
        Failure::Convert(err)
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// Runs `job` for the call `state`; the result is converted within the
/// configured item cap and stops early if the call is cancelled or late.
pub(super) fn run(py: Python<'_>, context: &ContextState, job: Job, state: &CallState) -> Outcome {
    let cancelled = || state.is_cancelled();
    let limits = Limits {
        deadline: state.deadline,
        cancelled: Some(&cancelled),
        ..Limits::default()
    };
    // What `eval`, `call` and `call_method` return is awaited when it is a
    // coroutine (an `async def` function's result).
    let awaits = matches!(
        job,
        Job::Eval { .. } | Job::Call { .. } | Job::CallMethod { .. }
    );
    let result = match job {
        Job::Next { iter, max } => return stream::next(py, &iter, max, &limits),
        Job::Close { iter } => return stream::close(py, &iter),
        Job::Iterate(inner) => {
            let iterator = run_job(py, context, *inner).and_then(|obj| match obj {
                Some(obj) => Ok(stream::iterate(&obj)?),
                None => Err(PyTypeError::new_err("there is nothing to iterate").into()),
            });
            return match iterator {
                Ok(iterator) => Outcome::Value(Value::Object(to_object(&iterator))),
                Err(failure) => failed(py, failure, state),
            };
        }
        job => run_job(py, context, job),
    };
    // A coroutine is awaited on the interpreter's event loop, which replies.
    if let (true, Ok(Some(obj))) = (awaits, &result) {
        if is_coroutine(py, obj) {
            return Outcome::Await(Awaiting {
                coroutine: obj.clone().unbind(),
                batch: false,
            });
        }
    }
    let result = result.and_then(|obj| match obj {
        Some(obj) => Ok(Some(from_py_within(&obj, &limits)?)),
        None => Ok(None),
    });
    match result {
        Ok(Some(value)) => Outcome::Value(value),
        Ok(None) => Outcome::Done,
        Err(failure) => failed(py, failure, state),
    }
}

/// A native coroutine (what calling an `async def` function returns).
fn is_coroutine(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
    Interp::current()
        .state(py)
        .is_ok_and(|state| obj.get_type().is(state.coroutine_type.bind(py)))
}

/// The outcome of a job that failed.
fn failed(py: Python<'_>, failure: Failure, state: &CallState) -> Outcome {
    match failure {
        Failure::Convert(err) => {
            let late = state.is_cancelled()
                || state
                    .deadline
                    .is_some_and(|d| std::time::Instant::now() >= d);
            let kind = if late {
                ErrorKind::Timeout
            } else {
                ErrorKind::Conversion
            };
            Outcome::Error(ErrorInfo::new(kind, err.0))
        }
        Failure::Python(err) => {
            // A callback that got no answer before the call's deadline
            // raised pybridge.Timeout: the call timed out.
            let timed_out = state
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
                && Interp::current()
                    .timeout_class()
                    // SAFETY: the GIL is held; the class is alive for the
                    // interpreter's whole life.
                    .map(|class| unsafe { Bound::from_borrowed_ptr(py, class) })
                    .is_some_and(|class| err.get_type(py).is(&class));
            if timed_out {
                Outcome::Error(ErrorInfo::new(
                    ErrorKind::Timeout,
                    format!("Python call exceeded its timeout: {}", err.value(py)),
                ))
            } else {
                Outcome::Error(error_info(py, err))
            }
        }
    }
}

/// Runs a job that makes one object (or none), unconverted.
fn run_job<'py>(
    py: Python<'py>,
    context: &ContextState,
    job: Job,
) -> Result<Option<Bound<'py, PyAny>>> {
    match job {
        Job::Eval {
            code,
            locals,
            namespace,
        } => eval(py, context, &code, &locals, &namespace).map(Some),
        Job::Exec { code, namespace } => exec(py, context, &code, &namespace).map(|()| None),
        Job::Call {
            module,
            function,
            args,
            kwargs,
            namespace,
        } => call(py, &module, &function, &args, &kwargs, namespace.as_deref()).map(Some),
        Job::GetAttr { obj, name } => obj
            .bind(py)
            .map_err(Failure::from)
            .and_then(|o| Ok(o.getattr(PyString::new(py, &name))?))
            .map(Some),
        Job::CallMethod {
            obj,
            name,
            args,
            kwargs,
        } => obj
            .bind(py)
            .map_err(Failure::from)
            .and_then(|o| Ok(o.getattr(PyString::new(py, &name))?))
            .and_then(|m| invoke(py, &m, &args, &kwargs))
            .map(Some),
        Job::Reload { module } => Interp::current()
            .state(py)
            .and_then(|state| state.reload.bind(py).call1((module,)))
            .map(|_| None)
            .map_err(Failure::from),
        Job::Iterate(_) | Job::Next { .. } | Job::Close { .. } => Err(PyTypeError::new_err(
            "a stream job cannot be nested in another (pybridge bug)",
        )
        .into()),
    }
}

fn eval<'py>(
    py: Python<'py>,
    context: &ContextState,
    code: &Code,
    locals: &[(Value, Value)],
    namespace: &Namespace,
) -> Result<Bound<'py, PyAny>> {
    let globals = namespace.dict(py)?;
    let code = compiled(py, context, Mode::Eval, code)?;
    if locals.is_empty() {
        Ok(eval_code(py, &code, &globals)?)
    } else {
        with_locals(py, &globals, locals, || Ok(eval_code(py, &code, &globals)?))
    }
}

fn exec(py: Python<'_>, context: &ContextState, code: &Code, namespace: &Namespace) -> Result<()> {
    let globals = namespace.dict(py)?;
    let code = compiled(py, context, Mode::Exec, code)?;
    eval_code(py, &code, &globals)?;
    Ok(())
}

/// Makes `locals` visible to one evaluation: they are set in the namespace
/// for its duration and the previous bindings restored afterwards. Unlike a
/// separate locals dict, this lets comprehensions and lambdas see them too.
/// A name the evaluation itself rebound (through a function's `global`
/// statement, or `:=`) keeps its new value.
fn with_locals<'py, T>(
    py: Python<'py>,
    globals: &Bound<'py, PyDict>,
    locals: &[(Value, Value)],
    run: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut shadowed = Vec::with_capacity(locals.len());
    let mut bind = || -> Result<()> {
        for (key, value) in locals {
            let key = to_py(py, key)?;
            let value = to_py(py, value)?;
            let previous = globals.get_item(&key)?;
            globals.set_item(&key, &value)?;
            shadowed.push((key, value, previous));
        }
        Ok(())
    };
    let bound = bind();
    let result = bound.and_then(|()| run());
    for (key, placed, previous) in shadowed.into_iter().rev() {
        let still_ours = match globals.get_item(&key) {
            Ok(Some(current)) => current.is(&placed),
            _ => false,
        };
        if !still_ours {
            continue;
        }
        let restored = match previous {
            Some(value) => globals.set_item(&key, value),
            None => globals.del_item(&key),
        };
        // A failure here would mean the dict was tampered with mid-call;
        // the call's own result matters more, so only keep the first error.
        if let Err(err) = restored {
            if result.is_ok() {
                return Err(err.into());
            }
        }
    }
    result
}

fn eval_code<'py>(
    py: Python<'py>,
    code: &Bound<'py, PyAny>,
    globals: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: we hold the GIL (`py`); `code` is a code object made by
    // `compile`, and `globals` a dict, as PyEval_EvalCode requires. It
    // returns a new reference or NULL with an exception set.
    unsafe {
        let result = ffi::PyEval_EvalCode(code.as_ptr(), globals.as_ptr(), globals.as_ptr());
        Bound::from_owned_ptr_or_err(py, result)
    }
}

/// The compiled code for `code`, from the context's cache when possible.
fn compiled<'py>(
    py: Python<'py>,
    context: &ContextState,
    mode: Mode,
    code: &Code,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(cached) = context.code_cache.lock().get(mode, code.as_bytes()) {
        return Ok(cached.bind(py).clone());
    }
    let source: Bound<'py, PyAny> = match code {
        Code::Text(text) => PyString::new(py, text).into_any(),
        Code::Bytes(bytes) => PyBytes::new(py, bytes).into_any(),
    };
    let state = Interp::current().state(py)?;
    // The builtin taken at set-up, never a Python helper user code could
    // have replaced; no flags inherited (`dont_inherit`).
    let compiled = state
        .compile
        .bind(py)
        .call1((source, SOURCE_NAME, mode.as_str(), 0, true))?;
    check_code(&compiled, state.code_type.bind(py))?;
    context.stats.compiled();
    context
        .code_cache
        .lock()
        .insert(mode, code.as_bytes(), compiled.clone().unbind());
    Ok(compiled)
}

/// The file name compiled code reports in tracebacks.
const SOURCE_NAME: &str = "<pybridge>";

/// `CO_OPTIMIZED | CO_NEWLOCALS`: set on function bodies, never on
/// module-level code.
const FUNCTION_BODY_FLAGS: u32 = 0x1 | 0x2;

/// Lets only module-level code objects reach `PyEval_EvalCode`, which runs
/// whatever code object it is given: anything but a code object, or the
/// body of a function (which expects arguments, and cells for its free
/// variables), crashes the interpreter there.
pub(super) fn check_code(
    compiled: &Bound<'_, PyAny>,
    code_type: &Bound<'_, PyAny>,
) -> PyResult<()> {
    // An exact type check: code objects cannot be subclassed, and
    // isinstance could be fooled by a `__class__` property.
    if !compiled.get_type().is(code_type) {
        return Err(PyTypeError::new_err(format!(
            "pybridge can only evaluate code objects, not {}",
            compiled.get_type().name()?
        )));
    }
    let free_vars = compiled.getattr("co_freevars")?.len()?;
    let flags: u32 = compiled.getattr("co_flags")?.extract()?;
    if free_vars > 0 || flags & FUNCTION_BODY_FLAGS != 0 {
        return Err(PyTypeError::new_err(
            "pybridge can only evaluate module-level code objects, not a function's body \
             (with arguments or free variables)",
        ));
    }
    Ok(())
}

fn call<'py>(
    py: Python<'py>,
    module: &str,
    function: &str,
    args: &[Value],
    kwargs: &[(Value, Value)],
    namespace: Option<&Namespace>,
) -> Result<Bound<'py, PyAny>> {
    #[cfg(test)]
    if module == "__pybridge_test_panic__" {
        panic!("a test panic");
    }
    let function_name = PyString::new(py, function);
    let callable = match (module, namespace) {
        ("__main__", Some(namespace)) => namespace
            .dict(py)?
            .get_item(&function_name)?
            .ok_or_else(|| PyNameError::new_err(format!("name '{function}' is not defined")))?,
        _ => import(py, module)?.getattr(&function_name)?,
    };
    invoke(py, &callable, args, kwargs)
}

fn invoke<'py>(
    py: Python<'py>,
    callable: &Bound<'py, PyAny>,
    args: &[Value],
    kwargs: &[(Value, Value)],
) -> Result<Bound<'py, PyAny>> {
    let args = to_py_tuple(py, args)?;
    Ok(if kwargs.is_empty() {
        callable.call1(args)?
    } else {
        callable.call(args, Some(&map_to_dict(py, kwargs)?))?
    })
}

/// A loaded module from `sys.modules`, importing it on first use.
fn import<'py>(py: Python<'py>, module: &str) -> PyResult<Bound<'py, PyAny>> {
    let name = PyString::new(py, module);
    // SAFETY: we hold the GIL; `name` is a str. PyImport_GetModule returns a
    // new reference, or NULL with or without an exception set.
    let loaded =
        unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyImport_GetModule(name.as_ptr())) };
    match loaded {
        Some(module) => Ok(module),
        None => {
            if let Some(err) = PyErr::take(py) {
                return Err(err);
            }
            Ok(py.import(name)?.into_any())
        }
    }
}

/// `%Py.Error{}` material for a Python exception.
pub(crate) fn error_info(py: Python<'_>, err: PyErr) -> ErrorInfo {
    let name = err
        .get_type(py)
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let value = err.value(py);
    let message = value
        .str()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let traceback = Interp::current()
        .state(py)
        .and_then(|state| {
            state
                .format_exception
                .bind(py)
                .call1((value, err.traceback(py)))
        })
        .and_then(|text| text.extract::<String>())
        .ok();
    ErrorInfo {
        kind: ErrorKind::Python(name),
        message,
        traceback,
    }
}
