//! The bound on a context's queue: at most `max_queue` calls wait for a
//! worker. A call beyond it is refused at once (`Overload::Refuse`), or its
//! caller is put on a list of waiters (`Overload::Wait`) and told when a
//! queued call has left the queue, to submit again. Waiters hold no call
//! (no decoded arguments), only a way to wake their caller, so a crowd of
//! waiting callers costs the native side a few words each: the callers
//! themselves are waiting BEAM processes, bounded by their timeouts.
//!
//! No wake-up is lost: a submitter registers as a waiter and then tries
//! once more, and a worker takes a call off the count and then looks for
//! waiters, both with sequentially consistent atomics, so at least one of
//! them sees the other (see [`QueueBound::refused`] and
//! [`QueueBound::release`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

use parking_lot::Mutex;

/// What a context does with a call beyond its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// Refuse it at once (`:overloaded`).
    Refuse,
    /// Register its caller as a waiter, woken when there is room.
    Wait,
}

/// Wakes one waiting caller. `wake` returns false when the caller is gone
/// (a dead process), so that the room goes to the next waiter.
pub trait Waker: Send {
    fn wake(self: Box<Self>) -> bool;
}

/// Why a call was not queued.
pub enum Refusal {
    /// The queue is full and the context refuses.
    Overloaded,
    /// The queue is full and the caller is waiting for room under this id
    /// (its waker was made with it).
    Waiting(u64),
}

pub(super) struct QueueBound {
    max: usize,
    mode: Overload,
    /// Calls in the queue (submitted, not yet taken by a worker).
    queued: AtomicUsize,
    /// `waiters.len()`, readable without the lock.
    waiting: AtomicUsize,
    waiters: Mutex<VecDeque<(u64, Box<dyn Waker>)>>,
    next_id: AtomicU64,
    /// Calls refused or sent to wait.
    overloaded_total: AtomicU64,
}

impl std::fmt::Debug for QueueBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueBound")
            .field("max", &self.max)
            .field("queued", &self.queued.load(SeqCst))
            .finish()
    }
}

impl QueueBound {
    pub(super) fn new(max: usize, mode: Overload) -> QueueBound {
        QueueBound {
            max: max.max(1),
            mode,
            queued: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            waiters: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            overloaded_total: AtomicU64::new(0),
        }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Calls in the queue now.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(SeqCst)
    }

    pub(super) fn overloaded_total(&self) -> u64 {
        self.overloaded_total.load(SeqCst)
    }

    /// Takes a place in the queue if there is one.
    fn try_acquire(&self) -> bool {
        self.queued
            .fetch_update(SeqCst, SeqCst, |q| (q < self.max).then_some(q + 1))
            .is_ok()
    }

    /// Takes a place in the queue for a call: `Ok` when it may be queued,
    /// else the refusal (the caller is registered with `waker` in `Wait`
    /// mode). A caller that took a place must queue the call, or
    /// [`release`](Self::release) it.
    pub(super) fn acquire(
        &self,
        waker: &mut dyn FnMut(u64) -> Box<dyn Waker>,
    ) -> Result<(), Refusal> {
        if self.try_acquire() {
            return Ok(());
        }
        self.refused(Some(waker))
    }

    /// [`acquire`](Self::acquire) for a caller that cannot wait: refused
    /// when full, whatever the mode.
    pub(super) fn acquire_or_refuse(&self) -> Result<(), Refusal> {
        if self.try_acquire() {
            return Ok(());
        }
        self.refused(None)
    }

    #[cold]
    fn refused(&self, waker: Option<&mut dyn FnMut(u64) -> Box<dyn Waker>>) -> Result<(), Refusal> {
        let Some(waker) = waker.filter(|_| self.mode == Overload::Wait) else {
            self.overloaded_total.fetch_add(1, SeqCst);
            return Err(Refusal::Overloaded);
        };
        let mut waiters = self.waiters.lock();
        // Counted as waiting before trying again: a worker that freed a
        // place before this sees the place taken now, one after it sees the
        // waiter (both SeqCst).
        self.waiting.store(waiters.len() + 1, SeqCst);
        if self.try_acquire() {
            self.waiting.store(waiters.len(), SeqCst);
            return Ok(());
        }
        let id = self.next_id.fetch_add(1, SeqCst);
        waiters.push_back((id, waker(id)));
        self.overloaded_total.fetch_add(1, SeqCst);
        Err(Refusal::Waiting(id))
    }

