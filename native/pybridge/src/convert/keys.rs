//! Keys that become equal on the other side of the bridge.
//!
//! Two keys that differ where they come from can be equal where they go:
//! two NaN floats (or `'a'` and `b'a'`, or a `str` subclass with its own
//! `__eq__` beside the equal `str`) all become one BEAM term, and `"a"` and
//! `:a`, or `1`, `1.0` and `true`, become one Python key. A map or set built
//! from such keys keeps one of them and drops the rest without a word (and
//! the BEAM's builder of large maps, handed duplicate keys, crashes the VM).
//! So the conversions look for them first and fail, naming the key.
//!
//! Each key is reduced to a canonical byte string, equal for two keys
//! exactly when the target side holds them equal. [`first_collision`] then
//! finds the first repeated string. The reduction walks the key with an
//! explicit stack, so a deeply nested key costs heap, not stack (the BEAM
//! side runs this on a scheduler thread).

use std::collections::HashMap;

use num_bigint::BigInt;

use super::Value;

/// Where the keys are going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// BEAM terms, compared with `=:=` (map keys).
    Beam,
    /// Python objects, compared with `==` (dict keys, set members).
    Python,
}

/// The indices `(first, second)` of the first two keys that would be equal
/// on `target`, if any.
pub fn first_collision<'a>(
    keys: impl IntoIterator<Item = &'a Value>,
    target: Target,
) -> Option<(usize, usize)> {
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        let Some(canon) = canonical(key, target) else {
            continue;
        };
        if let Some(&first) = seen.get(&canon) {
            return Some((first, i));
        }
        seen.insert(canon, i);
    }
    None
}

/// How a container's children are combined.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// In order (lists, tuples, a map entry's key and value).
    Ordered,
    /// As a set (sets, a map's entries): sorted before they are joined.
    Unordered,
}

enum Children<'a> {
    Values(&'a [Value]),
    Pairs(&'a [(Value, Value)]),
    Pair(&'a Value, &'a Value),
}

/// A container whose children are being reduced.
struct Open<'a> {
    children: Children<'a>,
    next: usize,
    order: Order,
    /// The header, then (ordered) each child's string.
    buf: Vec<u8>,
    /// Unordered: each child's string, joined when the container is done.
    parts: Vec<Vec<u8>>,
}

enum Child<'a> {
    Value(&'a Value),
    Pair(&'a Value, &'a Value),
}

impl<'a> Open<'a> {
    fn new(tag: u8, children: Children<'a>, order: Order) -> Self {
        let count = match children {
            Children::Values(v) => v.len(),
            Children::Pairs(p) => p.len(),
            Children::Pair(..) => 2,
        };
        let mut buf = vec![tag];
        buf.extend_from_slice(&(count as u64).to_le_bytes());
        Open {
            children,
            next: 0,
            order,
            buf,
            parts: Vec::new(),
        }
    }

    fn next_child(&mut self) -> Option<Child<'a>> {
        let i = self.next;
        self.next += 1;
        match self.children {
            Children::Values(items) => items.get(i).map(Child::Value),
            Children::Pairs(pairs) => pairs.get(i).map(|(k, v)| Child::Pair(k, v)),
            Children::Pair(k, v) => match i {
                0 => Some(Child::Value(k)),
                1 => Some(Child::Value(v)),
                _ => None,
            },
        }
    }

    /// Takes a finished child's string.
    fn take(&mut self, part: Vec<u8>) {
        match self.order {
            Order::Ordered => self.buf.extend_from_slice(&part),
            Order::Unordered => self.parts.push(part),
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.parts.sort_unstable();
        for part in self.parts {
            self.buf.extend_from_slice(&part);
        }
        self.buf
    }
}

/// What a value reduces to: a scalar's string, a container to open, or
/// nothing when it equals no other value on the target side.
enum Reduced<'a> {
    Scalar(Vec<u8>),
    Container(Open<'a>),
    Unique,
}

