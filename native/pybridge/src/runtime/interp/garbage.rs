//! The references an interpreter was handed to drop with it attached, and
//! their collection by its workers.

use std::sync::atomic::Ordering;

use pyo3::prelude::*;

use super::Interp;

impl Interp {
    /// Hands a reference over to be dropped with this interpreter attached.
    /// Needs no GIL. Returns true when nothing else was waiting, that is
    /// when a collection may need asking for.
    pub fn release(&self, obj: Py<PyAny>) -> bool {
        let mut garbage = self.garbage.lock();
        garbage.push(obj);
        !self.pending.swap(true, Ordering::AcqRel)
    }

    /// True when references are waiting to be dropped.
    pub fn has_garbage(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Drops the released references (and notes the freed memory for
    /// [`trim_if_released`](crate::runtime::trim_if_released)). `_py` must be attached
    /// to this interpreter. Returns how many there were.
    pub fn collect(&self, _py: Python<'_>) -> usize {
        if !self.has_garbage() {
            return 0;
        }
        let garbage = {
            let mut list = self.garbage.lock();
            self.pending.store(false, Ordering::Release);
            std::mem::take(&mut *list)
        };
        let n = garbage.len();
        drop(garbage);
        if n > 0 {
            crate::runtime::note_release();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, OnceLock};

    use parking_lot::Mutex;
    use pyo3::prelude::*;

    use super::super::Kind;
    use super::*;
    use crate::convert::PyObject;

    /// An interpreter record of the main interpreter that only this test
    /// knows, so the monitor (which collects the main one's garbage) cannot
    /// interfere.
    fn private_main() -> Arc<Interp> {
        Arc::new(Interp {
            ptr: Interp::main().ptr,
            keeper: std::ptr::null_mut(),
            kind: Kind::Main,
            state: OnceLock::new(),
            garbage: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
        })
    }

    fn alive(weak: &Py<PyAny>) -> bool {
        Python::attach(|py| !weak.bind(py).call0().expect("deref").is_none())
    }

    #[test]
    fn a_handle_dropped_without_the_gil_waits_for_its_interpreter() {
        Python::initialize();
        let owner = private_main();
        let (weak, handle) = Python::attach(|py| {
            let obj = py
                .eval(c"type('Tracked', (), {})()", None, None)
                .expect("object");
            let weak = py
                .import("weakref")
                .and_then(|w| w.call_method1("ref", (&obj,)))
                .expect("weakref");
            let handle = PyObject::with_owner(obj.unbind(), owner.clone());
            (weak.unbind(), handle)
        });
        drop(handle);
        assert!(owner.has_garbage(), "the reference went to its interpreter");
        assert!(alive(&weak), "not dropped through PyO3's deferred pool");
        assert_eq!(Python::attach(|py| owner.collect(py)), 1);
        assert!(!owner.has_garbage());
        assert!(!alive(&weak), "dropped once collected, attached");
    }
}
