//! Python's output and log records, delivered to the BEAM.
//!
//! Every interpreter's `sys.stdout` and `sys.stderr` are writers that hand
//! their text here (`pybridge._BeamWriter`), and `logging`'s last-resort
//! handler hands its records here (`pybridge.LogHandler`). Where they go:
//!
//! * **During a call** (the thread runs a call a BEAM process waits on):
//!   to that process, as `{tag, :io, {stream, text}}` or `{tag, :log,
//!   {levelno, name, message}}` tagged like the call's reply. `Py.Call`'s
//!   receive writes the text to the process's group leader (so it shows in
//!   IEx and in `ExUnit.CaptureIO`) or logs the record, before the reply,
//!   which the same thread sends after them ([`crate::callback::notify`]).
//! * **Anywhere else** (threads Python started, finalisers): to the
//!   installed [`Sink`], the BEAM's `Py.Output` process, which logs them
//!   with `Logger`.
//!
//! The BEAM side (the sink's messages, installing it) is `nif/output.rs`;
//! the native functions Python calls are in [`python`].

pub mod python;

use std::sync::Arc;

use parking_lot::RwLock;

use crate::convert::Value;

/// Where output and records go when no call waits for them.
pub trait Sink: Send + Sync {
    /// Sends `{kind, payload}`; false when it could not be delivered.
    fn send(&self, kind: &str, payload: &Value) -> bool;
}

static SINK: RwLock<Option<Arc<dyn Sink>>> = RwLock::new(None);

/// Installs the BEAM's sink (None when the application stops: output made
/// outside calls is then dropped).
pub fn install(sink: Option<Arc<dyn Sink>>) {
    *SINK.write() = sink;
}

/// Sends `{kind, payload}` to the caller of the call this thread runs;
/// false when the thread runs no call (or its caller is gone).
pub fn to_caller(kind: &str, payload: &Value) -> bool {
    matches!(crate::callback::notify(kind, payload), Some(Ok(())))
}

/// Sends `{kind, payload}` to the sink; false when none is installed.
pub fn to_sink(kind: &str, payload: &Value) -> bool {
    let sink = SINK.read().clone();
    sink.is_some_and(|sink| sink.send(kind, payload))
}

/// The payload of a piece of text written to `stream` (`"stdout"`, `"stderr"`).
pub fn text(stream: &str, text: &str) -> Value {
    Value::Tuple(vec![Value::Str(stream.into()), Value::Str(text.into())])
}

/// The payload of a log record.
pub fn record(levelno: i64, name: &str, message: &str) -> Value {
    Value::Tuple(vec![
        Value::Int(levelno),
        Value::Str(name.into()),
        Value::Str(message.into()),
    ])
}
