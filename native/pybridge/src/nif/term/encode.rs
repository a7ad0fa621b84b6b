//! [`Value`] → terms.
//!
//! Encoding runs on worker threads; it is iterative (an explicit stack), so
//! any value can be encoded on any thread.

use std::ffi::c_uint;

use rustler::sys::{self, ErlNifTerm};
use rustler::{Encoder, Env, NewBinary, ResourceArc, Term};

use crate::convert::Value;
use crate::limits::MAX_TUPLE_ARITY;

use crate::convert::etf::etf_big_integer;
use crate::nif::atoms;
use crate::nif::handles::ObjectResource;

/// Encodes a [`Value`] as a term.
///
/// Never fails: an integer too large for the BEAM is encoded as
/// `:integer_too_large`. A pid or reference holds bytes `term_to_binary`
/// made: either the NIF decoded it from a term, or it came back from Python
/// in an `erlang.Pid`/`erlang.Ref` whose seal proves the bridge made it
/// from such a term (Python cannot seal bytes of its own, see
/// `convert/seal.rs`). Were the BEAM to reject them anyway, they would be
/// encoded as their raw binary.
pub fn encode<'a>(env: Env<'a>, v: &Value) -> Term<'a> {
    if let Some(t) = encode_scalar(env, v) {
        return t;
    }
    let mut stack: Vec<EFrame<'_>> = Vec::with_capacity(8);
    stack.push(EFrame::new(v));
    let mut done: Option<Term<'a>> = None;
    loop {
        let Some(top) = stack.last_mut() else {
            return done.unwrap_or_else(|| atoms::nil().encode(env));
        };
        if let Some(t) = done.take() {
            top.accept(t);
        }
        match top.next_child(env) {
            Some(child) => stack.push(EFrame::new(child)),
            None => {
                if let Some(frame) = stack.pop() {
                    done = Some(frame.finish(env));
                }
            }
        }
    }
}

/// Encodes everything but lists, tuples, maps and sets.
#[inline]
fn encode_scalar<'a>(env: Env<'a>, v: &Value) -> Option<Term<'a>> {
    Some(match v {
        Value::Int(i) => i.encode(env),
        Value::Float(f) => {
            if f.is_nan() {
                atoms::nan().encode(env)
            } else if f.is_infinite() {
                if *f > 0.0 {
                    atoms::infinity().encode(env)
                } else {
                    atoms::neg_infinity().encode(env)
                }
            } else {
                f.encode(env)
            }
        }
        Value::Str(s) => s.as_str().encode(env),
        Value::Bytes(b) => NewBinary::from_slice(env, b).into(),
        Value::Bool(true) => atoms::true_().encode(env),
        Value::Bool(false) => atoms::false_().encode(env),
        Value::None => atoms::nil().encode(env),
        Value::BigInt(b) => match i64::try_from(b) {
            Ok(i) => i.encode(env),
            Err(_) => etf_big_integer(b)
                .and_then(|etf| env.binary_to_term(&etf))
                .map(|(t, _)| t)
                .unwrap_or_else(|| atoms::integer_too_large().encode(env)),
        },
        Value::Pid(etf) | Value::Ref(etf) => match env.binary_to_term(etf) {
            Some((t, _)) => t,
            None => NewBinary::from_slice(env, etf).into(),
        },
        Value::Object(o) => {
            let keys = [
                atoms::__struct__().encode(env),
                atoms::ref_().encode(env),
                atoms::type_().encode(env),
                atoms::repr().encode(env),
            ];
            let values = [
                atoms::py_object().encode(env),
                ResourceArc::new(ObjectResource(o.clone())).encode(env),
                o.type_name.as_str().encode(env),
                o.repr.as_str().encode(env),
            ];
            make_map(env, &raw(&keys), &raw(&values))
        }
        Value::List(_) | Value::Tuple(_) | Value::Map(_) | Value::Set(_) => return None,
    })
}

fn raw(terms: &[Term<'_>]) -> Vec<ErlNifTerm> {
    terms.iter().map(Term::as_c_arg).collect()
}

/// A map from keys and values made in `env`; with duplicate keys (a str and
/// bytes with the same content both become the same binary) the last wins.
fn make_map<'a>(env: Env<'a>, keys: &[ErlNifTerm], values: &[ErlNifTerm]) -> Term<'a> {
    let mut out = ErlNifTerm::default();
    let n = keys.len().min(values.len());
    // SAFETY: both arrays hold `n` terms made in `env`; `out` is a valid
    // out-pointer, written only on success.
    let ok = unsafe {
        sys::enif_make_map_from_arrays(env.as_c_arg(), keys.as_ptr(), values.as_ptr(), n, &mut out)
    };
    if ok != 0 {
        // SAFETY: `out` is a map just made in `env`.
        return unsafe { Term::new(env, out) };
    }
    let mut map = Term::map_new(env);
    for (&k, &v) in keys.iter().zip(values) {
        // SAFETY: `k` and `v` were made in `env`.
        let (k, v) = unsafe { (Term::new(env, k), Term::new(env, v)) };
        if let Ok(m) = map.map_put(k, v) {
            map = m;
        }
    }
    map
}

