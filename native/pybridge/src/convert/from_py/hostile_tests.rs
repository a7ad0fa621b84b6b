//! Objects that lie, never end, change during the walk or collide as BEAM
//! keys. Before the snapshots, budget and key checks these panicked,
//! looped until the memory ran out, read freed memory or lost entries.

use std::time::Instant;

use num_bigint::BigInt;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::*;

fn setup<'py>(py: Python<'py>, code: &str) -> Bound<'py, PyDict> {
    let globals = PyDict::new(py);
    let code = std::ffi::CString::new(code).expect("cstr");
    py.run(&code, Some(&globals), None).expect("setup");
    globals
}

fn get<'py>(globals: &Bound<'py, PyDict>, name: &str) -> Bound<'py, PyAny> {
    globals.get_item(name).expect("get").expect(name)
}

fn ints(v: &Value) -> Vec<i64> {
    let (Value::List(items) | Value::Set(items)) = v else {
        panic!("{v:?}")
    };
    let mut out: Vec<i64> = items
        .iter()
        .map(|i| match i {
            Value::Int(i) => *i,
            other => panic!("{other:?}"),
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn a_lying_len_drives_no_allocation() {
    Python::initialize();
    Python::attach(|py| {
        let g = setup(
            py,
            "class S(set):\n    def __len__(self): return 10**18\n\
             class L(list):\n    def __len__(self): return 10**18\n\
             class D(dict):\n    def __len__(self): return 10**18\n\
             s, l, d = S({1, 2}), L([1, 2]), D({1: 2})",
        );
        assert_eq!(ints(&from_py(&get(&g, "s")).expect("set")), [1, 2]);
        assert_eq!(ints(&from_py(&get(&g, "l")).expect("list")), [1, 2]);
        assert!(matches!(from_py(&get(&g, "d")), Ok(Value::Map(p)) if p.len() == 1));
    });
}

#[test]
fn a_set_whose_iter_never_ends_converts_its_members() {
    Python::initialize();
    Python::attach(|py| {
        let g = setup(
            py,
            "import itertools\n\
             class S(set):\n    def __iter__(self): return itertools.count()\n\
             class F(frozenset):\n    def __iter__(self): return itertools.count()\n\
             s, f = S({1, 2, 3}), F({4})",
        );
        assert_eq!(ints(&from_py(&get(&g, "s")).expect("set")), [1, 2, 3]);
        assert_eq!(ints(&from_py(&get(&g, "f")).expect("frozenset")), [4]);
    });
}

#[test]
fn an_int_subclass_cannot_lie_about_its_value() {
    Python::initialize();
    Python::attach(|py| {
        let g = setup(
            py,
            "class I(int):\n    def bit_length(self): return 1\n\
             \x20   def to_bytes(self, *a, **k): return b'\\x01'\n\
             \x20   def __index__(self): return 1\n\
             i = I(2**100)",
        );
        let expected = BigInt::from(1u8) << 100;
        assert!(matches!(from_py(&get(&g, "i")), Ok(Value::BigInt(b)) if b == expected));
    });
}

#[test]
fn items_past_the_cap_are_an_error() {
    Python::initialize();
    Python::attach(|py| {
        let limits = Limits {
            max_items: 1000,
            ..Limits::default()
        };
        let conv = |code: &str| {
            let code = std::ffi::CString::new(code).expect("cstr");
            from_py_within(&py.eval(&code, None, None).expect("eval"), &limits)
        };
        assert!(conv("list(range(1000))").is_ok());
        assert!(conv("{i: i for i in range(500)}").is_ok());
        for code in [
            "list(range(1001))",
            "{i: i for i in range(501)}",
            "[[0] * 600, [0] * 600]",
            "set(range(5000))",
            "tuple(range(100_000))",
        ] {
            let err = conv(code).expect_err(code);
            assert_eq!(
                err.0,
                "the result holds more than 1000 items (values, keys and container elements); \
                 the :max_result_items setting of :pybridge sets this limit"
            );
        }
    });
}

#[test]
fn a_cancelled_or_late_call_stops_converting() {
    Python::initialize();
    Python::attach(|py| {
        let big = py.eval(c"list(range(100_000))", None, None).expect("eval");
        let cancelled = || true;
        let limits = Limits {
            cancelled: Some(&cancelled),
            ..Limits::default()
        };
        let err = from_py_within(&big, &limits).expect_err("cancelled");
        assert!(err.0.contains("was cancelled"), "{err}");
        let limits = Limits {
            deadline: Some(Instant::now()),
            ..Limits::default()
        };
        let err = from_py_within(&big, &limits).expect_err("late");
        assert!(err.0.contains("ran out of time"), "{err}");
        // Both are only looked at every CONVERSION_CHECK_ITEMS items.
        let small = py.eval(c"list(range(100))", None, None).expect("eval");
        assert!(from_py_within(&small, &limits).is_ok());
    });
}

#[test]
fn a_long_conversion_lets_other_threads_run() {
    Python::initialize();
    Python::attach(|py| {
        let g = setup(
            py,
            "import threading, time\n\
             last, stop, started = [0], [False], threading.Event()\n\
             def spin():\n\
             \x20   started.set()\n\
             \x20   while not stop[0]:\n\
             \x20       last[0] = time.monotonic_ns()\n\
             data = list(range(3_000_000))\n\
             t = threading.Thread(target=spin)\n\
             t.start()\n\
             started.wait()",
        );
        let now = || -> u64 {
            py.import("time")
                .and_then(|t| t.getattr("monotonic_ns")?.call0()?.extract())
                .expect("monotonic_ns")
        };
        // This thread now keeps the GIL (no bytecode runs on it) except
        // where the conversion lets go of it.
        let before = now();
        let v = from_py(&get(&g, "data")).expect("convert");
        let seen: u64 = get(&g, "last")
            .get_item(0)
            .and_then(|x| x.extract())
            .expect("last");
        py.run(c"stop[0] = True\nt.join()", Some(&g), None)
            .expect("stop");
        v.dispose();
        assert!(
            seen > before,
            "the other thread never ran during the conversion"
        );
    });
}

#[test]
fn containers_changed_by_another_thread_convert_as_a_snapshot() {
    Python::initialize();
    Python::attach(|py| {
        let g = setup(
            py,
            "import threading\n\
             n = 200_000\n\
             l = list(range(n))\n\
             d = {i: i for i in range(n)}\n\
             stop, started = [False], threading.Event()\n\
             def churn():\n\
             \x20   started.set()\n\
             \x20   i = 0\n\
             \x20   while not stop[0]:\n\
             \x20       i += 1\n\
             \x20       l.append(i); l.pop(0)\n\
             \x20       d[n + i] = i; del d[i - 1]\n\
             t = threading.Thread(target=churn)\n\
             t.start()\n\
             started.wait()",
        );
        for _ in 0..5 {
            let list = from_py(&get(&g, "l")).expect("list");
            let map = from_py(&get(&g, "d")).expect("dict");
            // The churn adds, then removes, in two steps: a snapshot taken
            // between them holds one item more.
            assert!(
                matches!(&list, Value::List(items) if (200_000..=200_001).contains(&items.len()))
            );
            assert!(
                matches!(&map, Value::Map(pairs) if (200_000..=200_001).contains(&pairs.len()))
            );
            list.dispose();
            map.dispose();
        }
        py.run(c"stop[0] = True\nt.join()", Some(&g), None)
            .expect("stop");
    });
}

#[test]
fn a_finaliser_that_empties_the_dict_mid_conversion() {
    Python::initialize();
    Python::attach(|py| {
        // A garbage cycle whose finaliser clears the dict being converted,
        // collected by the allocations that converting a big int makes
        // (collection is immediate on 3.11, deferred on 3.12+).
        let g = setup(
            py,
            "import gc\n\
             class Bomb:\n\
             \x20   def __init__(self, d): self.d, self.me = d, self\n\
             \x20   def __del__(self): self.d.clear()\n\
             d = {2**100: [1, 2, 3], 'x': [4]}\n\
             Bomb(d)\n\
             old = gc.get_threshold()\n\
             gc.set_threshold(1)",
        );
        let result = from_py(&get(&g, "d"));
        py.run(c"gc.set_threshold(*old)", Some(&g), None)
            .expect("restore");
        let Value::Map(pairs) = result.expect("dict") else {
            panic!("not a map")
        };
        assert_eq!(pairs.len(), 2);
        assert!(matches!(&pairs[0].1, Value::List(l) if l.len() == 3));
    });
}

#[test]
fn keys_that_become_one_term_are_errors_at_every_size() {
    Python::initialize();
    Python::attach(|py| {
        let g = setup(
            py,
            "class S(str):\n\
             \x20   def __hash__(self): return 1\n\
             \x20   def __eq__(self, other): return self is other\n\
             def nans(n): return {**{i: i for i in range(n)}, float('nan'): 1, float('nan'): 2}\n\
             def subs(n): return {**{i: i for i in range(n)}, 'a': 1, S('a'): 2}",
        );
        for n in [0, 30, 1000] {
            for (f, term, keys) in [
                ("nans", ":nan", "nan and nan"),
                ("subs", "\"a\"", "'a' and 'a'"),
            ] {
                let d = get(&g, f).call1((n,)).expect("dict");
                let err = from_py(&d).expect_err(f);
                assert_eq!(
                    err.0,
                    format!(
                        "cannot convert a dict whose keys {keys} would both become the BEAM \
                         term {term}, which a map holds only once"
                    ),
                    "{f}({n})"
                );
            }
        }
        for code in [
            "{('a', 1): 1, (b'a', 1): 2}",
            "{frozenset({'a'}): 1, frozenset({b'a'}): 2}",
            "{float('nan'), float('nan')}",
            "[{1: {'k': 1, b'k': 2}}]",
        ] {
            let obj = py
                .eval(&std::ffi::CString::new(code).expect("cstr"), None, None)
                .expect("eval");
            let err = from_py(&obj).expect_err(code);
            assert!(err.0.contains("would both become the BEAM term"), "{err}");
        }
        // Distinct terms, however mixed, are fine.
        let ok = py
            .eval(
                c"{1: 1, 1.5: 2, 'a': 3, b'b': 4, None: 5, (1,): 6, ('a',): 7, (b'b',): 8, \
                   float('nan'): 9, float('inf'): 10, frozenset({1}): 11, True: 12}",
                None,
                None,
            )
            .expect("eval");
        assert!(matches!(from_py(&ok), Ok(Value::Map(p)) if p.len() == 11));
    });
}
