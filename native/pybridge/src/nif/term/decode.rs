//! Terms → [`Value`].
//!
//! Decoding runs on a scheduler thread (normal: ~1 MB stack, dirty: ~320 KB),
//! so it is iterative: an explicit stack of partly decoded containers, never
//! recursion. Nesting is limited to [`MAX_DEPTH`] levels. An optional budget
//! counts visited nodes; running out gives [`DecodeError::OverBudget`] so the
//! NIF can start again on a dirty scheduler.

use rustler::types::map::MapIterator;
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, ResourceArc, Term, TermType};

use crate::convert::{ConvertError, Value};
use crate::limits::{truncate, BINARY_BYTES_PER_NODE, MAX_DEPTH, TERM_DESCRIPTION_BYTES};

use super::keys::python_collision;
use crate::convert::etf::{parse_etf_atom, parse_etf_integer};
use crate::nif::atoms;
use crate::nif::handles::ObjectResource;

/// Why a term could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The term has no Python equivalent (or nests too deep).
    Convert(ConvertError),
    /// The node budget ran out: decode again without one on a dirty scheduler.
    OverBudget,
}

impl From<ConvertError> for DecodeError {
    fn from(e: ConvertError) -> Self {
        DecodeError::Convert(e)
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Convert(e) => e.fmt(f),
            DecodeError::OverBudget => f.write_str("decoding budget exceeded"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn convert_err(message: String) -> DecodeError {
    DecodeError::Convert(ConvertError(message))
}

/// The term as the BEAM prints it, cut short, for error messages. Only for
/// terms whose printed form is short (funs, ports): printing walks the
/// whole term.
fn describe(term: Term<'_>) -> String {
    truncate(format!("{term:?}"), TERM_DESCRIPTION_BYTES)
}

#[inline]
fn is(term: Term<'_>, atom: Atom) -> bool {
    term.as_c_arg() == atom.as_c_arg()
}

/// Nodes left to visit.
struct Budget {
    left: usize,
}

impl Budget {
    #[inline]
    fn spend(&mut self, nodes: usize) -> Result<(), DecodeError> {
        match self.left.checked_sub(nodes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(DecodeError::OverBudget),
        }
    }

    /// Fails early when `nodes` more cannot fit, without spending them.
    #[inline]
    fn check(&self, nodes: usize) -> Result<(), DecodeError> {
        if nodes > self.left {
            Err(DecodeError::OverBudget)
        } else {
            Ok(())
        }
    }
}

/// Decodes a term into a [`Value`].
///
/// `budget`: the most nodes (terms; binaries weigh 1 + size /
/// [`BINARY_BYTES_PER_NODE`]) to visit before giving up with
/// [`DecodeError::OverBudget`]; `None` for no limit.
pub fn decode(term: Term<'_>, budget: Option<usize>) -> Result<Value, DecodeError> {
    let mut budget = Budget {
        left: budget.unwrap_or(usize::MAX),
    };
    let unlimited = budget.left == usize::MAX;
    match classify(term, &mut budget, unlimited)? {
        Step::Leaf(v) => Ok(v),
        Step::Container(frame) => {
            let mut stack = Vec::with_capacity(8);
            stack.push(frame);
            let result = walk(&mut stack, &mut budget, unlimited);
            // Partial results are dropped without recursion: this thread's
            // stack may be small.
            for frame in stack.drain(..).rev() {
                frame.dispose();
            }
            result
        }
    }
}

fn walk<'a>(
    stack: &mut Vec<Frame<'a>>,
    budget: &mut Budget,
    unlimited: bool,
) -> Result<Value, DecodeError> {
    let mut done: Option<Value> = None;
    loop {
        let Some(top) = stack.last_mut() else {
            return done.ok_or_else(|| convert_err("internal: empty decoding".into()));
        };
        if let Some(v) = done.take() {
            top.accept(v);
        }
        match top.next_child(budget, unlimited)? {
            Some(frame) => {
                if stack.len() >= MAX_DEPTH {
                    frame.dispose();
                    return Err(DecodeError::Convert(ConvertError::too_deep()));
                }
                stack.push(frame);
            }
            None => {
                if let Some(frame) = stack.pop() {
                    done = Some(frame.finish()?);
                }
            }
        }
    }
}

enum Step<'a> {
    Leaf(Value),
    Container(Frame<'a>),
}

/// Decodes a scalar or starts a container.
fn classify<'a>(
    term: Term<'a>,
    budget: &mut Budget,
    unlimited: bool,
) -> Result<Step<'a>, DecodeError> {
    budget.spend(1)?;
    let leaf = match term.get_type() {
        TermType::Integer => match term.decode::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => match parse_etf_integer(term.to_binary().as_slice()) {
                Some(b) => Value::BigInt(b),
                None => return Err(convert_err("cannot decode an integer".into())),
            },
        },
        TermType::Float => match term.decode::<f64>() {
            Ok(f) => Value::Float(f),
            Err(_) => return Err(convert_err("cannot decode a float".into())),
        },
        TermType::Atom => atom_value(term)?,
        TermType::Binary => binary_value(term, budget)?,
        TermType::List => {
            // The length walk sizes the vector exactly and rejects improper
            // lists up front; with a budget it stops as soon as the list
            // cannot fit, so a huge list costs little on a normal scheduler.
            let capacity = if unlimited {
                term.list_length().map_err(|_| improper_list())?
            } else {
                bounded_length(term, budget.left)?
            };
            return Ok(Step::Container(Frame::List {
                rest: term,
                out: Vec::with_capacity(capacity),
            }));
        }
        TermType::Tuple => {
            let terms = get_tuple(term).map_err(|_| convert_err("cannot decode a tuple".into()))?;
            budget.check(terms.len())?;
            return Ok(Step::Container(Frame::Terms {
                out: Vec::with_capacity(terms.len()),
                terms,
                next: 0,
                set: false,
            }));
        }
        TermType::Map => return map_step(term, budget),
        TermType::Pid => Value::Pid(term.to_binary().as_slice().to_vec()),
        TermType::Ref => Value::Ref(term.to_binary().as_slice().to_vec()),
        TermType::Fun => {
            return Err(convert_err(format!(
                "cannot convert a function to Python: {}",
                describe(term)
            )))
        }
        TermType::Port => {
            return Err(convert_err(format!(
                "cannot convert a port to Python: {}",
                describe(term)
            )))
        }
        TermType::Unknown => {
            return Err(convert_err(format!(
                "cannot convert {} to Python",
                describe(term)
            )))
        }
    };
    Ok(Step::Leaf(leaf))
}

