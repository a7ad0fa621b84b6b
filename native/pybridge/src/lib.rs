//! Native core of pybridge: CPython embedded in the BEAM.
//!
//! The crate is split so the core can be tested with `cargo test` without a BEAM:
//!
//! * [`runtime`]  — starting the interpreter, thread states, the GIL.
//! * [`convert`]  — the GIL-free [`convert::Value`] and its conversion to and from Python.
//! * [`aio`]      — coroutines awaited on an event loop per interpreter.
//! * [`context`]  — executors: a queue, worker threads, per-process namespaces, the code cache.
//! * [`shared_dict`] — stores shared by the BEAM and every context, with expiry.
//! * [`coalesce`] — request coalescing's in-flight table (the BEAM side's `coalesce:`).
//! * `nif`        — the thin Rustler layer (feature `nif`): decode terms, call the core, encode.
//! * [`limits`]   — every limit (sizes, depths, scheduler budgets, batch sizes) in one place.

#[global_allocator]
static ALLOCATOR: runtime::alloc::BridgeAlloc = runtime::alloc::BridgeAlloc;

pub mod aio;
pub mod callback;
pub mod coalesce;
pub mod context;
pub mod convert;
pub mod limits;
pub mod output;
pub mod runtime;
pub mod shared_dict;

#[cfg(feature = "nif")]
mod nif;
