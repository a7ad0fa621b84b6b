//! Exit statuses of the processes Python starts.
//!
//! The BEAM sets `SIGCHLD` to `SIG_IGN`, so that orphaned processes it
//! inherits when it runs as PID 1 do not linger as zombies. With that
//! disposition the kernel reaps every child of the VM the moment it exits,
//! and a later `waitpid` fails with `ECHILD`: Python's `subprocess` then
//! reports status 0 for a child that failed, `check=True` never raises, and
//! `os.system` returns -1. The BEAM's own ports do not depend on it: their
//! programs are children of `erl_child_setup`, which waits for them itself.
//!
//! So at start the runtime restores the default disposition (children stay
//! until their parent waits for them, as Python expects), unless told to
//! keep the VM's.

/// Sets `SIGCHLD` to its default disposition for the whole OS process.
#[cfg(unix)]
pub fn restore_default() -> Result<(), String> {
    // SAFETY: a zeroed sigaction is a valid value (no flags, empty mask once
    // sigemptyset has run); setting SIG_DFL installs no handler, so nothing
    // of ours runs in signal context. sigaction is process-wide and
    // thread-safe.
    let result = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut())
    };
    if result == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot restore the default SIGCHLD disposition: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(not(unix))]
pub fn restore_default() -> Result<(), String> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn disposition() -> libc::sighandler_t {
        // SAFETY: reading the current action into a zeroed struct.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current);
            current.sa_sigaction
        }
    }

    #[test]
    fn an_ignored_sigchld_is_restored_to_the_default() {
        // SAFETY: as in restore_default, with SIG_IGN: what the BEAM does.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        assert_eq!(disposition(), libc::SIG_IGN);
        restore_default().expect("sigaction");
        assert_eq!(disposition(), libc::SIG_DFL);
    }
}