    /// A call left the queue (a worker took it, or it was never queued):
    /// its place goes to the first waiter still alive.
    pub(super) fn release(&self) {
        self.queued.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            self.wake_one();
        }
    }

    fn wake_one(&self) {
        loop {
            let next = {
                let mut waiters = self.waiters.lock();
                let next = waiters.pop_front();
                self.waiting.store(waiters.len(), SeqCst);
                next
            };
            match next {
                Some((_, waker)) => {
                    if waker.wake() {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// The caller waiting under `id` gave up (timed out). If it was woken
    /// already, the room it was told about goes to the next waiter.
    pub(super) fn cancel_wait(&self, id: u64) {
        let removed = {
            let mut waiters = self.waiters.lock();
            let position = waiters.iter().position(|(waiter, _)| *waiter == id);
            let removed = position.and_then(|i| waiters.remove(i));
            self.waiting.store(waiters.len(), SeqCst);
            removed
        };
        if removed.is_none() && self.queued.load(SeqCst) < self.max {
            self.wake_one();
        }
    }

    /// Wakes every waiter (the context closed: their next submit gets the
    /// `:closed` error).
    pub(super) fn wake_all(&self) {
        let waiters = {
            let mut waiters = self.waiters.lock();
            self.waiting.store(0, SeqCst);
            std::mem::take(&mut *waiters)
        };
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Flag(Arc<AtomicUsize>, bool);

    impl Waker for Flag {
        fn wake(self: Box<Self>) -> bool {
            self.0.fetch_add(1, SeqCst);
            self.1
        }
    }

    fn flag(counter: &Arc<AtomicUsize>, alive: bool) -> impl FnMut(u64) -> Box<dyn Waker> {
        let counter = counter.clone();
        move |_id| Box::new(Flag(counter.clone(), alive)) as Box<dyn Waker>
    }

    #[test]
    fn refuses_past_the_bound_and_frees_places() {
        let bound = QueueBound::new(2, Overload::Refuse);
        let woken = Arc::new(AtomicUsize::new(0));
        assert!(bound.acquire(&mut flag(&woken, true)).is_ok());
        assert!(bound.acquire(&mut flag(&woken, true)).is_ok());
        assert!(matches!(
            bound.acquire(&mut flag(&woken, true)),
            Err(Refusal::Overloaded)
        ));
        assert_eq!(bound.overloaded_total(), 1);
        bound.release();
        assert!(bound.acquire(&mut flag(&woken, true)).is_ok());
        assert_eq!(woken.load(SeqCst), 0);
    }

    #[test]
    fn waiters_are_woken_in_order_skipping_dead_ones() {
        let bound = QueueBound::new(1, Overload::Wait);
        let first = Arc::new(AtomicUsize::new(0));
        let dead = Arc::new(AtomicUsize::new(0));
        let second = Arc::new(AtomicUsize::new(0));
        assert!(bound.acquire(&mut flag(&first, true)).is_ok());
        assert!(matches!(
            bound.acquire(&mut flag(&dead, false)),
            Err(Refusal::Waiting(_))
        ));
        assert!(matches!(
            bound.acquire(&mut flag(&second, true)),
            Err(Refusal::Waiting(_))
        ));
        bound.release();
        // The dead waiter was tried, then the room went to the next.
        assert_eq!(dead.load(SeqCst), 1);
        assert_eq!(second.load(SeqCst), 1);
    }

    #[test]
    fn a_waiter_that_gives_up_after_its_wake_passes_the_room_on() {
        let bound = QueueBound::new(1, Overload::Wait);
        let a = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(AtomicUsize::new(0));
        assert!(bound.acquire(&mut flag(&a, true)).is_ok());
        let Err(Refusal::Waiting(a_id)) = bound.acquire(&mut flag(&a, true)) else {
            panic!("expected to wait")
        };
        let Err(Refusal::Waiting(b_id)) = bound.acquire(&mut flag(&b, true)) else {
            panic!("expected to wait")
        };
        bound.release();
        assert_eq!(a.load(SeqCst), 1);
        // `a` timed out instead of submitting again: `b` gets the room.
        bound.cancel_wait(a_id);
        assert_eq!(b.load(SeqCst), 1);
        // `b` was woken already and gone from the list: nothing more to do.
        bound.cancel_wait(b_id);
        assert_eq!(bound.waiting.load(SeqCst), 0);
    }

    #[test]
    fn no_wake_up_is_lost_between_threads() {
        // Workers free places while submitters register: every submitter
        // ends up with a place (none waits forever).
        let bound = Arc::new(QueueBound::new(4, Overload::Wait));
        let total = 2_000;
        let placed = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        struct Send_(crossbeam_channel::Sender<()>);
        impl Waker for Send_ {
            fn wake(self: Box<Self>) -> bool {
                self.0.send(()).is_ok()
            }
        }
        let worker = {
            let (bound, placed) = (bound.clone(), placed.clone());
            std::thread::spawn(move || {
                let mut released = 0;
                while released < total {
                    if placed.load(SeqCst) > released {
                        bound.release();
                        released += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        for _ in 0..total {
            loop {
                let tx = tx.clone();
                match bound.acquire(&mut move |_id| Box::new(Send_(tx.clone())) as Box<dyn Waker>) {
                    Ok(()) => {
                        placed.fetch_add(1, SeqCst);
                        break;
                    }
                    Err(Refusal::Waiting(_)) => {
                        rx.recv_timeout(std::time::Duration::from_secs(10))
                            .expect("a wake-up, not a lost one");
                    }
                    Err(Refusal::Overloaded) => unreachable!(),
                }
            }
        }
        worker.join().expect("worker");
    }
}
