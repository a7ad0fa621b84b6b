//! The one byte encoding of a stored value, shared by every backend that
//! keeps values outside this process (SQLite, Redis): a value written by
//! Python on one node reads back on another exactly as it was written.
//!
//! Layout (all integers little-endian, lengths and counts as LEB128
//! varints):
//!
//! ```text
//! stored := VERSION (1 byte) kind
//! kind   := 0x00 value                         plain data
//!         | 0x01 len type_name len pickle     a pickled Python object
//! value  := 0 None | 1 False | 2 True
//!         | 3 zigzag-varint                   Int (i64)
//!         | 4 sign len magnitude-bytes        BigInt
//!         | 5 f64-bits (8 bytes)              Float
//!         | 6 len utf8 | 7 len bytes          Str | Bytes
//!         | 8 n value* | 9 n value*           List | Tuple
//!         | 10 n (value value)* | 11 n value* Map | Set
//!         | 12 len etf | 13 len etf           Pid | Ref
//! ```
//!
//! Encoding and decoding are iterative (a value [`MAX_DEPTH`] levels deep
//! costs no stack), and decoding trusts nothing: every length is checked
//! against the bytes left before anything is allocated, so corrupt or
//! hostile input is a [`CodecError`], never a panic or a huge allocation.
//! [`Value::Object`] is never encoded: objects are stored pickled.

use num_bigint::{BigInt, Sign};

use super::Stored;
use crate::convert::Value;
use crate::limits::{MAX_DEPTH, MAX_INT_BITS};

/// The encoding's version, the first byte of every encoded value. A reader
/// refuses versions it does not know rather than guessing.
pub const VERSION: u8 = 1;

const PLAIN: u8 = 0;
const PICKLED: u8 = 1;

const T_NONE: u8 = 0;
const T_FALSE: u8 = 1;
const T_TRUE: u8 = 2;
const T_INT: u8 = 3;
const T_BIGINT: u8 = 4;
const T_FLOAT: u8 = 5;
const T_STR: u8 = 6;
const T_BYTES: u8 = 7;
const T_LIST: u8 = 8;
const T_TUPLE: u8 = 9;
const T_MAP: u8 = 10;
const T_SET: u8 = 11;
const T_PID: u8 = 12;
const T_REF: u8 = 13;

/// Why bytes could not be decoded (or a value encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored value is unreadable: {}", self.0)
    }
}

fn bad(why: impl Into<String>) -> CodecError {
    CodecError(why.into())
}

// ── Encoding ────────────────────────────────────────────────────────────

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_varint(out, n as u64);
}

fn put_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// `stored` as bytes.
pub fn encode(stored: &Stored) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![VERSION];
    match stored {
        Stored::Plain(value) => {
            out.push(PLAIN);
            encode_value(value, &mut out)?;
        }
        Stored::Pickled { type_name, data } => {
            out.push(PICKLED);
            put_blob(&mut out, type_name.as_bytes());
            put_blob(&mut out, data);
        }
    }
    Ok(out)
}

fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            Value::None => out.push(T_NONE),
            Value::Bool(false) => out.push(T_FALSE),
            Value::Bool(true) => out.push(T_TRUE),
            Value::Int(i) => {
                out.push(T_INT);
                put_varint(out, ((i << 1) ^ (i >> 63)) as u64);
            }
            Value::BigInt(b) => {
                out.push(T_BIGINT);
                let (sign, mag) = b.to_bytes_le();
                out.push(u8::from(sign == Sign::Minus));
                put_blob(out, &mag);
            }
            Value::Float(f) => {
                out.push(T_FLOAT);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Str(s) => {
                out.push(T_STR);
                put_blob(out, s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(T_BYTES);
                put_blob(out, b);
            }
            Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
                out.push(match v {
                    Value::List(_) => T_LIST,
                    Value::Tuple(_) => T_TUPLE,
                    _ => T_SET,
                });
                put_len(out, items.len());
                pending.extend(items.iter().rev());
            }
            Value::Map(pairs) => {
                out.push(T_MAP);
                put_len(out, pairs.len());
                for (k, v) in pairs.iter().rev() {
                    pending.push(v);
                    pending.push(k);
                }
            }
            Value::Pid(etf) => {
                out.push(T_PID);
                put_blob(out, etf);
            }
            Value::Ref(etf) => {
                out.push(T_REF);
                put_blob(out, etf);
            }
            Value::Object(o) => {
                return Err(bad(format!(
                    "a Python object ({}) cannot be encoded; store it pickled",
                    o.type_name
                )))
            }
        }
    }
    Ok(())
}

