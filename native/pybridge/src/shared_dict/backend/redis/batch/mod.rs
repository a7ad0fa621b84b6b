//! Group commit for Redis: the puts and removals of concurrent callers on
//! one dict go to Redis together, as one script call
//! ([`scripts::WRITES`](super::scripts::WRITES)) on one connection.
//!
//! The shape of SQLite's group commit (`sqlite/group_commit.rs`): a writer
//! that finds fewer than [`MAX_IN_FLIGHT`] batches on their way to
//! Redis sends its own write at once, alone (a lone caller never waits for
//! a batch to fill). One that finds them all busy joins the batch forming
//! behind them, or starts one; the writer that started it sends it once one
//! in flight came back. Only what is already queued is batched. What one
//! batch's script call carries and answers (its writes in order, each with
//! its own condition, answer and event) is [`call`]; this file is who
//! waits, who sends, and when.
//!
//! * Each writer is answered only after Redis answered for the whole batch
//!   (and, when something on its node heard of one of the batch's writes,
//!   its node raised the batch's events, see
//!   [`Shared::written`](super::Shared::written)): what an `:ok` promises
//!   is unchanged. A batch whose call failed fails for every
//!   writer in it, with the same error a lone write would get (after a lost
//!   connection its writes may or may not have been applied, as for one).
//! * Writers that do not wait ([`Batcher::write_later`], a put from the
//!   BEAM: its NIF runs on a normal scheduler and must not block) queue
//!   their write the same way, only when a batch is on its way (else they
//!   send it themselves through [`Batcher::write`], on a dirty IO
//!   scheduler); a batch one of them started is sent by the batcher's
//!   thread (`py-dict-redis-w`, started on first use, ended by `close`),
//!   which answers each through its callback under the same rule. So 64
//!   BEAM processes putting are not limited to as many writes per batch as
//!   there are dirty IO schedulers. (Handing lone puts to the thread too
//!   was tried: on 2 cores the thread then competes with the BEAM's
//!   spinning schedulers, and both one process putting and 64 became
//!   erratic, at times 2-5× slower.)
//! * A batch holds at most [`MAX_OPS`] writes and [`MAX_BYTES`] of values;
//!   a value above [`big::BIG`] is never batched (it gets its own deadline).
//! * No writer waits forever: a panic while a batch is sent gives its turn
//!   back and answers each of its writers an error (its writes may have
//!   been applied, as after a lost connection); one anywhere else in the
//!   batcher's thread ends the thread, and every write it was given and
//!   had not sent is answered an error ([`Batcher::died`]); the next
//!   queued write starts another.

use std::collections::VecDeque;
#[cfg(test)]
use std::sync::atomic::AtomicU8;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::{big, Shared};
use crate::shared_dict::DictError;
use call::{answer, one, Answers, Call};
pub use call::{Answer, Op};

mod call;

/// Most writes in one batch.
pub const MAX_OPS: usize = 128;

/// Most value bytes in one batch (a write that would pass it starts the
/// next batch).
pub const MAX_BYTES: usize = big::BIG;

/// Batches on their way to Redis at once. One: the writers that come
/// meanwhile form the next batch, and they are many more per script call
/// than with two in flight (measured, 64 BEAM processes putting on 2
/// cores: about 5 writes per call against 2.5, and half the CPU per put on
/// both sides). The pool's other connections still serve reads and the
/// other writes.
pub const MAX_IN_FLIGHT: usize = 1;

/// Where the writers of a batch wait for its answers.
#[derive(Default)]
struct Done {
    answers: Mutex<Option<Answers>>,
    cv: Condvar,
}

/// How a writer that does not wait is told its answer (and the id of the
/// last event of its batch), on another thread.
pub type Later = Box<dyn FnOnce(Answer) + Send>;

/// A writer that does not wait. Dropped unanswered, it is answered
/// [`DictError::Destroyed`] (its batch never went: the dict is gone), or
/// an error when dropped by a panic's unwinding (its batch may have gone).
struct Waiter(Option<Later>);

impl Waiter {
    fn answer(mut self, out: Answer) {
        if let Some(f) = self.0.take() {
            f(out);
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(if std::thread::panicking() {
                panicked()
            } else {
                DictError::Destroyed
            }));
        }
    }
}