/// The length of a proper list, walking at most `limit` cells:
/// [`DecodeError::OverBudget`] if it is longer.
fn bounded_length(list: Term<'_>, limit: usize) -> Result<usize, DecodeError> {
    let mut rest = list;
    let mut len = 0;
    loop {
        match rest.list_get_cell() {
            Ok((_, tail)) => {
                len += 1;
                if len > limit {
                    return Err(DecodeError::OverBudget);
                }
                rest = tail;
            }
            Err(_) if rest.is_empty_list() => return Ok(len),
            Err(_) => return Err(improper_list()),
        }
    }
}

fn improper_list() -> DecodeError {
    convert_err("cannot convert an improper list to Python".into())
}

fn atom_value(term: Term<'_>) -> Result<Value, DecodeError> {
    if is(term, atoms::true_()) {
        return Ok(Value::Bool(true));
    }
    if is(term, atoms::false_()) {
        return Ok(Value::Bool(false));
    }
    if is(term, atoms::nil()) {
        return Ok(Value::None);
    }
    match term.atom_to_string() {
        Ok(s) => Ok(Value::Str(s)),
        // Atoms beyond Latin-1: read the UTF-8 name from the external format.
        Err(_) => parse_etf_atom(term.to_binary().as_slice())
            .map(Value::Str)
            .ok_or_else(|| convert_err("cannot decode an atom".into())),
    }
}

fn binary_value(term: Term<'_>, budget: &mut Budget) -> Result<Value, DecodeError> {
    let bin = Binary::from_term(term).map_err(|_| {
        convert_err(
            "cannot convert a bitstring (its size is not a whole number of bytes) to Python".into(),
        )
    })?;
    let bytes = bin.as_slice();
    budget.spend(bytes.len() / BINARY_BYTES_PER_NODE)?;
    Ok(match std::str::from_utf8(bytes) {
        Ok(s) => Value::Str(s.to_owned()),
        Err(_) => Value::Bytes(bytes.to_vec()),
    })
}

/// Maps, and the structs with a Python meaning.
fn map_step<'a>(term: Term<'a>, budget: &mut Budget) -> Result<Step<'a>, DecodeError> {
    let size = term
        .map_size()
        .map_err(|_| convert_err("cannot decode a map".into()))?;
    budget.check(size)?;
    if size > 0 {
        if let Ok(name) = term.map_get(atoms::__struct__()) {
            if let Some(step) = struct_step(term, name, budget)? {
                return Ok(step);
            }
        }
    }
    let iter = MapIterator::new(term).ok_or_else(|| convert_err("cannot decode a map".into()))?;
    let mut pairs = Vec::with_capacity(size);
    pairs.extend(iter);
    Ok(Step::Container(Frame::Map {
        out: Vec::with_capacity(pairs.len()),
        pairs,
        next: 0,
        in_value: false,
    }))
}