/// The canonical string of `key` on `target`; `None` when it equals no
/// other key there (a Python object, a NaN in Python, an unhashable value).
pub fn canonical(key: &Value, target: Target) -> Option<Vec<u8>> {
    let mut stack: Vec<Open<'_>> = match reduce(key, target) {
        Reduced::Scalar(s) => return Some(s),
        Reduced::Unique => return None,
        Reduced::Container(open) => vec![open],
    };
    loop {
        let top = stack.last_mut()?;
        match top.next_child() {
            Some(Child::Value(v)) => match reduce(v, target) {
                Reduced::Scalar(s) => top.take(s),
                Reduced::Container(open) => stack.push(open),
                Reduced::Unique => return None,
            },
            Some(Child::Pair(k, v)) => {
                stack.push(Open::new(b'e', Children::Pair(k, v), Order::Ordered));
            }
            None => {
                let done = stack.pop()?.finish();
                match stack.last_mut() {
                    Some(parent) => parent.take(done),
                    None => return Some(done),
                }
            }
        }
    }
}

fn reduce(v: &Value, target: Target) -> Reduced<'_> {
    use Reduced::{Container, Scalar, Unique};
    match (target, v) {
        (_, Value::Object(_)) => Unique,
        (_, Value::Pid(etf)) => Scalar(bytes(b'p', etf)),
        (_, Value::Ref(etf)) => Scalar(bytes(b'r', etf)),
        (_, Value::Tuple(items)) => {
            Container(Open::new(b't', Children::Values(items), Order::Ordered))
        }
        (_, Value::Set(items)) => {
            Container(Open::new(b'S', Children::Values(items), Order::Unordered))
        }

        // BEAM terms: strings and bytes are both binaries; nil, booleans
        // and the special floats are atoms.
        (Target::Beam, Value::None) => Scalar(bytes(b'a', b"nil")),
        (Target::Beam, Value::Bool(b)) => Scalar(bytes(b'a', if *b { b"true" } else { b"false" })),
        (Target::Beam, Value::Int(i)) => Scalar(int(&BigInt::from(*i))),
        (Target::Beam, Value::BigInt(b)) => Scalar(int(b)),
        (Target::Beam, Value::Float(f)) => Scalar(beam_float(*f)),
        (Target::Beam, Value::Str(s)) => Scalar(bytes(b'b', s.as_bytes())),
        (Target::Beam, Value::Bytes(b)) => Scalar(bytes(b'b', b)),
        (Target::Beam, Value::List(items)) => {
            Container(Open::new(b'l', Children::Values(items), Order::Ordered))
        }
        (Target::Beam, Value::Map(pairs)) => {
            Container(Open::new(b'm', Children::Pairs(pairs), Order::Unordered))
        }

        // Python objects: True == 1 == 1.0, str and bytes differ, a NaN
        // equals nothing, lists and dicts cannot be keys at all.
        (Target::Python, Value::None) => Scalar(vec![b'n']),
        (Target::Python, Value::Bool(b)) => Scalar(int(&BigInt::from(u8::from(*b)))),
        (Target::Python, Value::Int(i)) => Scalar(int(&BigInt::from(*i))),
        (Target::Python, Value::BigInt(b)) => Scalar(int(b)),
        (Target::Python, Value::Float(f)) => match python_float(*f) {
            Some(s) => Scalar(s),
            None => Unique,
        },
        (Target::Python, Value::Str(s)) => Scalar(bytes(b's', s.as_bytes())),
        (Target::Python, Value::Bytes(b)) => Scalar(bytes(b'y', b)),
        (Target::Python, Value::List(_) | Value::Map(_)) => Unique,
    }
}

/// A tag, a length and the bytes: prefix-free, so strings can be joined.
fn bytes(tag: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 9);
    out.push(tag);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn int(i: &BigInt) -> Vec<u8> {
    bytes(b'i', &i.to_signed_bytes_le())
}

