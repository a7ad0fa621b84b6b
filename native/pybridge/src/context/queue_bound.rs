//! The bound on a context's queue: at most `max_queue` calls wait for a
//! worker. A call beyond it is refused at once (`Overload::Refuse`), or its
//! caller is put on a list of waiters (`Overload::Wait`), to submit again
//! when it is woken. Waiters hold no call (no decoded arguments), only a
//! way to wake their caller, so a crowd of waiting callers costs the native
//! side a few words each: the callers themselves are waiting BEAM
//! processes, bounded by their timeouts.
//!
//! A place freed while callers wait is handed over, not freed: it stays
//! counted, goes to the first waiter (FIFO), and is that waiter's alone
//! until it submits again ([`QueueBound::acquire`] with its id) or gives up
//! ([`QueueBound::cancel_wait`], which passes it on). Nobody else can take
//! it meanwhile: a new caller finds the queue full while anyone waits. So
//! a woken caller never waits twice, and the queue never holds more than
//! `max_queue` calls.
//!
//! The places taken and the waiters are one atomic word, so that taking a
//! place, freeing one and registering a waiter each decide on one
//! consistent view: no wake-up is lost and nobody overtakes a waiter. The
//! waiter count changes only under the waiters' lock, the places also
//! without it (the fast paths, while nobody waits).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

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

/// `QueueBound::state`: places taken in the low half, waiters in the high.
const PLACES: u64 = 0xffff_ffff;
const ONE_WAITER: u64 = 1 << 32;

fn places(state: u64) -> u64 {
    state & PLACES
}

fn waiters(state: u64) -> u64 {
    state >> 32
}

pub(super) struct QueueBound {
    max: u64,
    mode: Overload,
    /// Places taken (calls in the queue, and places handed to woken
    /// waiters not back yet) and waiters (`waiting.list.len()`), see
    /// [`places`] and [`waiters`].
    state: AtomicU64,
    waiting: Mutex<Waiting>,
    next_id: AtomicU64,
    /// Calls refused or sent to wait.
    overloaded_total: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    /// The callers waiting for a place, first come first.
    list: VecDeque<(u64, Box<dyn Waker>)>,
    /// Woken callers, each owning a place until it submits or gives up.
    handed: HashSet<u64>,
}

impl std::fmt::Debug for QueueBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueBound")
            .field("max", &self.max)
            .field("places", &places(self.state.load(SeqCst)))
            .finish()
    }
}

impl QueueBound {
    pub(super) fn new(max: usize, mode: Overload) -> QueueBound {
        QueueBound {
            max: u64::try_from(max).unwrap_or(PLACES).clamp(1, PLACES),
            mode,
            state: AtomicU64::new(0),
            waiting: Mutex::new(Waiting::default()),
            next_id: AtomicU64::new(1),
            overloaded_total: AtomicU64::new(0),
        }
    }

    pub(super) fn max(&self) -> usize {
        usize::try_from(self.max).unwrap_or(usize::MAX)
    }

    /// Calls in the queue now (places handed to woken callers that have
    /// not submitted yet do not count).
    pub(super) fn queued(&self) -> usize {
        let handed = self.waiting.lock().handed.len() as u64;
        let queued = places(self.state.load(SeqCst)).saturating_sub(handed);
        usize::try_from(queued).unwrap_or(usize::MAX)
    }

    pub(super) fn overloaded_total(&self) -> u64 {
        self.overloaded_total.load(SeqCst)
    }

    /// True when `state` has a free place and nobody waits for one.
    fn has_room(&self, state: u64) -> bool {
        waiters(state) == 0 && places(state) < self.max
    }

    /// Takes a free place, if there is one and nobody waits for it.
    fn try_acquire(&self) -> bool {
        self.state
            .fetch_update(SeqCst, SeqCst, |s| self.has_room(s).then_some(s + 1))
            .is_ok()
    }

