//! BEAM terms ⇄ [`Value`].
//!
//! Decoding runs on a scheduler thread (normal: ~1 MB stack, dirty: ~320 KB),
//! so it is iterative: an explicit stack of partly decoded containers, never
//! recursion. Nesting is limited to [`MAX_DEPTH`] levels. An optional budget
//! counts visited nodes; running out gives [`DecodeError::OverBudget`] so the
//! NIF can start again on a dirty scheduler.
//!
//! Encoding runs on worker threads; it is iterative as well, so any value can
//! be encoded on any thread.
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

use std::ffi::c_uint;

use num_bigint::{BigInt, Sign};
use rustler::sys::{self, ErlNifTerm};
use rustler::types::map::MapIterator;
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, NewBinary, ResourceArc, Term, TermType};

use crate::convert::{ConvertError, PyObject, Value, MAX_DEPTH};

/// A Python object held by a `%Py.Object{}` term.
pub struct ObjectResource(pub PyObject);

#[rustler::resource_impl]
impl rustler::Resource for ObjectResource {}

mod atoms {
    rustler::atoms! {
        nil,
        true_ = "true",
        false_ = "false",
        nan,
        infinity,
        neg_infinity,
        integer_too_large,
        __struct__,
        map,
        version,
        data,
        ref_ = "ref",
        type_ = "type",
        repr,
        mapset = "Elixir.MapSet",
        py_object = "Elixir.Py.Object",
        py_bytes = "Elixir.Py.Bytes",
    }
}

/// How many bytes of a binary count as one node of the decoding budget
/// (copying 256 bytes costs about as much as decoding one small term).
pub const BINARY_BYTES_PER_NODE: usize = 256;

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
    let mut s = format!("{term:?}");
    if s.len() > 120 {
        let mut end = 117;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
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

const ETF_VERSION: u8 = 131;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;

/// An integer in the external term format (what `term_to_binary` gives).
fn parse_etf_integer(etf: &[u8]) -> Option<BigInt> {
    let (&version, rest) = etf.split_first()?;
    if version != ETF_VERSION {
        return None;
    }
    let (&tag, rest) = rest.split_first()?;
    match tag {
        SMALL_INTEGER_EXT => rest.first().map(|&b| BigInt::from(b)),
        INTEGER_EXT => {
            let b: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            Some(BigInt::from(i32::from_be_bytes(b)))
        }
        SMALL_BIG_EXT | LARGE_BIG_EXT => {
            let (n, rest) = if tag == SMALL_BIG_EXT {
                let (&n, rest) = rest.split_first()?;
                (usize::from(n), rest)
            } else {
                let b: [u8; 4] = rest.get(..4)?.try_into().ok()?;
                (usize::try_from(u32::from_be_bytes(b)).ok()?, &rest[4..])
            };
            let (&sign, digits) = rest.split_first()?;
            let digits = digits.get(..n)?;
            let sign = if sign == 0 { Sign::Plus } else { Sign::Minus };
            Some(BigInt::from_bytes_le(sign, digits))
        }
        _ => None,
    }
}

/// An integer outside the `i64` range in the external term format.
fn etf_big_integer(b: &BigInt) -> Option<Vec<u8>> {
    let (sign, digits) = b.to_bytes_le();
    let n = u32::try_from(digits.len()).ok()?;
    let mut out = Vec::with_capacity(digits.len() + 7);
    out.push(ETF_VERSION);
    match u8::try_from(n) {
        Ok(small) => {
            out.push(SMALL_BIG_EXT);
            out.push(small);
        }
        Err(_) => {
            out.push(LARGE_BIG_EXT);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.push(u8::from(sign == Sign::Minus));
    out.extend_from_slice(&digits);
    Some(out)
}

/// The name of an atom in the external term format (UTF-8 encodings only;
/// Latin-1 atoms are read with `atom_to_string`).
fn parse_etf_atom(etf: &[u8]) -> Option<String> {
    let (&version, rest) = etf.split_first()?;
    if version != ETF_VERSION {
        return None;
    }
    let (&tag, rest) = rest.split_first()?;
    let (len, rest) = match tag {
        ATOM_UTF8_EXT => {
            let b: [u8; 2] = rest.get(..2)?.try_into().ok()?;
            (usize::from(u16::from_be_bytes(b)), &rest[2..])
        }
        SMALL_ATOM_UTF8_EXT => {
            let (&n, rest) = rest.split_first()?;
            (usize::from(n), rest)
        }
        _ => return None,
    };
    String::from_utf8(rest.get(..len)?.to_vec()).ok()
}

/// Encodes a [`Value`] as a term.
///
/// Never fails: a pid or reference whose bytes the BEAM rejects (they can
/// only come from `term_to_binary`, so this does not happen) is encoded as
/// its raw binary, and an integer too large for the BEAM as
/// `:integer_too_large`.
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

/// The largest tuple the BEAM can hold.
pub const MAX_TUPLE_ARITY: usize = (1 << 24) - 1;

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