fn beam_float(f: f64) -> Vec<u8> {
    if f.is_nan() {
        bytes(b'a', b"nan")
    } else if f == f64::INFINITY {
        bytes(b'a', b"infinity")
    } else if f == f64::NEG_INFINITY {
        bytes(b'a', b"neg_infinity")
    } else {
        // 0.0 and -0.0 are one map key before OTP 27: count them as one.
        let f = if f == 0.0 { 0.0 } else { f };
        bytes(b'f', &f.to_bits().to_le_bytes())
    }
}

/// A float as Python compares it: equal to the int of the same value.
fn python_float(f: f64) -> Option<Vec<u8>> {
    if f.is_nan() {
        return None;
    }
    if f.is_finite() && f.fract() == 0.0 {
        return Some(int(&integral_float(f)));
    }
    Some(bytes(b'f', &f.to_bits().to_le_bytes()))
}

/// The integer value of a finite float with no fractional part.
fn integral_float(f: f64) -> BigInt {
    if f.abs() < 9.0e15 {
        return BigInt::from(f as i64);
    }
    // |f| >= 2^53: mantissa times a power of two.
    let bits = f.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1075;
    let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
    let magnitude = BigInt::from(mantissa) << exponent.max(0) as usize;
    if f < 0.0 {
        -magnitude
    } else {
        magnitude
    }
}

