//! BEAM terms ⇄ [`Value`]: [`decode`] (on schedulers, within a budget) and
//! [`encode`] (on worker threads). Both read or write the external term
//! format by hand for big integers and non-Latin-1 atoms
//! ([`crate::convert::etf`], tested without a BEAM).
//!
//! BEAM → Value: integers → Int/BigInt; floats → Float; binaries → Str when
//! valid UTF-8, else Bytes; `true`/`false` → Bool, `nil` → None, other atoms
//! → Str; lists → List; tuples → Tuple; maps → Map; `%MapSet{}` → Set;
//! `%Py.Bytes{data: bin}` → Bytes; `%Py.Object{ref: r}` → Object; pids and
//! references → Pid/Ref (external term format). Funs, ports, bitstrings and
//! improper lists are errors.
//!
//! Value → BEAM: the reverse; nan/inf/-inf floats → `:nan`, `:infinity`,
//! `:neg_infinity`; Str and Bytes → binaries; Set → `%MapSet{}`; Object →
//! `%Py.Object{ref: ResourceArc<ObjectResource>, type: binary, repr: binary}`.

mod decode;
mod encode;
mod keys;

pub use decode::{decode, DecodeError};
pub use encode::encode;

#[cfg(doc)]
use crate::convert::Value;
