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

#[cfg(feature = "nif")]
mod nif {
    use rustler::{Binary, Encoder, Env, Term};

    mod atoms {
        rustler::atoms! {
            ok,
            error,
        }
    }

    /// `load_library(path :: binary) :: :ok | {:error, binary}`
    ///
    /// Runs on a dirty IO scheduler: `dlopen` touches the filesystem and runs
    /// the library's constructors, which may take a while for a large libpython.
    #[rustler::nif(schedule = "DirtyIo")]
    fn load_library<'a>(env: Env<'a>, path: Binary<'a>) -> Term<'a> {
        match super::open_global(path.as_slice()) {
            Ok(()) => atoms::ok().encode(env),
            Err(reason) => (atoms::error(), reason).encode(env),
        }
    }

    rustler::init!("Elixir.Py.Native.Loader");
}

/// `dlopen`s `path` with `RTLD_NOW | RTLD_GLOBAL` and deliberately leaks the
/// handle so the library stays mapped for the life of the process.
pub fn open_global(path: &[u8]) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::open_global;

    #[test]
    fn opens_a_system_library() {
        // libc is mapped into every process already; dlopen just finds it.
        let name: &[u8] = if cfg!(target_os = "macos") {
            b"/usr/lib/libSystem.B.dylib"
        } else {
            b"libc.so.6"
        };
        assert_eq!(open_global(name), Ok(()));
        // Opening it again only bumps the reference count.
        assert_eq!(open_global(name), Ok(()));
    }

    #[test]
    fn reports_dlerror_for_a_missing_file() {
        let err = open_global(b"/nonexistent/libpython3.99.so").unwrap_err();
        assert!(err.contains("/nonexistent/libpython3.99.so"), "{err}");
    }

    #[test]
    fn reports_dlerror_for_a_file_that_is_no_library() {
        let path =
            std::env::temp_dir().join(format!("pybridge_loader_test_{}", std::process::id()));
        std::fs::write(&path, b"not an ELF file").unwrap();
        let err = open_global(path.to_str().unwrap().as_bytes()).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(!err.is_empty());
    }

    #[test]
    fn rejects_interior_nul() {
        let err = open_global(b"/a\0b").unwrap_err();
        assert!(err.contains("NUL"), "{err}");
    }
}