/// A key as an Elixir programmer would write the BEAM term it becomes, cut
/// to about 80 characters, for error messages.
pub fn beam_text(v: &Value) -> String {
    let mut out = String::new();
    write_beam(v, &mut out);
    if out.len() > 80 {
        let mut end = 77;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    out
}

fn write_beam(v: &Value, out: &mut String) {
    use std::fmt::Write;
    // Stop descending once the text is long enough to be cut anyway; this
    // also bounds the recursion.
    if out.len() > 80 {
        return;
    }
    let seq = |open: &str, items: &[Value], close: &str, out: &mut String| {
        out.push_str(open);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_beam(item, out);
            if out.len() > 80 {
                return;
            }
        }
        out.push_str(close);
    };
    match v {
        Value::None => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::BigInt(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Float(f) if f.is_nan() => out.push_str(":nan"),
        Value::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 {
            ":infinity"
        } else {
            ":neg_infinity"
        }),
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Str(s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                let _ = write!(out, "{s:?}");
            }
            Err(_) => {
                let shown: Vec<String> = b.iter().take(20).map(u8::to_string).collect();
                let more = if b.len() > 20 { ", ..." } else { "" };
                let _ = write!(out, "<<{}{more}>>", shown.join(", "));
            }
        },
        Value::List(items) => seq("[", items, "]", out),
        Value::Tuple(items) => seq("{", items, "}", out),
        Value::Set(items) => seq("MapSet.new([", items, "])", out),
        Value::Map(_) => out.push_str("%{...}"),
        Value::Pid(_) => out.push_str("#PID<...>"),
        Value::Ref(_) => out.push_str("#Reference<...>"),
        Value::Object(o) => {
            let _ = write!(out, "#Py<{}>", o.repr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn beam_keys_that_merge() {
        let t = Target::Beam;
        assert_eq!(
            first_collision(&[s("a"), Value::Bytes(b"a".to_vec())], t),
            Some((0, 1))
        );
        assert_eq!(
            first_collision(
                &[
                    Value::Int(1),
                    Value::Float(f64::NAN),
                    Value::Float(f64::NAN)
                ],
                t
            ),
            Some((1, 2))
        );
        assert_eq!(
            first_collision(&[Value::Float(0.0), Value::Float(-0.0)], t),
            Some((0, 1))
        );
        // Sets and maps compare regardless of order.
        let a = Value::Set(vec![s("x"), Value::Int(1)]);
        let b = Value::Set(vec![Value::Int(1), Value::Bytes(b"x".to_vec())]);
        assert_eq!(first_collision(&[a, b], t), Some((0, 1)));
        let a = Value::Tuple(vec![Value::Map(vec![
            (s("k"), Value::None),
            (Value::Int(2), s("v")),
        ])]);
        let b = Value::Tuple(vec![Value::Map(vec![
            (Value::Int(2), s("v")),
            (s("k"), Value::None),
        ])]);
        assert_eq!(first_collision(&[a, b], t), Some((0, 1)));
    }

    #[test]
    fn beam_keys_that_stay_apart() {
        let t = Target::Beam;
        let keys = [
            Value::Int(1),
            Value::Float(1.0),
            Value::Bool(true),
            s("true"),
            Value::None,
            s("nil"),
            Value::Float(f64::INFINITY),
            s("infinity"),
            Value::List(vec![Value::Int(1)]),
            Value::Tuple(vec![Value::Int(1)]),
            Value::Set(vec![Value::Int(1)]),
            Value::Map(vec![(Value::Int(1), Value::List(vec![]))]),
            Value::Tuple(vec![s("a"), s("b")]),
            Value::Tuple(vec![s("ab")]),
            Value::Tuple(vec![s("b"), s("a")]),
        ];
        assert_eq!(first_collision(&keys, t), None);
    }

    #[test]
    fn python_keys_that_merge() {
        let t = Target::Python;
        assert_eq!(first_collision(&[s("a"), s("b"), s("a")], t), Some((0, 2)));
        assert_eq!(
            first_collision(&[Value::Int(1), Value::Float(1.0), Value::Bool(true)], t),
            Some((0, 1))
        );
        assert_eq!(
            first_collision(&[Value::Bool(false), Value::Float(-0.0)], t),
            Some((0, 1))
        );
        let big = BigInt::from(1u64 << 60) * BigInt::from(1u64 << 10);
        assert_eq!(
            first_collision(&[Value::BigInt(big), Value::Float(2f64.powi(70))], t),
            Some((0, 1))
        );
        let a = Value::Tuple(vec![
            Value::Int(1),
            Value::Set(vec![Value::Int(2), Value::Int(3)]),
        ]);
        let b = Value::Tuple(vec![
            Value::Float(1.0),
            Value::Set(vec![Value::Int(3), Value::Float(2.0)]),
        ]);
        assert_eq!(first_collision(&[a, b], t), Some((0, 1)));
    }

    #[test]
    fn python_keys_that_stay_apart() {
        let t = Target::Python;
        let keys = [
            s("a"),
            Value::Bytes(b"a".to_vec()),
            Value::Float(f64::NAN),
            Value::Float(f64::NAN),
            Value::Float(1.5),
            Value::Int(2),
            Value::None,
            Value::Tuple(vec![Value::Int(1)]),
            Value::Set(vec![Value::Int(1)]),
            Value::Tuple(vec![Value::Float(f64::NAN)]),
            Value::Tuple(vec![Value::Float(f64::NAN)]),
        ];
        assert_eq!(first_collision(&keys, t), None);
    }

    #[test]
    fn deep_keys_use_no_recursion() {
        fn deep() -> Value {
            let mut v = Value::Int(0);
            for _ in 0..50_000 {
                v = Value::Tuple(vec![v]);
            }
            v
        }
        // On a small thread stack: the reduction is iterative.
        let found = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let keys = [deep(), deep()];
                let found = first_collision(&keys, Target::Beam);
                let [a, b] = keys;
                a.dispose();
                b.dispose();
                found
            })
            .expect("spawn")
            .join()
            .expect("join");
        assert_eq!(found, Some((0, 1)));
    }

    #[test]
    fn beam_text_reads_like_elixir() {
        assert_eq!(beam_text(&s("a")), "\"a\"");
        assert_eq!(beam_text(&Value::Float(f64::NAN)), ":nan");
        assert_eq!(beam_text(&Value::Bytes(vec![255, 0])), "<<255, 0>>");
        assert_eq!(
            beam_text(&Value::Tuple(vec![
                Value::Int(1),
                Value::Set(vec![Value::None])
            ])),
            "{1, MapSet.new([nil])}"
        );
        assert!(beam_text(&Value::List((0..100).map(Value::Int).collect())).ends_with("..."));
    }
}
