//! Exposes PyO3's configuration cfgs (`Py_GIL_DISABLED`, `Py_3_12`, ...) to
//! this crate, so code can tell a free-threaded build from a stable-ABI one.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
