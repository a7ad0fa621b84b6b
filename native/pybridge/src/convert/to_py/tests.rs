use super::*;
use crate::convert::from_py::from_py;
use num_bigint::BigInt;
use pyo3::types::PyAnyMethods;

fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    Python::initialize();
    Python::attach(f)
}

fn check<'py>(py: Python<'py>, v: &Value, expect: &str) -> Bound<'py, PyAny> {
    let obj = to_py(py, v).expect("to_py");
    let locals = PyDict::new(py);
    locals.set_item("x", &obj).expect("set");
    let ok = py
        .eval(
            &std::ffi::CString::new(expect).expect("cstr"),
            None,
            Some(&locals),
        )
        .expect("eval");
    assert!(
        ok.is_truthy().expect("truthy"),
        "{expect} failed for {obj:?}"
    );
    obj
}

#[test]
fn scalars() {
    with_py(|py| {
        check(py, &Value::None, "x is None");
        check(py, &Value::Bool(true), "x is True");
        check(py, &Value::Bool(false), "x is False");
        check(py, &Value::Int(-42), "type(x) is int and x == -42");
        check(py, &Value::Int(i64::MIN), "x == -2**63");
        check(py, &Value::Float(1.5), "type(x) is float and x == 1.5");
        check(py, &Value::Float(f64::NAN), "x != x");
        check(py, &Value::Float(f64::INFINITY), "x == float('inf')");
        check(py, &Value::Float(f64::NEG_INFINITY), "x == float('-inf')");
        check(py, &Value::Str("héllo ✓".into()), "x == 'héllo ✓'");
        check(py, &Value::Str(String::new()), "x == ''");
        check(
            py,
            &Value::Bytes(vec![0, 255, 1]),
            "x == b'\\x00\\xff\\x01'",
        );
        check(py, &Value::Bytes(vec![]), "type(x) is bytes and x == b''");
    });
}

#[test]
fn big_ints() {
    with_py(|py| {
        let big: BigInt = "123456789012345678901234567890123456789"
            .parse()
            .expect("big");
        check(
            py,
            &Value::BigInt(big.clone()),
            "x == 123456789012345678901234567890123456789",
        );
        check(
            py,
            &Value::BigInt(-big),
            "x == -123456789012345678901234567890123456789",
        );
        check(py, &Value::BigInt(BigInt::from(i64::MAX) + 1), "x == 2**63");
    });
}

#[test]
fn containers() {
    with_py(|py| {
        check(
            py,
            &Value::List(vec![Value::Int(1), Value::Str("a".into()), Value::None]),
            "x == [1, 'a', None]",
        );
        check(py, &Value::List(vec![]), "x == []");
        check(py, &Value::Tuple(vec![]), "x == ()");
        check(
            py,
            &Value::Tuple(vec![
                Value::Int(1),
                Value::List(vec![Value::Tuple(vec![Value::Bool(true)])]),
            ]),
            "x == (1, [(True,)])",
        );
        check(
            py,
            &Value::Map(vec![
                (Value::Str("a".into()), Value::Int(1)),
                (
                    Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
                    Value::List(vec![Value::Map(vec![])]),
                ),
                (
                    Value::Int(3),
                    Value::Set(vec![Value::Int(1), Value::Int(2)]),
                ),
            ]),
            "x == {'a': 1, (1, 2): [{}], 3: {1, 2}} and list(x) == ['a', (1, 2), 3]",
        );
        check(
            py,
            &Value::Set(vec![
                Value::Str("a".into()),
                Value::Tuple(vec![Value::Int(1)]),
            ]),
            "type(x) is set and x == {'a', (1,)}",
        );
        let d = map_to_dict(
            py,
            &[(Value::Str("k".into()), Value::List(vec![Value::Int(1)]))],
        )
        .expect("map_to_dict");
        assert_eq!(d.len(), 1);
        let t = to_py_tuple(py, &[Value::Int(1), Value::List(vec![])]).expect("tuple");
        assert_eq!(t.len(), 2);
    });
}

#[test]
fn pid_ref_object() {
    with_py(|py| {
        let pid = check(
            py,
            &Value::Pid(vec![131, 1, 2]),
            "__import__('erlang').Pid is type(x)",
        );
        let r = check(
            py,
            &Value::Ref(vec![131, 3]),
            "__import__('erlang').Ref is type(x)",
        );
        match from_py(&pid).expect("pid back") {
            Value::Pid(b) => assert_eq!(b, vec![131, 1, 2]),
            v => panic!("{v:?}"),
        }
        match from_py(&r).expect("ref back") {
            Value::Ref(b) => assert_eq!(b, vec![131, 3]),
            v => panic!("{v:?}"),
        }
        let obj = py.eval(c"object()", None, None).expect("object");
        let v = from_py(&obj).expect("from_py");
        let back = to_py(py, &v).expect("to_py");
        assert!(back.is(&obj), "an Object converts back to the same object");
    });
}

