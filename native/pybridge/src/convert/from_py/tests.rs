use super::*;
use crate::convert::to_py::to_py;
use crate::limits::REPR_BYTES;
use num_bigint::BigInt;
use pyo3::types::PyAnyMethods;

fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    Python::initialize();
    Python::attach(f)
}

fn eval<'py>(py: Python<'py>, code: &str) -> Bound<'py, PyAny> {
    let code = std::ffi::CString::new(code).expect("cstr");
    py.eval(&code, None, None).expect("eval")
}

fn conv(py: Python<'_>, code: &str) -> Value {
    from_py(&eval(py, code)).expect(code)
}

/// Python → Value → Python gives an equal object of the same type.
fn round_trip(py: Python<'_>, code: &str) {
    let obj = eval(py, code);
    let v = from_py(&obj).expect(code);
    let back = to_py(py, &v).expect("to_py");
    assert!(
        back.get_type().is(obj.get_type()),
        "{code}: type {} became {}",
        obj.get_type(),
        back.get_type()
    );
    assert!(back.eq(&obj).expect("eq"), "{code}: {back:?} != {obj:?}");
}

#[test]
fn values_stay_small() {
    // Long lists hold one Value per item: keep it at 4 words.
    assert!(std::mem::size_of::<Value>() <= 32);
}

#[test]
fn scalars() {
    with_py(|py| {
        assert!(matches!(conv(py, "None"), Value::None));
        assert!(matches!(conv(py, "True"), Value::Bool(true)));
        assert!(matches!(conv(py, "False"), Value::Bool(false)));
        assert!(matches!(conv(py, "-1"), Value::Int(-1)));
        assert!(matches!(conv(py, "2**63-1"), Value::Int(i64::MAX)));
        assert!(matches!(conv(py, "-2**63"), Value::Int(i64::MIN)));
        assert!(matches!(conv(py, "1.25"), Value::Float(f) if f == 1.25));
        assert!(matches!(conv(py, "float('nan')"), Value::Float(f) if f.is_nan()));
        assert!(matches!(conv(py, "float('inf')"), Value::Float(f) if f == f64::INFINITY));
        assert!(matches!(conv(py, "float('-inf')"), Value::Float(f) if f == f64::NEG_INFINITY));
        assert!(matches!(conv(py, "'héllo ✓'"), Value::Str(s) if s == "héllo ✓"));
        assert!(matches!(conv(py, "b'\\x00\\xff'"), Value::Bytes(b) if b == [0, 255]));
        assert!(matches!(conv(py, "bytearray(b'\\x01\\x02')"), Value::Bytes(b) if b == [1, 2]));
        for code in [
            "None",
            "True",
            "False",
            "0",
            "-12345",
            "2**63-1",
            "-2**63",
            "1.5",
            "float('inf')",
            "float('-inf')",
            "''",
            "'ünïcode ✓ 𝄞'",
            "b''",
            "b'\\x00\\xff'",
        ] {
            round_trip(py, code);
        }
        // nan != nan, so check it by hand.
        let back = to_py(py, &conv(py, "float('nan')")).expect("to_py");
        assert!(back.ne(&back).expect("ne"));
    });
}

#[test]
fn bytearray_becomes_bytes() {
    with_py(|py| {
        let v = conv(py, "bytearray(b'abc')");
        let back = to_py(py, &v).expect("to_py");
        assert!(back.is_exact_instance_of::<PyBytes>());
        assert_eq!(back.extract::<Vec<u8>>().expect("bytes"), b"abc");
    });
}

#[test]
fn big_ints() {
    with_py(|py| {
        match conv(py, "2**63") {
            Value::BigInt(b) => assert_eq!(b, BigInt::from(i64::MAX) + 1),
            v => panic!("{v:?}"),
        }
        match conv(py, "-2**63-1") {
            Value::BigInt(b) => assert_eq!(b, BigInt::from(i64::MIN) - 1),
            v => panic!("{v:?}"),
        }
        for code in [
            "2**63",
            "-2**63-1",
            "3**500",
            "-(7**1000)",
            "[2**100, -2**100]",
        ] {
            round_trip(py, code);
        }
    });
}