/// The answer of a write whose sender panicked.
fn panicked() -> DictError {
    DictError::Backend("internal error: a Redis write panicked".into())
}

/// A batch being sent: should its sender panic before it is done, its
/// turn is given back and the writers that wait on its `done` are
/// answered an error (those that do not wait are, as their [`Waiter`]s are
/// dropped).
struct Sending<'a> {
    batcher: &'a Batcher,
    done: Arc<Done>,
    /// Still counted in flight.
    turn: bool,
}

impl Sending<'_> {
    /// Gives the batch's turn back (once).
    fn came_back(&mut self) {
        if std::mem::take(&mut self.turn) {
            self.batcher.came_back();
        }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.came_back();
        let mut answers = self.done.answers.lock();
        if answers.is_none() {
            *answers = Some(Err(panicked()));
            self.done.cv.notify_all();
        }
    }
}

/// A batch waiting for its turn.
struct Forming {
    id: u64,
    ops: Vec<Op>,
    /// The writers that do not wait, by their place in `ops`.
    later: Vec<(usize, Waiter)>,
    bytes: usize,
    done: Arc<Done>,
    /// Started by a writer that does not wait: the batcher's thread sends
    /// it (else the writer that started it does).
    by_thread: bool,
}

impl Forming {
    fn fits(&self, bytes: usize) -> bool {
        self.ops.len() < MAX_OPS && self.bytes + bytes <= MAX_BYTES
    }
}

#[derive(Default)]
struct Queue {
    in_flight: usize,
    /// Oldest first; each sent by the writer that started it, or by the
    /// batcher's thread.
    forming: VecDeque<Forming>,
    next_id: u64,
    /// The batcher's thread runs (started by the first writer that does
    /// not wait).
    thread: bool,
    /// Tells the thread to end once it sent what it was given (the dict is
    /// closed).
    stop: bool,
}

/// The batching of one dict's writes.
pub struct Batcher {
    queue: Mutex<Queue>,
    /// Signalled when a batch in flight came back.
    turn: Condvar,
    /// Script calls sent, and the writes they carried.
    pub sent: AtomicU64,
    pub writes: AtomicU64,
    /// Makes the batcher's thread panic once, outside any `catch_unwind`,
    /// at the point it names ([`FAULT_SENT`], [`FAULT_TAKING`]), for tests.
    #[cfg(test)]
    pub fault: AtomicU8,
}

/// Where a test makes the batcher's thread panic ([`Batcher::fault`]):
/// nowhere.
#[cfg(test)]
pub const FAULT_NONE: u8 = 0;
/// As the thread is about to take a batch of its own (still queued).
#[cfg(test)]
pub const FAULT_TAKING: u8 = 1;
/// As the thread's batch came back from Redis, its writers not answered
/// yet.
#[cfg(test)]
pub const FAULT_SENT: u8 = 2;

impl Batcher {
    pub fn new() -> Batcher {
        Batcher {
            queue: Mutex::new(Queue::default()),
            turn: Condvar::new(),
            sent: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            #[cfg(test)]
            fault: AtomicU8::new(FAULT_NONE),
        }
    }

    /// Panics when a test armed [`fault`](Self::fault) `at` here (once).
    #[cfg(test)]
    fn fault_point(&self, at: u8) {
        let armed = self
            .fault
            .compare_exchange(at, FAULT_NONE, Ordering::SeqCst, Ordering::SeqCst);
        if armed.is_ok() {
            panic!("injected fault {at}: the Redis write thread");
        }
    }

    /// Whether the batcher's thread runs, for tests.
    #[cfg(test)]
    pub fn runs(&self) -> bool {
        self.lock().thread
    }