    /// Takes a place in the queue for a call: `Ok` when it may be queued,
    /// else the refusal. `claim` is the id a woken caller waited under:
    /// the place handed to it is taken (a caller not woken yet still waits
    /// under it). Without one (or with one whose place is gone: it was
    /// given up), a free place is taken; with none
    /// free, the caller is registered with `waker` in `Wait` mode, refused
    /// otherwise (or with no `waker`). A caller that took a place must
    /// queue the call, or [`release`](Self::release) it.
    pub(super) fn acquire(
        &self,
        claim: Option<u64>,
        waker: Option<&mut dyn FnMut(u64) -> Box<dyn Waker>>,
    ) -> Result<(), Refusal> {
        if let Some(id) = claim {
            let mut waiting = self.waiting.lock();
            if waiting.handed.remove(&id) {
                return Ok(());
            }
            // Not woken yet: it keeps its turn (a second one would leave
            // this one to be handed a place nobody claims).
            if waiting.list.iter().any(|(waiter, _)| *waiter == id) {
                return Err(Refusal::Waiting(id));
            }
        }
        if self.try_acquire() {
            return Ok(());
        }
        self.refused(waker)
    }

    #[cold]
    fn refused(&self, waker: Option<&mut dyn FnMut(u64) -> Box<dyn Waker>>) -> Result<(), Refusal> {
        let Some(waker) = waker.filter(|_| self.mode == Overload::Wait) else {
            self.overloaded_total.fetch_add(1, SeqCst);
            return Err(Refusal::Overloaded);
        };
        let mut waiting = self.waiting.lock();
        // One decision: a place freed before this is taken, one freed after
        // it is handed to this waiter (`release` sees it counted).
        let before = self.state.fetch_update(SeqCst, SeqCst, |s| {
            Some(if self.has_room(s) {
                s + 1
            } else {
                s + ONE_WAITER
            })
        });
        if before.is_ok_and(|s| self.has_room(s)) {
            return Ok(());
        }
        let id = self.next_id.fetch_add(1, SeqCst);
        waiting.list.push_back((id, waker(id)));
        self.overloaded_total.fetch_add(1, SeqCst);
        Err(Refusal::Waiting(id))
    }

    /// A call left the queue (a worker took it, or it was never queued):
    /// its place is freed, or handed to the first waiter still alive.
    pub(super) fn release(&self) {
        let freed = self
            .state
            .fetch_update(SeqCst, SeqCst, |s| (waiters(s) == 0).then(|| s - 1))
            .is_ok();
        if !freed {
            self.hand_over();
        }
    }

    /// Gives the place the caller holds to the first waiter still alive,
    /// or frees it when nobody waits.
    #[cold]
    fn hand_over(&self) {
        loop {
            let (id, waker) = {
                let mut waiting = self.waiting.lock();
                // Under the lock the waiter count is `list.len()`.
                let Some((id, waker)) = waiting.list.pop_front() else {
                    self.state.fetch_sub(1, SeqCst);
                    return;
                };
                self.state.fetch_sub(ONE_WAITER, SeqCst);
                waiting.handed.insert(id);
                (id, waker)
            };
            if waker.wake() {
                return;
            }
            // Its caller is gone: the place goes on, unless the caller gave
            // it up meanwhile (`cancel_wait` passed it on then).
            if !self.waiting.lock().handed.remove(&id) {
                return;
            }
        }
    }

    /// The caller waiting under `id` gave up (timed out, or died). If it was
    /// woken already, the place handed to it goes to the next waiter.
    pub(super) fn cancel_wait(&self, id: u64) {
        let mut waiting = self.waiting.lock();
        if let Some(i) = waiting.list.iter().position(|(waiter, _)| *waiter == id) {
            waiting.list.remove(i);
            self.state.fetch_sub(ONE_WAITER, SeqCst);
        } else if waiting.handed.remove(&id) {
            drop(waiting);
            self.hand_over();
        }
    }