// ── Decoding ────────────────────────────────────────────────────────────

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.bytes.get(self.at).ok_or_else(|| bad("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.left() {
            return Err(bad("truncated"));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(bad("varint overflows 64 bits"));
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(bad("varint too long"))
    }

    /// A count of items each at least `min_bytes` long: never more than
    /// the bytes left could hold.
    fn count(&mut self, min_bytes: usize) -> Result<usize, CodecError> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_bytes) <= self.left() => Ok(n),
            _ => Err(bad(format!("count {n} exceeds the bytes left"))),
        }
    }

    fn blob(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.count(1)?;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, CodecError> {
        let b = self.blob()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| bad("text is not UTF-8"))
    }
}

/// A container being filled while decoding.
struct Frame {
    tag: u8,
    /// Values still to read into it (keys and values count separately).
    left: usize,
    items: Vec<Value>,
}

impl Frame {
    fn finish(self) -> Value {
        match self.tag {
            T_LIST => Value::List(self.items),
            T_TUPLE => Value::Tuple(self.items),
            T_SET => Value::Set(self.items),
            _ => {
                let mut pairs = Vec::with_capacity(self.items.len() / 2);
                let mut it = self.items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Value::Map(pairs)
            }
        }
    }
}

/// Bytes made by [`encode`] back into a value.
pub fn decode(bytes: &[u8]) -> Result<Stored, CodecError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.byte().map_err(|_| bad("empty"))?;
    if version != VERSION {
        return Err(bad(format!(
            "encoding version {version}, this build reads version {VERSION}"
        )));
    }
    let stored = match r.byte()? {
        PLAIN => Stored::Plain(decode_value(&mut r)?),
        PICKLED => {
            let type_name = r.text()?;
            let data = r.blob()?.to_vec();
            Stored::Pickled { type_name, data }
        }
        other => return Err(bad(format!("unknown kind {other}"))),
    };
    if r.left() != 0 {
        return Err(bad(format!("{} bytes after the value", r.left())));
    }
    Ok(stored)
}