/// `%MapSet{}`, `%Py.Bytes{}` and `%Py.Object{}`; `None` for other structs
/// (plain maps, `__struct__` included).
fn struct_step<'a>(
    term: Term<'a>,
    name: Term<'a>,
    budget: &mut Budget,
) -> Result<Option<Step<'a>>, DecodeError> {
    if is(name, atoms::mapset()) {
        let inner = term
            .map_get(atoms::map())
            .ok()
            .and_then(MapIterator::new)
            .ok_or_else(|| convert_err("cannot decode a %MapSet{} without a map".into()))?;
        let terms: Vec<Term<'a>> = inner.map(|(k, _)| k).collect();
        budget.check(terms.len())?;
        return Ok(Some(Step::Container(Frame::Terms {
            out: Vec::with_capacity(terms.len()),
            terms,
            next: 0,
            set: true,
        })));
    }
    if is(name, atoms::py_bytes()) {
        let data = term
            .map_get(atoms::data())
            .ok()
            .and_then(|d| Binary::from_term(d).ok())
            .ok_or_else(|| convert_err("%Py.Bytes{} needs a binary in :data".into()))?;
        budget.spend(data.len() / BINARY_BYTES_PER_NODE)?;
        return Ok(Some(Step::Leaf(Value::Bytes(data.as_slice().to_vec()))));
    }
    if is(name, atoms::py_object()) {
        let res = term
            .map_get(atoms::ref_())
            .ok()
            .and_then(|r| r.decode::<ResourceArc<ObjectResource>>().ok())
            .ok_or_else(|| {
                convert_err(
                    "%Py.Object{} needs a Python object reference in :ref (made by the Py API)"
                        .into(),
                )
            })?;
        return Ok(Some(Step::Leaf(Value::Object(res.0.clone()))));
    }
    Ok(None)
}

/// A container being decoded.
enum Frame<'a> {
    List {
        /// The cells not yet visited.
        rest: Term<'a>,
        out: Vec<Value>,
    },
    /// A tuple's elements, or a `%MapSet{}`'s members (`set`).
    Terms {
        terms: Vec<Term<'a>>,
        next: usize,
        out: Vec<Value>,
        set: bool,
    },
    Map {
        pairs: Vec<(Term<'a>, Term<'a>)>,
        next: usize,
        /// `out` ends with the decoded key of `pairs[next]` (and a
        /// placeholder value) while its value is being decoded.
        out: Vec<(Value, Value)>,
        in_value: bool,
    },
}

impl<'a> Frame<'a> {
    fn accept(&mut self, v: Value) {
        match self {
            Frame::List { out, .. } | Frame::Terms { out, .. } => out.push(v),
            Frame::Map {
                next,
                out,
                in_value,
                ..
            } => {
                if *in_value {
                    if let Some(last) = out.last_mut() {
                        last.1 = v;
                    }
                    *in_value = false;
                    *next += 1;
                } else {
                    out.push((v, Value::None));
                    *in_value = true;
                }
            }
        }
    }

    /// Decodes scalar children in place; returns the next container child,
    /// or `None` when this container is complete.
    fn next_child(
        &mut self,
        budget: &mut Budget,
        unlimited: bool,
    ) -> Result<Option<Frame<'a>>, DecodeError> {
        match self {
            Frame::List { rest, out } => loop {
                match rest.list_get_cell() {
                    Ok((head, tail)) => {
                        *rest = tail;
                        match classify(head, budget, unlimited)? {
                            Step::Leaf(v) => out.push(v),
                            Step::Container(f) => return Ok(Some(f)),
                        }
                    }
                    Err(_) if rest.is_empty_list() => return Ok(None),
                    Err(_) => return Err(improper_list()),
                }
            },
            Frame::Terms {
                terms, next, out, ..
            } => {
                while let Some(&t) = terms.get(*next) {
                    *next += 1;
                    match classify(t, budget, unlimited)? {
                        Step::Leaf(v) => out.push(v),
                        Step::Container(f) => return Ok(Some(f)),
                    }
                }
                Ok(None)
            }
            Frame::Map {
                pairs,
                next,
                out,
                in_value,
            } => {
                while let Some(&(k, v)) = pairs.get(*next) {
                    if !*in_value {
                        match classify(k, budget, unlimited)? {
                            Step::Leaf(kv) => {
                                out.push((kv, Value::None));
                                *in_value = true;
                            }
                            Step::Container(f) => return Ok(Some(f)),
                        }
                    }
                    match classify(v, budget, unlimited)? {
                        Step::Leaf(vv) => {
                            if let Some(last) = out.last_mut() {
                                last.1 = vv;
                            }
                            *in_value = false;
                            *next += 1;
                        }
                        Step::Container(f) => return Ok(Some(f)),
                    }
                }
                Ok(None)
            }
        }
    }

    fn finish(self) -> Result<Value, DecodeError> {
        let collision = match &self {
            Frame::Terms {
                terms,
                out,
                set: true,
                ..
            } => {
                let n = out.len().min(terms.len());
                python_collision("MapSet", n, |i| terms[i], |i| &out[i])
            }
            Frame::Map { pairs, out, .. } => {
                let n = out.len().min(pairs.len());
                python_collision("map", n, |i| pairs[i].0, |i| &out[i].0)
            }
            _ => None,
        };
        if let Some(err) = collision {
            self.dispose();
            return Err(err.into());
        }
        Ok(match self {
            Frame::List { out, .. } => Value::List(out),
            Frame::Terms {
                out, set: false, ..
            } => Value::Tuple(out),
            Frame::Terms { out, set: true, .. } => Value::Set(out),
            Frame::Map { out, .. } => Value::Map(out),
        })
    }

    /// Drops the partial result without recursion.
    fn dispose(self) {
        match self {
            Frame::List { out, .. } | Frame::Terms { out, .. } => Value::List(out).dispose(),
            Frame::Map { out, .. } => Value::Map(out).dispose(),
        }
    }
}