    /// Wakes every waiter (the context closed: their next submit gets the
    /// `:closed` error).
    pub(super) fn wake_all(&self) {
        let list = {
            let mut waiting = self.waiting.lock();
            self.state.fetch_and(PLACES, SeqCst);
            std::mem::take(&mut waiting.list)
        };
        for (_, waker) in list {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    struct Flag(Arc<AtomicUsize>, bool);

    impl Waker for Flag {
        fn wake(self: Box<Self>) -> bool {
            self.0.fetch_add(1, SeqCst);
            self.1
        }
    }

    /// `acquire` for a caller whose waker counts its wake-ups in `counter`
    /// and reports it `alive` or not.
    fn ask(
        bound: &QueueBound,
        claim: Option<u64>,
        counter: &Arc<AtomicUsize>,
        alive: bool,
    ) -> Result<(), Refusal> {
        let counter = counter.clone();
        let mut waker = move |_id| Box::new(Flag(counter.clone(), alive)) as Box<dyn Waker>;
        bound.acquire(claim, Some(&mut waker))
    }

    fn waits(result: Result<(), Refusal>) -> u64 {
        match result {
            Err(Refusal::Waiting(id)) => id,
            Ok(()) => panic!("expected to wait, got a place"),
            Err(Refusal::Overloaded) => panic!("expected to wait, was refused"),
        }
    }

    #[test]
    fn refuses_past_the_bound_and_frees_places() {
        let bound = QueueBound::new(2, Overload::Refuse);
        let woken = Arc::new(AtomicUsize::new(0));
        assert!(ask(&bound, None, &woken, true).is_ok());
        assert!(ask(&bound, None, &woken, true).is_ok());
        assert!(matches!(
            ask(&bound, None, &woken, true),
            Err(Refusal::Overloaded)
        ));
        assert_eq!(bound.overloaded_total(), 1);
        bound.release();
        assert!(ask(&bound, None, &woken, true).is_ok());
        assert_eq!(woken.load(SeqCst), 0);
    }

    #[test]
    fn waiters_are_woken_in_order_skipping_dead_ones() {
        let bound = QueueBound::new(1, Overload::Wait);
        let first = Arc::new(AtomicUsize::new(0));
        let dead = Arc::new(AtomicUsize::new(0));
        let second = Arc::new(AtomicUsize::new(0));
        assert!(ask(&bound, None, &first, true).is_ok());
        waits(ask(&bound, None, &dead, false));
        let second_id = waits(ask(&bound, None, &second, true));
        bound.release();
        // The dead waiter was tried, then the place went to the next.
        assert_eq!(dead.load(SeqCst), 1);
        assert_eq!(second.load(SeqCst), 1);
        assert!(ask(&bound, Some(second_id), &second, true).is_ok());
        assert_eq!(bound.queued(), 1);
    }

    #[test]
    fn the_freed_place_is_the_woken_waiters_alone() {
        let bound = QueueBound::new(1, Overload::Wait);
        let (a, b, c) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        assert!(ask(&bound, None, &a, true).is_ok());
        let b_id = waits(ask(&bound, None, &b, true));
        bound.release();
        assert_eq!(b.load(SeqCst), 1);
        // Before `b` submits again, a newcomer finds the queue full, even
        // a caller that cannot wait...
        let c_id = waits(ask(&bound, None, &c, true));
        assert!(matches!(
            bound.acquire(None, None),
            Err(Refusal::Overloaded)
        ));
        // ...and `b` gets its place, once: the queue holds one call.
        assert!(ask(&bound, Some(b_id), &b, true).is_ok());
        assert_eq!(bound.queued(), 1);
        waits(ask(&bound, Some(b_id), &b, true));
        // The next place goes to `c`, in order.
        bound.release();
        assert_eq!(c.load(SeqCst), 1);
        assert!(ask(&bound, Some(c_id), &c, true).is_ok());
    }

    #[test]
    fn a_waiter_that_gives_up_after_its_wake_passes_the_place_on() {
        let bound = QueueBound::new(1, Overload::Wait);
        let a = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(AtomicUsize::new(0));
        assert!(ask(&bound, None, &a, true).is_ok());
        let a_id = waits(ask(&bound, None, &a, true));
        let b_id = waits(ask(&bound, None, &b, true));
        bound.release();
        assert_eq!(a.load(SeqCst), 1);
        // `a` timed out instead of submitting again: `b` gets the place.
        bound.cancel_wait(a_id);
        assert_eq!(b.load(SeqCst), 1);
        // A claim after giving up finds no place (the queue is full again).
        waits(ask(&bound, Some(a_id), &a, true));
        // `b` gives up too, nobody else waits but `a`: it gets the place.
        bound.cancel_wait(b_id);
        assert_eq!(a.load(SeqCst), 2);
    }

    /// A bound of one place, taken, and a caller waiting: its wake-up
    /// counter and id.
    fn full_with_one_waiter() -> (QueueBound, Arc<AtomicUsize>, u64) {
        let bound = QueueBound::new(1, Overload::Wait);
        let a = Arc::new(AtomicUsize::new(0));
        assert!(ask(&bound, None, &a, true).is_ok());
        let id = waits(ask(&bound, None, &a, true));
        (bound, a, id)
    }

    #[test]
    fn a_claim_before_the_wake_keeps_the_turn() {
        let (bound, a, id) = full_with_one_waiter();
        assert_eq!(waits(ask(&bound, Some(id), &a, true)), id);
        assert_eq!(bound.waiting.lock().list.len(), 1);
        bound.release();
        assert!(ask(&bound, Some(id), &a, true).is_ok());
    }

    #[test]
    fn the_last_place_given_up_is_freed() {
        let (bound, a, id) = full_with_one_waiter();
        bound.release();
        assert_eq!(a.load(SeqCst), 1);
        bound.cancel_wait(id);
        assert_eq!(places(bound.state.load(SeqCst)), 0);
        assert!(bound.acquire(None, None).is_ok());
    }

    #[test]
    fn every_caller_gets_a_place_and_the_bound_holds_between_threads() {
        // Workers free places while submitters register and claim: every
        // submitter ends up with a place (none waits forever, none is
        // woken without one), and never more than `max` are taken.
        const MAX: u64 = 4;
        let bound = Arc::new(QueueBound::new(MAX as usize, Overload::Wait));
        let per_submitter = 500;
        let submitters = 3;
        let total = per_submitter * submitters;
        let placed = Arc::new(AtomicUsize::new(0));
        struct Send_(crossbeam_channel::Sender<u64>, u64);
        impl Waker for Send_ {
            fn wake(self: Box<Self>) -> bool {
                self.0.send(self.1).is_ok()
            }
        }
        let worker = {
            let (bound, placed) = (bound.clone(), placed.clone());
            std::thread::spawn(move || {
                let mut released = 0;
                while released < total {
                    assert!(places(bound.state.load(SeqCst)) <= MAX);
                    if placed.load(SeqCst) > released {
                        bound.release();
                        released += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let threads: Vec<_> = (0..submitters)
            .map(|_| {
                let (bound, placed) = (bound.clone(), placed.clone());
                std::thread::spawn(move || {
                    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
                    for _ in 0..per_submitter {
                        let mut claim = None;
                        loop {
                            let tx = tx.clone();
                            let mut waker =
                                move |id| Box::new(Send_(tx.clone(), id)) as Box<dyn Waker>;
                            match bound.acquire(claim, Some(&mut waker)) {
                                Ok(()) => {
                                    placed.fetch_add(1, SeqCst);
                                    break;
                                }
                                Err(Refusal::Waiting(id)) => {
                                    // A woken caller claims the place and
                                    // never has to wait again.
                                    assert!(claim.is_none(), "woken without a place");
                                    let woken = rx
                                        .recv_timeout(std::time::Duration::from_secs(10))
                                        .expect("a wake-up, not a lost one");
                                    assert_eq!(woken, id);
                                    claim = Some(id);
                                }
                                Err(Refusal::Overloaded) => unreachable!(),
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("submitter");
        }
        worker.join().expect("worker");
        assert_eq!(bound.state.load(SeqCst), 0);
    }
}
