//! C API functions outside the stable ABI, looked up at run time.

use std::ffi::CStr;

use pyo3::ffi;

/// Looks up a C API function that is not in the stable ABI.
pub(super) fn symbol(name: &CStr) -> Option<*mut libc::c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT only reads the global symbol table;
    // the name is a valid NUL-terminated C string.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!sym.is_null()).then_some(sym)
}

/// `PyThreadState_DeleteCurrent`: deletes the attached thread state and
/// releases its GIL.
///
/// # Safety
/// The calling thread must have a cleared thread state attached.
pub(in crate::runtime) unsafe fn delete_current() {
    type DeleteCurrent = unsafe extern "C" fn();
    match symbol(c"PyThreadState_DeleteCurrent") {
        // SAFETY: the symbol is CPython's `void PyThreadState_DeleteCurrent(void)`
        // (public since 3.9); the caller has a cleared thread state attached.
        Some(sym) => unsafe { std::mem::transmute::<*mut libc::c_void, DeleteCurrent>(sym)() },
        // SAFETY: same effect through the stable ABI: detach, then delete.
        None => unsafe { ffi::PyThreadState_Delete(ffi::PyEval_SaveThread()) },
    }
}

/// The main interpreter.
///
/// # Safety
/// The interpreter must be initialised; without `PyInterpreterState_Main`
/// (not in the stable ABI, but exported by every CPython we support) the
/// caller must also hold the main interpreter's GIL.
pub(super) unsafe fn main_interpreter() -> *mut ffi::PyInterpreterState {
    type Main = unsafe extern "C" fn() -> *mut ffi::PyInterpreterState;
    match symbol(c"PyInterpreterState_Main") {
        // SAFETY: CPython's `PyInterpreterState *PyInterpreterState_Main(void)`,
        // valid once the runtime is initialised.
        Some(sym) => unsafe { std::mem::transmute::<*mut libc::c_void, Main>(sym)() },
        // SAFETY: the caller holds the GIL of the main interpreter.
        None => unsafe { ffi::PyInterpreterState_Get() },
    }
}