#[test]
fn containers() {
    with_py(|py| {
        for code in [
            "[]",
            "()",
            "{}",
            "set()",
            "[1, 'a', None, 2.5, b'x', [True, (1, 2)]]",
            "(1, [2, (3, {4: 5})])",
            "{'a': 1, (1, 2): [3], 4: {'x': {1, 2}}, None: (), b'k': 1.5}",
            "{1, 'a', (1, 2), frozenset({1})}",
            "{(1, (2, 3)): {(4,): [5]}}",
            "[[[[[]]]]]",
        ] {
            round_trip(py, code);
        }
        match conv(py, "{'b': 1, 'a': 2}") {
            Value::Map(pairs) => {
                assert!(matches!(&pairs[0], (Value::Str(k), Value::Int(1)) if k == "b"));
                assert!(matches!(&pairs[1], (Value::Str(k), Value::Int(2)) if k == "a"));
            }
            v => panic!("{v:?}"),
        }
    });
}

#[test]
fn sets_and_frozensets() {
    with_py(|py| {
        match conv(py, "{1, 2, 3}") {
            Value::Set(items) => assert_eq!(items.len(), 3),
            v => panic!("{v:?}"),
        }
        match conv(py, "frozenset({'a', (1, 2)})") {
            Value::Set(items) => assert_eq!(items.len(), 2),
            v => panic!("{v:?}"),
        }
        let back = to_py(py, &conv(py, "frozenset({1, 2})")).expect("to_py");
        assert!(back.is_exact_instance_of::<PySet>());
    });
}

#[test]
fn subclasses_convert_like_their_base() {
    with_py(|py| {
        let code = c"\
import enum, collections
class Color(enum.IntEnum):
    RED = 1
class Name(str): pass
class Plain(enum.Enum):
    A = 1
class MyList(list): pass
Point = collections.namedtuple('Point', 'x y')
class F(float): pass
class B(bytes): pass
values = {
    'intenum': Color.RED,
    'str': Name('bob'),
    'plain': Plain.A,
    'list': MyList([1, 2]),
    'point': Point(1, 2),
    'ordered': collections.OrderedDict([('a', 1)]),
    'default': collections.defaultdict(list, {'k': [1]}),
    'float': F(2.5),
    'bytes': B(b'x'),
    'counter': collections.Counter('aab'),
}
";
        let globals = PyDict::new(py);
        py.run(code, Some(&globals), None).expect("setup");
        let values = globals.get_item("values").expect("get").expect("values");
        let get = |k: &str| from_py(&values.get_item(k).expect("item")).expect(k);
        assert!(matches!(get("intenum"), Value::Int(1)));
        assert!(matches!(get("str"), Value::Str(s) if s == "bob"));
        assert!(
            matches!(get("plain"), Value::Object(o) if o.type_name.ends_with(".Plain") && o.repr == "<Plain.A: 1>")
        );
        assert!(matches!(get("list"), Value::List(l) if l.len() == 2));
        assert!(matches!(get("point"), Value::Tuple(t) if t.len() == 2));
        assert!(matches!(get("ordered"), Value::Map(m) if m.len() == 1));
        assert!(matches!(get("default"), Value::Map(m) if m.len() == 1));
        assert!(matches!(get("float"), Value::Float(f) if f == 2.5));
        assert!(matches!(get("bytes"), Value::Bytes(b) if b == b"x"));
        assert!(matches!(get("counter"), Value::Map(m) if m.len() == 2));
    });
}

