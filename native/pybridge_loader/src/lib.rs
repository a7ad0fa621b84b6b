//! `Elixir.Py.Native.Loader`: makes libpython's symbols globally visible.
//!
//! The main pybridge NIF is built with PyO3's `extension-module` feature, so it
//! leaves every `Py*` symbol unresolved and expects the process to provide them.
//! The BEAM loads NIF libraries with `RTLD_LOCAL`, which means nothing a NIF
//! links against is visible to later libraries. This tiny NIF therefore opens
//! the libpython chosen at runtime (see `Py.Runtime.Python`) with
//! `RTLD_NOW | RTLD_GLOBAL` *before* `pybridge.so` is loaded: the dynamic linker
//! then resolves the NIF's Python symbols against it, and so do the C extension
//! modules (`numpy`, ...) that Python itself `dlopen`s later.
//!
//! The handle is never closed: the interpreter lives as long as the VM.

use std::ffi::{CStr, CString};

use rustler::{Binary, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        ok,
        error,
    }
}

/// `load_library(path :: binary) :: :ok | {:error, binary}`
///
/// Runs on a dirty IO scheduler: `dlopen` touches the filesystem and runs the
/// library's constructors, which may take a while for a large libpython.
#[rustler::nif(schedule = "DirtyIo")]
fn load_library<'a>(env: Env<'a>, path: Binary<'a>) -> Term<'a> {
    match open_global(path.as_slice()) {
        Ok(()) => atoms::ok().encode(env),
        Err(reason) => (atoms::error(), reason).encode(env),
    }
}

/// `dlopen`s `path` with `RTLD_NOW | RTLD_GLOBAL` and deliberately leaks the
/// handle so the library stays mapped for the life of the process.
fn open_global(path: &[u8]) -> Result<(), String> {
    // Paths are bytes on Unix; a non-UTF-8 path is fine, an interior NUL is not.
    let c_path = CString::new(path).map_err(|_| {
        format!(
            "invalid library path {:?}: contains a NUL byte",
            String::from_utf8_lossy(path)
        )
    })?;

    // SAFETY: `dlerror` takes no arguments and only reads/clears the calling
    // thread's dynamic-linker error state. Calling it here discards any stale
    // error so the one read below belongs to our `dlopen`.
    unsafe {
        libc::dlerror();
    }

    // SAFETY: `c_path` is a valid NUL-terminated C string that outlives the
    // call, and the flags are valid `dlopen` mode bits. Loading a library runs
    // its ELF constructors; the caller only passes a libpython found by
    // `Py.Runtime.Python`, whose constructors are safe to run in any process.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };

    if handle.is_null() {
        return Err(last_dl_error(path));
    }

    // The handle is intentionally never passed to `dlclose`: unloading
    // libpython under a live interpreter (or under extension modules that
    // bound its symbols) would leave dangling code pointers. Opening the same
    // library again only bumps its reference count, so repeated calls are fine.
    Ok(())
}

/// The calling thread's pending `dlerror()` text, or a generic message.
fn last_dl_error(path: &[u8]) -> String {
    // SAFETY: `dlerror` is called on the same thread right after the failed
    // `dlopen`, so it reports that failure. It returns either NULL or a pointer
    // to a NUL-terminated string owned by libc that stays valid until the next
    // dl* call on this thread; we copy it out before making any other dl* call.
    unsafe {
        let msg = libc::dlerror();
        if msg.is_null() {
            format!(
                "dlopen({}) failed without an error message",
                String::from_utf8_lossy(path)
            )
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

rustler::init!("Elixir.Py.Native.Loader");