    /// Batches counted in flight, for tests.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock()
    }

    /// Waits for [`turn`](Self::turn) (unlocking the queue meanwhile).
    fn wait(&self, q: &mut MutexGuard<'_, Queue>) {
        self.turn.wait(q);
    }

    /// Holds every batch back (as if all in flight), for tests.
    #[cfg(test)]
    pub fn hold(&self) {
        self.lock().in_flight += MAX_IN_FLIGHT;
    }

    /// Undoes [`hold`](Self::hold).
    #[cfg(test)]
    pub fn release(&self) {
        self.lock().in_flight -= MAX_IN_FLIGHT;
        self.turn.notify_all();
    }

    /// Writes waiting in forming batches, for tests.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.lock().forming.iter().map(|b| b.ops.len()).sum()
    }

    fn send(&self, shared: &Shared, ops: Vec<Op>, call: Call<'_>) -> Answers {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(ops.len() as u64, Ordering::Relaxed);
        call::send(shared, ops, call)
    }

    /// Applies `op` (alone or in a batch with concurrent writers' ones) and
    /// returns its answer and the id of the last event of its batch.
    pub fn write(&self, shared: &Shared, op: Op) -> Answer {
        if op.bytes() > big::BIG {
            // Its own deadline, scaled to its size: not batched.
            let t = big::big_timeout(op.bytes());
            return one(self.send(shared, vec![op], &|c, f| big::with_deadline(c, t, f)));
        }
        let mut q = self.lock();
        if q.in_flight < MAX_IN_FLIGHT && q.forming.is_empty() {
            q.in_flight += 1;
            drop(q);
            let out = self.send(shared, vec![op], &|c, f| f(c));
            self.came_back();
            return one(out);
        }
        let bytes = op.bytes();
        if let Some(b) = q.forming.back_mut().filter(|b| b.fits(bytes)) {
            // Join: the batch's starter sends it.
            let at = b.ops.len();
            b.ops.push(op);
            b.bytes += bytes;
            let done = b.done.clone();
            drop(q);
            return take(&done, at);
        }
        // Start a batch; send it when it is first in line and a batch in
        // flight came back.
        let id = self.start(&mut q, op, None, false);
        loop {
            let first = q.forming.front().map(|b| b.id);
            if q.in_flight < MAX_IN_FLIGHT && first == Some(id) {
                q.in_flight += 1;
                if let Some(b) = q.forming.pop_front() {
                    drop(q);
                    let done = b.done.clone();
                    self.run(shared, b);
                    return take(&done, 0);
                }
            }
            self.wait(&mut q);
        }
    }

    /// Whether [`write_later`](Self::write_later) would queue a write now:
    /// a batch is on its way (all that may be) or one is forming behind it,
    /// and the dict is open (a hint: it may change at once).
    pub fn busy(&self) -> bool {
        let q = self.lock();
        !q.stop && (q.in_flight >= MAX_IN_FLIGHT || !q.forming.is_empty())
    }

    /// Queues `op` behind the batch on its way to Redis, for the batcher's
    /// thread to send with the others queued, and returns at once: `later`
    /// gets the answer, on another thread. Never does I/O (a caller on a
    /// BEAM scheduler may use it). `Err(later)`: not queued (nothing on its
    /// way, so nothing to batch with; a big value; the dict is closed; no
    /// thread could be started): write it with [`write`](Self::write).
    pub fn write_later(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        op: Op,
        later: Later,
    ) -> Result<(), Later> {
        let bytes = op.bytes();
        if bytes > big::BIG {
            return Err(later);
        }
        let mut q = self.lock();
        if q.stop || (q.in_flight < MAX_IN_FLIGHT && q.forming.is_empty()) {
            // Nothing to wait behind: the caller sends it at once itself
            // (through `write`).
            return Err(later);
        }
        if !q.thread {
            let (batcher, shared) = (self.clone(), shared.clone());
            let started = std::thread::Builder::new()
                .name("py-dict-redis-w".into())
                .spawn(move || batcher.thread(&shared));
            if started.is_err() {
                return Err(later);
            }
            q.thread = true;
        }
        if let Some(b) = q.forming.back_mut().filter(|b| b.fits(bytes)) {
            let at = b.ops.len();
            b.ops.push(op);
            b.bytes += bytes;
            b.later.push((at, Waiter(Some(later))));
            return Ok(());
        }
        self.start(&mut q, op, Some(later), true);
        drop(q);
        self.turn.notify_all();
        Ok(())
    }

    /// Puts a new batch holding `op` in line; its id.
    fn start(&self, q: &mut Queue, op: Op, later: Option<Later>, by_thread: bool) -> u64 {
        q.next_id += 1;
        let id = q.next_id;
        let bytes = op.bytes();
        q.forming.push_back(Forming {
            id,
            ops: vec![op],
            later: later.map(|f| (0, Waiter(Some(f)))).into_iter().collect(),
            bytes,
            done: Arc::new(Done::default()),
            by_thread,
        });
        id
    }

    /// The batcher's thread: sends the batches started by writers that do
    /// not wait, in their turn, until the dict is closed. A panic outside
    /// [`run`](Self::run)'s own guard ends it ([`died`](Self::died)).
    fn thread(&self, shared: &Shared) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve(shared)));
        if served.is_err() {
            self.died();
        }
    }

    /// The batcher's thread died of a panic: the next write that does not
    /// wait starts another, and every batch it was given and had not sent
    /// is taken out of line, each of its writers answered an error.
    fn died(&self) {
        let mut q = self.lock();
        q.thread = false;
        let (left, kept) = std::mem::take(&mut q.forming)
            .into_iter()
            .partition(|b| b.by_thread);
        q.forming = kept;
        drop(q);
        // The writers waiting for their batch's turn look again.
        self.turn.notify_all();
        for b in left {
            *b.done.answers.lock() = Some(Err(panicked()));
            b.done.cv.notify_all();
            for (_, waiter) in b.later {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    waiter.answer(Err(panicked()))
                }));
            }
        }
    }

    /// The loop of [`thread`](Self::thread).
    fn serve(&self, shared: &Shared) {
        let mut q = self.lock();
        loop {
            if q.stop && !q.forming.iter().any(|b| b.by_thread) {
                // Closed, and every write it was given sent.
                return;
            }
            let ours = q.forming.front().is_some_and(|b| b.by_thread);
            if ours && q.in_flight < MAX_IN_FLIGHT {
                #[cfg(test)]
                self.fault_point(FAULT_TAKING);
                q.in_flight += 1;
                if let Some(b) = q.forming.pop_front() {
                    drop(q);
                    self.run(shared, b);
                    q = self.lock();
                    continue;
                }
            }
            self.wait(&mut q);
        }
    }

    /// Ends the batcher's thread once it sent what it was given.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.turn.notify_all();
    }

    /// Sends batch `b` (already counted in flight), then answers its
    /// writers: those that do not wait through their callbacks, the
    /// others through its `done`.
    fn run(&self, shared: &Shared, b: Forming) {
        let mut sending = Sending {
            batcher: self,
            done: b.done.clone(),
            turn: true,
        };
        let heard = b.ops.iter().any(|op| !op.quiet());
        let out = self.send(shared, b.ops, &|c, f| f(c));
        #[cfg(test)]
        if b.by_thread {
            self.fault_point(FAULT_SENT);
        }
        if heard {
            // The next batch goes while this one waits for its events
            // (up to RAISE_WAIT while the follower reconnects).
            sending.came_back();
        }
        // Once for the batch: its writers then find their events raised
        // (when one of them was heard of; else nobody waits).
        if let Ok((_, last)) = &out {
            shared.written(last, heard);
        }
        let mut out = out;
        let later: Vec<_> = b
            .later
            .into_iter()
            .map(|(at, waiter)| (waiter, answer(&mut out, at)))
            .collect();
        *b.done.answers.lock() = Some(out);
        b.done.cv.notify_all();
        for (waiter, out) in later {
            // One that panics must not keep the others from theirs.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waiter.answer(out)));
        }
        // Nothing heard of it: counted in flight until its writers are
        // answered, so those that write again at once (64 BEAM processes
        // putting in a loop) queue behind it and go together as the next
        // batch, instead of the first of them sending its write alone.
        sending.came_back();
    }

    /// A batch in flight came back: wakes whoever waits for its turn. Only
    /// a batch in line waits for one (its starter, or the batcher's
    /// thread, which also waits while idle): with none, nobody is woken,
    /// so a lone writer's send costs no wake-up of the idle thread (a
    /// futex call and a thread switch per put on a 2-core host).
    fn came_back(&self) {
        let mut q = self.lock();
        q.in_flight -= 1;
        let waiting = !q.forming.is_empty();
        drop(q);
        if waiting {
            self.turn.notify_all();
        }
    }
}

/// Waits for the answers of `done`'s batch and takes the one at `at`.
fn take(done: &Done, at: usize) -> Answer {
    let mut answers = done.answers.lock();
    while answers.is_none() {
        done.cv.wait(&mut answers);
    }
    match answers.as_mut() {
        Some(out) => answer(out, at),
        None => Err(DictError::Backend("internal error: no answer".into())),
    }
}
