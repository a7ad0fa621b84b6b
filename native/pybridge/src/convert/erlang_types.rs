//! The `erlang` Python module: `erlang.Pid` and `erlang.Ref`.
//!
//! BEAM pids and references cross into Python as opaque, immutable, hashable
//! values holding the term in the external term format (what
//! `:erlang.term_to_binary/1` gives). They compare equal exactly when the
//! BEAM terms do, so they work as dict keys and set members, and they come
//! back to the BEAM as the very same pid or reference.
//!
//! [`install_erlang_module`] puts the module in `sys.modules["erlang"]` so
//! Python code can `import erlang`. Later features add functions to the same
//! module: extend [`build_module`] (or add members to the module that
//! [`erlang_module`] returns before installing it).

use std::fmt::Write as _;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyModule};

/// A BEAM pid (`erlang.Pid`), in the external term format.
#[pyclass(module = "erlang", name = "Pid", frozen, eq, hash)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pid {
    etf: Vec<u8>,
}

/// A BEAM reference (`erlang.Ref`), in the external term format.
#[pyclass(module = "erlang", name = "Ref", frozen, eq, hash)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ref {
    etf: Vec<u8>,
}

impl Pid {
    /// Wraps `term_to_binary` bytes of a pid.
    pub fn new(etf: Vec<u8>) -> Self {
        Pid { etf }
    }

    /// The pid in the external term format.
    pub fn etf(&self) -> &[u8] {
        &self.etf
    }
}

impl Ref {
    /// Wraps `term_to_binary` bytes of a reference.
    pub fn new(etf: Vec<u8>) -> Self {
        Ref { etf }
    }

    /// The reference in the external term format.
    pub fn etf(&self) -> &[u8] {
        &self.etf
    }
}

#[pymethods]
impl Pid {
    fn __repr__(&self) -> String {
        match parse_pid(&self.etf) {
            Some((node, id, serial)) => format!("<erlang.Pid {id}.{serial} @ {node}>"),
            None => format!("<erlang.Pid {}>", hex_prefix(&self.etf)),
        }
    }

    /// The pid in the external term format (`:erlang.term_to_binary/1`).
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.etf)
    }

    /// Pids are immutable: copies are the object itself.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }
}

#[pymethods]
impl Ref {
    fn __repr__(&self) -> String {
        match parse_ref(&self.etf) {
            Some((node, ids)) => {
                // Like the BEAM's `#Ref<0.C.B.A>`: most significant word first.
                let mut words = String::new();
                for (i, id) in ids.iter().rev().enumerate() {
                    if i > 0 {
                        words.push('.');
                    }
                    let _ = write!(words, "{id}");
                }
                format!("<erlang.Ref {words} @ {node}>")
            }
            None => format!("<erlang.Ref {}>", hex_prefix(&self.etf)),
        }
    }

    /// The reference in the external term format (`:erlang.term_to_binary/1`).
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.etf)
    }

    /// References are immutable: copies are the object itself.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }
}

/// The first bytes of `data` in hex, for reprs of terms we cannot parse.
fn hex_prefix(data: &[u8]) -> String {
    const SHOWN: usize = 24;
    let mut s = String::with_capacity(SHOWN * 2 + 3);
    for b in data.iter().take(SHOWN) {
        let _ = write!(s, "{b:02x}");
    }
    if data.len() > SHOWN {
        s.push_str("...");
    }
    s
}