#[test]
fn sets_in_hashable_places_become_frozensets() {
    with_py(|py| {
        let inner = Value::Set(vec![Value::Int(1)]);
        check(
            py,
            &Value::Set(vec![inner.clone(), Value::Tuple(vec![inner.clone()])]),
            "type(x) is set and x == {frozenset({1}), (frozenset({1}),)}",
        );
        check(
            py,
            &Value::Map(vec![(inner.clone(), Value::List(vec![inner.clone()]))]),
            "x == {frozenset({1}): [{1}]} and type(x[frozenset({1})][0]) is set",
        );
        check(
            py,
            &Value::List(vec![Value::Tuple(vec![inner])]),
            "type(x[0][0]) is set",
        );
    });
}

#[test]
fn unhashable_key_is_an_error() {
    with_py(|py| {
        let v = Value::Map(vec![(Value::List(vec![Value::Int(1)]), Value::Int(2))]);
        let err = to_py(py, &v).expect_err("unhashable");
        assert!(
            err.0.contains("a list") && err.0.contains("unhashable"),
            "{err}"
        );
        let v = Value::Map(vec![(Value::Map(vec![]), Value::Int(2))]);
        let err = to_py(py, &v).expect_err("unhashable");
        assert!(err.0.contains("a map"), "{err}");
        let v = Value::Set(vec![Value::Map(vec![])]);
        let err = to_py(py, &v).expect_err("unhashable");
        assert!(
            err.0.contains("a map") && err.0.contains("Python set"),
            "{err}"
        );
        // Nested containers that are ready before the key fails: no leak/crash.
        let v = Value::Map(vec![(
            Value::Tuple(vec![Value::Int(1), Value::List(vec![])]),
            Value::Int(2),
        )]);
        let err = to_py(py, &v).expect_err("unhashable tuple");
        assert!(err.0.contains("a tuple"), "{err}");
    });
}

#[test]
fn keys_equal_in_python_are_errors() {
    with_py(|py| {
        // 1, 1.0 and true; "a" and :a (both Str by now); MapSet members.
        let v = Value::Map(vec![
            (Value::Int(1), Value::Str("int".into())),
            (Value::Float(1.0), Value::Str("float".into())),
        ]);
        let err = to_py(py, &v).expect_err("1 and 1.0");
        assert_eq!(
            err.0,
            "cannot convert a map whose keys 1 and 1.0 are equal in Python, \
             and a dict holds each only once"
        );
        let v = Value::List(vec![Value::Map(vec![
            (Value::Bool(true), Value::None),
            (Value::Str("a".into()), Value::None),
            (Value::Int(1), Value::None),
        ])]);
        let err = to_py(py, &v).expect_err("true and 1");
        assert!(err.0.contains("keys true and 1 are equal"), "{err}");
        let v = Value::Set(vec![Value::Str("a".into()), Value::Str("a".into())]);
        let err = to_py(py, &v).expect_err("set");
        assert!(
            err.0.contains("MapSet whose members \"a\" and \"a\""),
            "{err}"
        );
        // NaNs stay apart in Python; so do str and bytes.
        let v = Value::Map(vec![
            (Value::Float(f64::NAN), Value::None),
            (Value::Float(f64::NAN), Value::None),
            (Value::Str("a".into()), Value::None),
            (Value::Bytes(b"a".to_vec()), Value::None),
        ]);
        assert_eq!(to_py(py, &v).expect("distinct").len().expect("len"), 4);
    });
}

fn nested(depth: usize) -> Value {
    let mut v = Value::Int(7);
    for i in 0..depth {
        v = if i % 2 == 0 {
            Value::List(vec![v])
        } else {
            Value::Map(vec![(Value::Int(0), v)])
        };
    }
    v
}

fn drop_deep(v: Value) {
    // Value's own Drop is recursive; drop it on a big stack.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || drop(v))
        .expect("spawn")
        .join()
        .expect("join");
}

#[test]
fn deep_nesting() {
    with_py(|py| {
        let v = nested(MAX_DEPTH);
        let obj = to_py(py, &v).expect("MAX_DEPTH levels convert");
        drop_deep(v);
        let back = from_py(&obj).expect("and come back");
        drop_deep(back);
        let v = nested(MAX_DEPTH + 1);
        let err = to_py(py, &v).expect_err("too deep");
        assert_eq!(err.0, "value nests deeper than 10000 levels");
        drop_deep(v);
    });
}

#[test]
fn big_list_round_trip_is_fast() {
    with_py(|py| {
        let v = Value::List((0..1_000_000).map(Value::Int).collect());
        let t = std::time::Instant::now();
        let obj = to_py(py, &v).expect("to_py");
        let t1 = t.elapsed();
        let back = from_py(&obj).expect("from_py");
        let t2 = t.elapsed();
        eprintln!("1M ints: to_py {t1:?}, total {t2:?}");
        match back {
            Value::List(items) => {
                assert_eq!(items.len(), 1_000_000);
                assert!(matches!(items[999_999], Value::Int(999_999)));
            }
            v => panic!("{}", v.kind()),
        }
    });
}
