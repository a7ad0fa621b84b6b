//! The Rustler layer: decode terms, call the core, encode the answer.
//! Nothing here runs Python.
//!
//! This file is the registry: it names what `Py.Native` exports and where
//! each piece lives, one file per concept. A new concept adds a file here
//! (and its core a folder beside `context/`).
//!
//! | NIF                                                | file            |
//! |----------------------------------------------------|-----------------|
//! | `init/1`                                           | [`runtime`]     |
//! | `context_new/3`, `context_close/1`, `context_info/1`, `context_cancel_wait/1` | [`contexts`] |
//! | `namespace_new/1`                                  | [`handles`]     |
//! | `submit/6`, `submit_dirty/6`, `cancel/1`, `redirect/2` | [`calls`]   |
//! | `shared_dict_*` (`Py.SharedDict`)                  | [`shared_dict`] |
//! | `callback_reply/2`, `callback_reply_dirty/2`, `callback_reply_inline/2`, `callback_setup/1` | [`callbacks`] |
//! | `output_setup/1` (Python's output and log records)  | [`output`]      |
//! | `coalesce_*` (`Py.Coalesce`'s in-flight table)      | [`coalesce`]    |
//!
//! Threads: `shared_dict/events.rs` delivers SharedDict events and lock
//! releases to BEAM processes, and their telemetry (`shared_dict_telemetry/1`)
//! to `Py.Telemetry.Relay`.
//!
//! Resources (all in [`handles`]): `ContextResource`, `NamespaceResource`,
//! `CallResource`, `ObjectResource`; `DictResource` in [`shared_dict`];
//! `SlotResource` (a callback's reply slot) in [`callbacks`]; `WaitTicket`
//! (a caller's turn in a full queue) in [`contexts`]; `FlightResource`
//! (an execution in flight, `Py.Coalesce`) in [`coalesce`].
//!
//! Support: [`reply`] (how an outcome gets back to the caller), [`mailer`]
//! (sending a message from any thread, scheduler threads included), [`error`]
//! (error kinds as atoms), [`term`]
//! (BEAM terms ⇄ [`crate::convert::Value`]), [`atoms`].

mod atoms;
mod callbacks;
mod calls;
mod coalesce;
mod contexts;
mod error;
mod handles;
mod mailer;
mod output;
mod reply;
mod runtime;
mod shared_dict;
mod term;

rustler::init!("Elixir.Py.Native");
