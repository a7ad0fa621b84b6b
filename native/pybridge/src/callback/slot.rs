//! The reply slot: where the BEAM's answer to one callback lands, and where
//! the Python thread that asked waits for it, without the GIL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::convert::Value;
use crate::limits::CALLBACK_SPIN;

/// How a callback ended, as the Python side sees it.
#[derive(Debug)]
pub enum Answer {
    /// The function returned this value.
    Value(Value),
    /// The function raised, exited or threw (`kind` is `"error"`, `"exit"`
    /// or `"throw"`) with `reason`; `message` is the BEAM's description.
    Raised {
        kind: String,
        reason: Value,
        message: String,
    },
    /// No function is registered under the name.
    Unknown(String),
    /// The request could not be delivered or answered (a dead process, a
    /// value that cannot cross, the BEAM shutting down, the depth limit).
    Failed(String),
    /// The call waiting on the callback timed out or was cancelled.
    Timeout(String),
}

/// One callback's answer, written once (the first answer wins) and taken
/// once by the thread that asked.
#[derive(Debug)]
pub struct Slot {
    /// Set (Release) after `answer` is written, read (Acquire) by a waiter
    /// polling without the lock.
    ready: AtomicBool,
    answer: Mutex<Option<Answer>>,
    filled: Condvar,
    /// A file descriptor written one byte when the answer arrives (an
    /// asyncio loop's wake-up pipe), or -1. The byte is written holding the
    /// lock, so once [`Slot::set_wakeup_fd`] has replaced a descriptor no
    /// write to it is under way or to come: its owner may close it (and the
    /// number be reused) at once.
    wakeup_fd: Mutex<i32>,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot::new()
    }
}

impl Slot {
    pub fn new() -> Slot {
        Slot {
            ready: AtomicBool::new(false),
            answer: Mutex::new(None),
            filled: Condvar::new(),
            wakeup_fd: Mutex::new(-1),
        }
    }

    /// Has one byte written to `fd` when the answer arrives (at once if it
    /// is already there); -1 for none. The descriptor set before is never
    /// written after this returns.
    pub fn set_wakeup_fd(&self, fd: i32) {
        *self.wakeup_fd.lock() = fd;
        if fd >= 0 && self.is_ready() {
            self.wake_fd();
        }
    }

    /// Stores `answer` unless one is already there; true when it was stored.
    pub fn fulfil(&self, answer: Answer) -> bool {
        {
            let mut slot = self.answer.lock();
            if self.ready.load(Ordering::Acquire) {
                return false;
            }
            *slot = Some(answer);
            self.ready.store(true, Ordering::Release);
            self.filled.notify_all();
        }
        self.wake_fd();
        true
    }

    fn wake_fd(&self) {
        let mut wakeup_fd = self.wakeup_fd.lock();
        let fd = std::mem::replace(&mut *wakeup_fd, -1);
        if fd >= 0 {
            let byte = [1u8];
            // SAFETY: writes one byte from a live buffer; a closed or full
            // descriptor only makes the write fail, which is fine (the
            // waiter polls `is_ready` too).
            let _ = unsafe { libc::write(fd, byte.as_ptr().cast(), 1) };
        }
    }

    /// True once an answer is there (it may have been taken already).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Takes the answer, if it is there and nobody took it yet.
    pub fn take(&self) -> Option<Answer> {
        if !self.is_ready() {
            return None;
        }
        self.answer.lock().take()
    }

    /// Waits until the answer is there or `deadline` passes (for ever when
    /// None); true when it is there. Nothing is taken or filled.
    pub fn wait_ready(&self, deadline: Option<Instant>) -> bool {
        if crate::runtime::poll_for(CALLBACK_SPIN, || self.is_ready().then_some(())).is_some() {
            return true;
        }
        let mut slot = self.answer.lock();
        while !self.ready.load(Ordering::Acquire) {
            match deadline {
                None => self.filled.wait(&mut slot),
                Some(deadline) => {
                    if self.filled.wait_until(&mut slot, deadline).timed_out() {
                        return self.ready.load(Ordering::Acquire);
                    }
                }
            }
        }
        true
    }

    /// Waits for the answer until `deadline` (for ever when None), spinning
    /// briefly first since a quick BEAM function answers within
    /// microseconds. Past the deadline the slot is filled with
    /// [`Answer::Timeout`] (so a late answer is dropped) and that is taken.
    /// None only when the answer was already taken.
    pub fn wait(&self, deadline: Option<Instant>) -> Option<Answer> {
        if crate::runtime::poll_for(CALLBACK_SPIN, || self.is_ready().then_some(())).is_none() {
            let mut slot = self.answer.lock();
            while !self.ready.load(Ordering::Acquire) {
                match deadline {
                    None => self.filled.wait(&mut slot),
                    Some(deadline) => {
                        if self.filled.wait_until(&mut slot, deadline).timed_out()
                            && !self.ready.load(Ordering::Acquire)
                        {
                            *slot = Some(Answer::Timeout(
                                "the BEAM did not answer the callback within the call's timeout"
                                    .into(),
                            ));
                            self.ready.store(true, Ordering::Release);
                        }
                    }
                }
            }
        }
        self.answer.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_first_answer_wins() {
        let slot = Slot::new();
        assert!(slot.fulfil(Answer::Value(Value::Int(1))));
        assert!(!slot.fulfil(Answer::Value(Value::Int(2))));
        assert!(matches!(
            slot.wait(None),
            Some(Answer::Value(Value::Int(1)))
        ));
        assert!(slot.take().is_none());
    }

    #[test]
    fn a_waiter_is_woken_by_an_answer_from_another_thread() {
        let slot = Arc::new(Slot::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let answerer = slot.clone();
        let thread = std::thread::spawn(move || {
            // Answer only once the main thread says it is about to wait.
            rx.recv().ok();
            answerer.fulfil(Answer::Unknown("nope".into()));
        });
        tx.send(()).ok();
        assert!(matches!(slot.wait(None), Some(Answer::Unknown(m)) if m == "nope"));
        thread.join().ok();
    }

    #[test]
    fn past_the_deadline_the_wait_ends_with_a_timeout_and_a_late_answer_is_dropped() {
        let slot = Slot::new();
        let deadline = Instant::now() + Duration::from_millis(5);
        assert!(matches!(
            slot.wait(Some(deadline)),
            Some(Answer::Timeout(_))
        ));
        assert!(!slot.fulfil(Answer::Value(Value::None)));
    }

    #[test]
    fn the_wakeup_fd_gets_a_byte_when_the_answer_arrives() {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let slot = Slot::new();
        slot.set_wakeup_fd(fds[1]);
        slot.fulfil(Answer::Value(Value::None));
        let mut byte = [0u8];
        // SAFETY: reads one byte into a live buffer from our own pipe.
        let n = unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 1);
        // SAFETY: closing the pipe we opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn a_replaced_wakeup_fd_is_never_written() {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
            0
        );
        let slot = Slot::new();
        slot.set_wakeup_fd(fds[1]);
        // The waiter gave up (its coroutine was cancelled): the answer
        // that comes later must not write to the descriptor, which its
        // owner may have closed and the process reused.
        slot.set_wakeup_fd(-1);
        slot.fulfil(Answer::Value(Value::None));
        let mut byte = [0u8];
        // SAFETY: reads into a live buffer from our own non-blocking pipe.
        let n = unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
        assert_eq!(n, -1, "a byte was written to the replaced descriptor");
        // SAFETY: closing the pipe we opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