#[test]
fn objects() {
    with_py(|py| {
        let dt = eval(py, "__import__('datetime').datetime(2024, 1, 2, 3, 4, 5)");
        match from_py(&dt).expect("datetime") {
            Value::Object(o) => {
                assert_eq!(o.type_name, "datetime.datetime");
                assert_eq!(o.repr, "datetime.datetime(2024, 1, 2, 3, 4, 5)");
                assert!(o.bind(py).expect("bind").is(&dt));
                let back = to_py(py, &Value::Object(o)).expect("to_py");
                assert!(back.is(&dt));
            }
            v => panic!("{v:?}"),
        }
        match conv(py, "object()") {
            Value::Object(o) => {
                assert_eq!(o.type_name, "builtins.object");
                assert!(o.repr.starts_with("<object object at "));
            }
            v => panic!("{v:?}"),
        }
        // Objects nested in containers, and as dict keys.
        match conv(py, "{__import__('datetime').date(2020, 1, 1): [1j]}") {
            Value::Map(pairs) => {
                assert!(matches!(&pairs[0].0, Value::Object(o) if o.type_name == "datetime.date"));
                assert!(matches!(&pairs[0].1, Value::List(l)
                        if matches!(&l[0], Value::Object(o) if o.type_name == "builtins.complex" && o.repr == "1j")));
            }
            v => panic!("{v:?}"),
        }
        round_trip(
            py,
            "{__import__('datetime').date(2020, 1, 1): [1j, range(3)]}",
        );
    });
}

#[test]
fn repr_is_truncated_and_failures_are_named() {
    with_py(|py| {
        let globals = PyDict::new(py);
        py.run(
            c"\
class Long:
    def __repr__(self): return 'é' * 500
class Bad:
    def __repr__(self): raise ValueError('no')
",
            Some(&globals),
            None,
        )
        .expect("setup");
        let long = eval_in(py, "Long()", &globals);
        match from_py(&long).expect("long") {
            Value::Object(o) => {
                assert!(o.repr.len() <= REPR_BYTES, "{}", o.repr.len());
                assert!(o.repr.ends_with("..."));
                assert!(o.repr.starts_with("éé"));
            }
            v => panic!("{v:?}"),
        }
        let bad = eval_in(py, "Bad()", &globals);
        match from_py(&bad).expect("bad") {
            Value::Object(o) => {
                assert_eq!(o.repr, "<unrepresentable builtins.Bad object>");
                assert_eq!(o.type_name, "builtins.Bad");
            }
            v => panic!("{v:?}"),
        }
        assert!(PyErr::take(py).is_none(), "no exception left set");
    });
}

fn eval_in<'py>(py: Python<'py>, code: &str, globals: &Bound<'py, PyDict>) -> Bound<'py, PyAny> {
    let code = std::ffi::CString::new(code).expect("cstr");
    py.eval(&code, Some(globals), None).expect("eval")
}

#[test]
fn lone_surrogate_is_an_error() {
    with_py(|py| {
        let err = from_py(&eval(py, "['ok', '\\ud800']")).expect_err("surrogate");
        assert!(err.0.contains("not valid Unicode"), "{err}");
        assert!(PyErr::take(py).is_none());
    });
}

#[test]
fn self_containing_values_are_errors() {
    with_py(|py| {
        let globals = PyDict::new(py);
        py.run(
            c"\
a = [1]
a.append(a)
d = {}
d['me'] = [d]
",
            Some(&globals),
            None,
        )
        .expect("setup");
        let err = from_py(&eval_in(py, "a", &globals)).expect_err("cycle");
        assert_eq!(
            err.0,
            "cannot convert a list that contains itself (a reference cycle)"
        );
        let err = from_py(&eval_in(py, "d", &globals)).expect_err("cycle");
        assert!(err.0.contains("contains itself"), "{err}");
        // A shared (non-cyclic) object is fine.
        let v = from_py(&eval_in(
            py,
            "[a[:1], a[:1], (lambda x: [x, x])([1])]",
            &globals,
        ))
        .expect("shared");
        assert!(matches!(v, Value::List(l) if l.len() == 3));
    });
}