/// A container being encoded.
enum EFrame<'v> {
    /// List or tuple elements, or set members, as raw terms of `env`.
    Terms {
        items: &'v [Value],
        next: usize,
        out: Vec<ErlNifTerm>,
        kind: Kind,
    },
    Map {
        pairs: &'v [(Value, Value)],
        next: usize,
        keys: Vec<ErlNifTerm>,
        values: Vec<ErlNifTerm>,
    },
}

impl<'v> EFrame<'v> {
    /// `v` must be a container (anything else encodes as an empty list).
    fn new(v: &'v Value) -> Self {
        match v {
            Value::List(items) | Value::Tuple(items) | Value::Set(items) => EFrame::Terms {
                items,
                next: 0,
                out: Vec::with_capacity(items.len()),
                kind: match v {
                    Value::List(_) => Kind::List,
                    Value::Tuple(_) => Kind::Tuple,
                    _ => Kind::Set,
                },
            },
            Value::Map(pairs) => EFrame::Map {
                pairs,
                next: 0,
                keys: Vec::with_capacity(pairs.len()),
                values: Vec::with_capacity(pairs.len()),
            },
            _ => EFrame::Terms {
                items: &[],
                next: 0,
                out: Vec::new(),
                kind: Kind::List,
            },
        }
    }

    fn accept(&mut self, t: Term<'_>) {
        match self {
            EFrame::Terms { out, .. } => out.push(t.as_c_arg()),
            EFrame::Map {
                next, keys, values, ..
            } => {
                if keys.len() == values.len() {
                    keys.push(t.as_c_arg());
                } else {
                    values.push(t.as_c_arg());
                    *next += 1;
                }
            }
        }
    }

    /// Encodes scalar children in place; returns the next container child.
    fn next_child(&mut self, env: Env<'_>) -> Option<&'v Value> {
        match self {
            EFrame::Terms {
                items, next, out, ..
            } => {
                let items: &'v [Value] = items;
                while let Some(v) = items.get(*next) {
                    *next += 1;
                    match encode_scalar(env, v) {
                        Some(t) => out.push(t.as_c_arg()),
                        None => return Some(v),
                    }
                }
                None
            }
            EFrame::Map {
                pairs,
                next,
                keys,
                values,
            } => {
                let pairs: &'v [(Value, Value)] = pairs;
                while let Some((k, v)) = pairs.get(*next) {
                    if keys.len() == values.len() {
                        match encode_scalar(env, k) {
                            Some(t) => keys.push(t.as_c_arg()),
                            None => return Some(k),
                        }
                    }
                    match encode_scalar(env, v) {
                        Some(t) => {
                            values.push(t.as_c_arg());
                            *next += 1;
                        }
                        None => return Some(v),
                    }
                }
                None
            }
        }
    }

    fn finish<'a>(self, env: Env<'a>) -> Term<'a> {
        match self {
            EFrame::Terms {
                out,
                kind: Kind::List,
                ..
            } => make_list(env, &out),
            EFrame::Terms {
                out,
                kind: Kind::Tuple,
                ..
            } => make_tuple(env, &out),
            EFrame::Terms {
                out,
                kind: Kind::Set,
                ..
            } => {
                let empty = Term::list_new_empty(env).as_c_arg();
                let values = vec![empty; out.len()];
                let inner = make_map(env, &out, &values);
                let struct_keys = [
                    atoms::__struct__().encode(env),
                    atoms::map().encode(env),
                    atoms::version().encode(env),
                ];
                let struct_values = [atoms::mapset().encode(env), inner, 2.encode(env)];
                make_map(env, &raw(&struct_keys), &raw(&struct_values))
            }
            EFrame::Map { keys, values, .. } => make_map(env, &keys, &values),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    List,
    Tuple,
    Set,
}

/// A list of terms made in `env`.
fn make_list<'a>(env: Env<'a>, items: &[ErlNifTerm]) -> Term<'a> {
    match c_uint::try_from(items.len()) {
        // SAFETY: `items` holds `n` terms made in `env`; the call copies
        // them into a new list in `env`.
        Ok(n) => unsafe {
            Term::new(
                env,
                sys::enif_make_list_from_array(env.as_c_arg(), items.as_ptr(), n),
            )
        },
        Err(_) => cons_list(env, items),
    }
}

/// A list built cell by cell (for more than `c_uint::MAX` items).
fn cons_list<'a>(env: Env<'a>, items: &[ErlNifTerm]) -> Term<'a> {
    let mut list = Term::list_new_empty(env);
    for &t in items.iter().rev() {
        // SAFETY: `t` was made in `env`.
        list = list.list_prepend(unsafe { Term::new(env, t) });
    }
    list
}

/// A tuple of terms made in `env`. Beyond [`MAX_TUPLE_ARITY`] (which
/// `from_py` already refuses) it makes a list instead of a broken tuple.
fn make_tuple<'a>(env: Env<'a>, items: &[ErlNifTerm]) -> Term<'a> {
    match c_uint::try_from(items.len()) {
        Ok(n) if items.len() <= MAX_TUPLE_ARITY => {
            // SAFETY: `items` holds `n` terms made in `env`; the call copies
            // them into a new tuple in `env`.
            unsafe {
                Term::new(
                    env,
                    sys::enif_make_tuple_from_array(env.as_c_arg(), items.as_ptr(), n),
                )
            }
        }
        _ => cons_list(env, items),
    }
}