/// A bounds-checked reader over external-term-format bytes.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A node name: any of the four atom encodings.
    fn atom(&mut self) -> Option<String> {
        let len = match self.u8()? {
            100 | 118 => usize::from(self.u16()?), // ATOM_EXT, ATOM_UTF8_EXT
            115 | 119 => usize::from(self.u8()?),  // SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT
            _ => return None,
        };
        Some(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
}

/// `(node, id, serial)` of a pid in the external term format.
fn parse_pid(etf: &[u8]) -> Option<(String, u32, u32)> {
    let mut r = Reader { data: etf };
    if r.u8()? != 131 {
        return None;
    }
    let tag = r.u8()?;
    if tag != 88 && tag != 103 {
        // NEW_PID_EXT, PID_EXT
        return None;
    }
    let node = r.atom()?;
    let id = r.u32()?;
    let serial = r.u32()?;
    Some((node, id, serial))
}

/// `(node, id words)` of a reference in the external term format.
fn parse_ref(etf: &[u8]) -> Option<(String, Vec<u32>)> {
    let mut r = Reader { data: etf };
    if r.u8()? != 131 {
        return None;
    }
    let creation_len = match r.u8()? {
        90 => 4,  // NEWER_REFERENCE_EXT
        114 => 1, // NEW_REFERENCE_EXT
        _ => return None,
    };
    let words = usize::from(r.u16()?);
    let node = r.atom()?;
    r.take(creation_len)?;
    let mut ids = Vec::with_capacity(words.min(8));
    for _ in 0..words {
        ids.push(r.u32()?);
    }
    Some((node, ids))
}

static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Creates the `erlang` module and its members. Add new members here.
fn build_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "erlang")?;
    m.setattr(
        "__doc__",
        "Values of the BEAM, as seen from Python embedded by pybridge.",
    )?;
    m.add_class::<Pid>()?;
    m.add_class::<Ref>()?;
    Ok(m)
}

/// The `erlang` module, created on first use (and then always the same
/// object). It is not put in `sys.modules` by this call.
pub fn erlang_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    MODULE
        .get_or_try_init(py, || build_module(py).map(Bound::unbind))
        .map(|m| m.bind(py).clone())
}

/// Makes `import erlang` work: puts the module in `sys.modules["erlang"]`.
/// Idempotent.
pub fn install_erlang_module(py: Python<'_>) -> PyResult<()> {
    let m = erlang_module(py)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("erlang", m)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyDict;

    // :erlang.term_to_binary(self()) on OTP 25, `nonode@nohost`, <0.9.0>.
    const PID: &[u8] = &[
        131, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0,
        0, 9, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    // :erlang.term_to_binary(make_ref()) on OTP 25.
    const REF: &[u8] = &[
        131, 90, 0, 3, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116,
        0, 0, 0, 0, 0, 2, 30, 239, 11, 128, 0, 2, 104, 102, 59, 192,
    ];

    #[test]
    fn parses_pid_and_ref() {
        assert_eq!(parse_pid(PID), Some(("nonode@nohost".into(), 9, 0)));
        let (node, ids) = parse_ref(REF).expect("ref parses");
        assert_eq!(node, "nonode@nohost");
        assert_eq!(ids.len(), 3);
        assert_eq!(parse_pid(&PID[..10]), None);
        assert_eq!(parse_ref(&[131, 90, 255, 255]), None);
        assert_eq!(parse_pid(&[]), None);
    }

    #[test]
    fn module_works_from_python() {
        Python::initialize();
        Python::attach(|py| {
            install_erlang_module(py).expect("install");
            install_erlang_module(py).expect("install twice");
            let m = py.import("erlang").expect("import erlang");
            assert!(m.is(erlang_module(py).expect("module")));

            let p1 = Bound::new(py, Pid::new(PID.to_vec())).expect("pid");
            let p2 = Bound::new(py, Pid::new(PID.to_vec())).expect("pid");
            let r = Bound::new(py, Ref::new(REF.to_vec())).expect("ref");
            assert!(p1.eq(&p2).expect("eq"));
            assert!(!p1.eq(&r).expect("eq"));
            assert_eq!(p1.hash().expect("hash"), p2.hash().expect("hash"));
            assert_eq!(
                p1.repr().expect("repr").to_string(),
                "<erlang.Pid 9.0 @ nonode@nohost>"
            );
            assert!(r
                .repr()
                .expect("repr")
                .to_string()
                .starts_with("<erlang.Ref "));
            let weird = Bound::new(py, Pid::new(vec![1, 2, 3])).expect("pid");
            assert_eq!(
                weird.repr().expect("repr").to_string(),
                "<erlang.Pid 010203>"
            );

            let locals = PyDict::new(py);
            locals.set_item("p", &p1).expect("set");
            locals.set_item("r", &r).expect("set");
            py.run(
                c"import erlang, copy\n\
                  assert isinstance(p, erlang.Pid) and isinstance(r, erlang.Ref)\n\
                  assert type(p).__module__ == 'erlang'\n\
                  assert {p: 1}[p] == 1 and len({p, r}) == 2\n\
                  assert copy.deepcopy([p])[0] is p\n\
                  assert bytes(p)[0] == 131\n",
                None,
                Some(&locals),
            )
            .expect("python checks");
        });
    }
}