fn decode_value(r: &mut Reader<'_>) -> Result<Value, CodecError> {
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        let tag = r.byte()?;
        let value = match tag {
            T_NONE => Value::None,
            T_FALSE => Value::Bool(false),
            T_TRUE => Value::Bool(true),
            T_INT => {
                let z = r.varint()?;
                Value::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            T_BIGINT => {
                let sign = match r.byte()? {
                    0 => Sign::Plus,
                    1 => Sign::Minus,
                    s => return Err(bad(format!("bad integer sign {s}"))),
                };
                let mag = r.blob()?;
                if (mag.len() as u64).saturating_mul(8) > MAX_INT_BITS {
                    return Err(bad("integer too large"));
                }
                Value::BigInt(BigInt::from_bytes_le(sign, mag))
            }
            T_FLOAT => {
                let b: [u8; 8] = r.take(8)?.try_into().map_err(|_| bad("truncated float"))?;
                Value::Float(f64::from_bits(u64::from_le_bytes(b)))
            }
            T_STR => Value::Str(r.text()?),
            T_BYTES => Value::Bytes(r.blob()?.to_vec()),
            T_PID => Value::Pid(r.blob()?.to_vec()),
            T_REF => Value::Ref(r.blob()?.to_vec()),
            T_LIST | T_TUPLE | T_SET | T_MAP => {
                let per = if tag == T_MAP { 2 } else { 1 };
                let n = r.count(per)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(bad(format!("nested deeper than {MAX_DEPTH} levels")));
                }
                let frame = Frame {
                    tag,
                    left: n * per,
                    // `count` bounded `n` by the bytes left.
                    items: Vec::with_capacity(n * per),
                };
                if frame.left > 0 {
                    stack.push(frame);
                    continue;
                }
                frame.finish()
            }
            other => return Err(bad(format!("unknown value tag {other}"))),
        };
        // Hand the finished value to its container, closing every container
        // it completes.
        let mut value = value;
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(value);
            };
            top.items.push(value);
            top.left -= 1;
            if top.left > 0 {
                break;
            }
            let Some(done) = stack.pop() else {
                return Err(bad("internal: empty stack"));
            };
            value = done.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(stored: Stored) -> Stored {
        decode(&encode(&stored).expect("encode")).expect("decode")
    }

    fn plain(v: Value) -> Value {
        match &round(Stored::Plain(v)) {
            Stored::Plain(v) => v.clone(),
            Stored::Pickled { .. } => panic!("kind changed"),
        }
    }

    fn same(a: &Value, b: &Value) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn every_kind_round_trips() {
        let big = BigInt::from(i64::MAX) * 1_000_000_007_i64;
        let v = Value::Map(vec![
            (Value::Str("none".into()), Value::None),
            (Value::Bool(true), Value::Bool(false)),
            (Value::Int(-1), Value::Int(i64::MIN)),
            (Value::Int(i64::MAX), Value::BigInt(-big.clone())),
            (Value::Str("big".into()), Value::BigInt(big)),
            (Value::Float(1.5), Value::Float(f64::NEG_INFINITY)),
            (Value::Str("héllo ✓".into()), Value::Bytes(vec![0, 255, 7])),
            (
                Value::Tuple(vec![Value::Int(1), Value::List(vec![])]),
                Value::Set(vec![Value::Int(3), Value::Str(String::new())]),
            ),
            (Value::Pid(vec![131, 88, 1]), Value::Ref(vec![131, 90])),
            (Value::Map(vec![]), Value::Tuple(vec![])),
        ]);
        assert!(same(&plain(v.clone()), &v));
        let nan = plain(Value::Float(f64::NAN));
        assert!(matches!(nan, Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn pickled_round_trips() {
        let back = round(Stored::Pickled {
            type_name: "m.C".into(),
            data: vec![128, 5, 46],
        });
        match &back {
            Stored::Pickled { type_name, data } => {
                assert_eq!(type_name, "m.C");
                assert_eq!(data, &vec![128, 5, 46]);
            }
            Stored::Plain(_) => panic!("kind changed"),
        }
    }

    #[test]
    fn small_values_are_compact() {
        let bytes = encode(&Stored::Plain(Value::Int(5))).expect("encode");
        assert_eq!(bytes, vec![VERSION, PLAIN, T_INT, 10]);
        let s = encode(&Stored::Plain(Value::Str("abc".into()))).expect("encode");
        assert_eq!(s.len(), 2 + 1 + 1 + 3);
    }

    #[test]
    fn deep_values_need_no_stack() {
        let depth = MAX_DEPTH - 1;
        let deep = (0..depth).fold(Value::Int(1), |v, _| Value::List(vec![v]));
        let stored = Stored::Plain(deep);
        let bytes = encode(&stored).expect("encode");
        let back = decode(&bytes).expect("decode");
        let Stored::Plain(top) = &back else {
            panic!("kind changed")
        };
        let mut level = top;
        let mut n = 0;
        while let Value::List(items) = level {
            level = &items[0];
            n += 1;
        }
        assert_eq!(n, depth);
        assert!(matches!(level, Value::Int(1)));
        assert_eq!(encode(&back).expect("encode"), bytes);
    }

    #[test]
    fn too_deep_input_is_refused() {
        let mut bytes = vec![VERSION, PLAIN];
        for _ in 0..MAX_DEPTH + 1 {
            bytes.extend_from_slice(&[T_LIST, 1]);
        }
        bytes.push(T_NONE);
        let err = decode(&bytes).expect_err("too deep");
        assert!(err.0.contains("nested deeper"), "{err}");
    }

    #[test]
    fn corrupt_input_is_an_error_never_a_panic() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (vec![2, PLAIN, T_NONE], "version 2"),
            (vec![VERSION], "truncated"),
            (vec![VERSION, 9], "unknown kind"),
            (vec![VERSION, PLAIN, 99], "unknown value tag"),
            (vec![VERSION, PLAIN, T_STR, 5, b'a'], "exceeds"),
            (vec![VERSION, PLAIN, T_STR, 2, 0xff, 0xfe], "UTF-8"),
            (vec![VERSION, PLAIN, T_FLOAT, 1, 2], "truncated"),
            (vec![VERSION, PLAIN, T_NONE, T_NONE], "after the value"),
            (vec![VERSION, PLAIN, T_BIGINT, 7, 0], "sign"),
            (
                // A list claiming 2^62 items: refused before allocating.
                vec![
                    VERSION, PLAIN, T_LIST, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
                ],
                "exceeds",
            ),
            (
                [vec![VERSION, PLAIN, T_INT], vec![0xff; 11]].concat(),
                "varint",
            ),
            (vec![VERSION, PLAIN, T_MAP, 1, T_NONE], "exceeds"),
            (vec![VERSION, PICKLED, 1, b'x'], "truncated"),
        ];
        for (bytes, want) in cases {
            let err = decode(&bytes).expect_err("corrupt input decoded");
            assert!(err.0.contains(want), "{bytes:?}: {err} (wanted {want:?})");
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_handled() {
        let v = Value::Map(vec![
            (Value::Str("k".into()), Value::List(vec![Value::Int(300)])),
            (Value::Int(-7), Value::Float(2.5)),
        ]);
        let bytes = encode(&Stored::Plain(v)).expect("encode");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "prefix {cut} decoded");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b); // any outcome but a panic
            }
        }
    }
}
