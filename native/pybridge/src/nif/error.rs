//! The one place the native side's error kinds become terms.
//!
//! Every failure a call can meet on the native side is an [`ErrorKind`]; it
//! reaches the BEAM as `{:error, {kind, message, traceback | nil}}`, which
//! `Py.Call` turns into `%Py.Error{}`. `Py.Error` documents each kind, and
//! the Erlang facade translates them: keep the atoms stable.

use rustler::{Encoder, Env, Term};

use crate::context::{ErrorInfo, ErrorKind};

use super::atoms;

/// `kind` as `%Py.Error{}`'s `type`: the exception class name for Python
/// exceptions, an atom otherwise.
fn kind_term<'a>(env: Env<'a>, kind: &ErrorKind) -> Term<'a> {
    let atom = match kind {
        ErrorKind::Python(name) => return name.encode(env),
        ErrorKind::Conversion => atoms::conversion(),
        ErrorKind::Timeout => atoms::timeout(),
        ErrorKind::Closed => atoms::closed(),
        ErrorKind::NotStarted => atoms::not_started(),
        ErrorKind::Overloaded => atoms::overloaded(),
        ErrorKind::BadArg => atoms::badarg(),
        ErrorKind::Destroyed => atoms::destroyed(),
        ErrorKind::NotInteger => atoms::not_integer(),
        ErrorKind::Backend => atoms::backend(),
        ErrorKind::Internal => atoms::internal(),
    };
    atom.encode(env)
}

/// `{:error, {kind, message, traceback | nil}}`.
pub(super) fn encode_error<'a>(env: Env<'a>, info: &ErrorInfo) -> Term<'a> {
    let traceback = match &info.traceback {
        Some(tb) => tb.encode(env),
        None => atoms::nil().encode(env),
    };
    let error = (kind_term(env, &info.kind), info.message.as_str(), traceback);
    (atoms::error(), error).encode(env)
}

/// `%Py.Error{type: kind, message: message}`, raised from the NIF (for
/// misuse that has no result to return, such as a destroyed shared dict).
pub(super) fn raise(kind: ErrorKind, message: impl Into<String>) -> rustler::Error {
    rustler::Error::RaiseTerm(Box::new(PyError(ErrorInfo::new(kind, message))))
}

struct PyError(ErrorInfo);

impl Encoder for PyError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        let pairs = [
            (
                atoms::__struct__().encode(env),
                atoms::py_error().encode(env),
            ),
            (atoms::__exception__().encode(env), true.encode(env)),
            (atoms::type_().encode(env), kind_term(env, &self.0.kind)),
            (
                atoms::message().encode(env),
                self.0.message.as_str().encode(env),
            ),
            (atoms::traceback().encode(env), atoms::nil().encode(env)),
        ];
        Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| kind_term(env, &self.0.kind))
    }
}