#[test]
fn deep_nesting_gives_a_clear_error() {
    with_py(|py| {
        let globals = PyDict::new(py);
        py.run(
            c"\
ok = []
cur = ok
for _ in range(9999):
    nxt = []
    cur.append(nxt)
    cur = nxt
deep = [ok]
deep_tuple = ()
for _ in range(20000):
    deep_tuple = (deep_tuple,)
",
            Some(&globals),
            None,
        )
        .expect("setup");
        let v = from_py(&eval_in(py, "ok", &globals)).expect("10,000 levels are fine");
        v.dispose();
        let err = from_py(&eval_in(py, "deep", &globals)).expect_err("10,001 levels");
        assert_eq!(err.0, "value nests deeper than 10000 levels");
        let err = from_py(&eval_in(py, "deep_tuple", &globals)).expect_err("20,000 levels");
        assert_eq!(err.0, "value nests deeper than 10000 levels");
    });
}

#[test]
fn containers_changed_by_a_repr_convert_as_they_were() {
    with_py(|py| {
        let globals = PyDict::new(py);
        py.run(
            c"\
class Grow:
    def __init__(self, target): self.target = target
    def __repr__(self):
        if isinstance(self.target, list):
            self.target.append(Grow(self.target))
            self.target[0] = 'replaced'
        else:
            self.target.setdefault(len(self.target), 0)
            self.target.pop('b', None)
        return 'Grow'
l = []
l.append(Grow(l))
l.append(1)
d = {}
d['a'] = Grow(d)
d['b'] = 2
",
            Some(&globals),
            None,
        )
        .expect("setup");
        // Each container converts as it was when its conversion began.
        match from_py(&eval_in(py, "l", &globals)).expect("list") {
            Value::List(items) => {
                assert_eq!(items.len(), 2);
                assert!(matches!(&items[0], Value::Object(o) if o.repr == "Grow"));
                assert!(matches!(items[1], Value::Int(1)));
            }
            v => panic!("{v:?}"),
        }
        match from_py(&eval_in(py, "d", &globals)).expect("dict") {
            Value::Map(pairs) => {
                assert_eq!(pairs.len(), 2);
                assert!(matches!(&pairs[1], (Value::Str(k), Value::Int(2)) if k == "b"));
            }
            v => panic!("{v:?}"),
        }
    });
}

#[test]
fn dict_values_that_need_frames() {
    with_py(|py| {
        // Keys and values of every shape, including objects whose repr
        // runs Python code.
        round_trip(
            py,
            "{(1,): (2,), 'a': [1], frozenset({1}): {2: 3}, 1.5: None, \
                 __import__('decimal').Decimal('1.5'): __import__('fractions').Fraction(1, 3)}",
        );
    });
}

#[test]
fn str_and_bytes_keys_that_merge_on_the_beam_are_errors() {
    Python::initialize();
    Python::attach(|py| {
        let d = py.eval(c"{'a': 1, b'a': 2}", None, None).unwrap();
        let err = from_py(&d).unwrap_err();
        assert_eq!(
            err.0,
            "cannot convert a dict whose keys 'a' and b'a' would both become the BEAM term \"a\", \
             which a map holds only once"
        );
        let s = py.eval(c"{'a', b'a'}", None, None).unwrap();
        assert!(from_py(&s).is_err());
        // Different contents are fine.
        let ok = py.eval(c"{'a': 1, b'b': 2}", None, None).unwrap();
        assert!(matches!(from_py(&ok), Ok(Value::Map(pairs)) if pairs.len() == 2));
    });
}

#[test]
fn ints_too_big_for_the_beam_are_errors() {
    Python::initialize();
    Python::attach(|py| {
        let big = py.eval(c"1 << 33_000_000", None, None).unwrap();
        let err = from_py(&big).unwrap_err();
        assert!(err.0.contains("at most 32000000 bits"), "{err}");
        let fine = py.eval(c"1 << 1_000_000", None, None).unwrap();
        assert!(matches!(from_py(&fine), Ok(Value::BigInt(_))));
    });
}
