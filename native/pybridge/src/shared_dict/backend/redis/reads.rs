//! Shared round trips for reads: the gets of concurrent callers on one
//! dict go to Redis together, as one call of the read script
//! ([`big::read_batch`]) on one connection.
//!
//! The shape of the write batcher ([`super::batch`]), simpler since reads
//! need no order and no events:
//!
//! * A reader that finds no read on its way to Redis (fewer than
//!   [`MAX_IN_FLIGHT`]) and none queued sends its own at once, alone
//!   ([`Reader::read`]): a lone caller never waits for a batch to fill.
//! * One that finds a read on its way queues behind it; the reader's
//!   thread (`py-dict-redis-r`, started on first use, ended by `close`)
//!   sends everything queued (at most [`MAX_KEYS`] keys a call) as soon as
//!   a read in flight came back, and answers each caller. A blocking
//!   caller ([`Reader::read`], a get from Python or a dirty scheduler)
//!   waits for its answer; one that must not block
//!   ([`Reader::read_later`], a get from the BEAM: its NIF runs on a
//!   normal scheduler) is answered through its callback, so 64 BEAM
//!   processes reading are not limited to one read each per dirty IO
//!   scheduler, and wait in `receive`, not on a scheduler.
//! * Each key is read as a lone get reads it: the script runs atomically,
//!   and Redis never returns a key whose expiry (`PXAT`, its own clock)
//!   passed, so a read in a batch never sees an expired value either. A
//!   batch whose call failed fails for every reader in it with the error a
//!   lone read would get.
//! * The reply of one call holds at most [`big::BIG`] bytes of records:
//!   one that does not fit is answered [`Read::Big`], and its reader reads
//!   it alone, under a deadline scaled to its size. A lone read gives its
//!   turn back as soon as its shared read came back: a big record it found
//!   is then read with its own `GET` outside the turn
//!   ([`big::read_big`]), so the gets behind it do not wait for it.
//! * No reader waits forever: a panic in a call or a callback becomes an
//!   error for its batch, and one anywhere else in the reader's thread
//!   ends the thread, its turn given back and every reader it held or had
//!   queued answered an error ([`Reader::died`]); the next queued read
//!   starts another.
//! * A dict lives on one hash slot, so a batch is one slot: Redis Cluster
//!   routes and redirects it as one command.

use std::collections::VecDeque;
#[cfg(test)]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::{big, parse_record, Shared};
use crate::shared_dict::{DictError, Found, GetDone};

/// Most keys read by one call.
pub const MAX_KEYS: usize = 256;

/// Reads on their way to Redis at once before further readers queue. One
/// (as for writes): the readers that come meanwhile form the next batch.
pub const MAX_IN_FLIGHT: usize = 1;

/// What a queued read found.
#[derive(Debug)]
pub enum Read {
    /// The key's record (`None`: missing or expired).
    Record(Option<Vec<u8>>),
    /// A record too big to share the call's reply: read it alone.
    Big,
}

/// How a reader that does not wait is told what it found, on another
/// thread. `None`: not read (the dict was closed first).
pub type ReadDone = Box<dyn FnOnce(Option<Result<Read, DictError>>) + Send>;

/// A queued reader's callback. Dropped unanswered, it is answered `None`
/// (the dict was closed before its read went), or an error when dropped by
/// a panic's unwinding (the reader's thread died).
struct Waiter(Option<ReadDone>);

impl Waiter {
    fn answer(mut self, out: Result<Read, DictError>) {
        if let Some(f) = self.0.take() {
            f(Some(out));
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(std::thread::panicking().then(|| Err(died())));
        }
    }
}

/// The answer of a reader whose read the reader's thread dropped when it
/// panicked.
fn died() -> DictError {
    DictError::Backend("internal error: the Redis read thread panicked".into())
}

/// A read's turn in flight, given back when dropped (a panic's unwinding
/// included): see [`Reader::came_back`].
struct Turn<'a>(&'a Reader);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.came_back();
    }
}

#[derive(Default)]
struct Queue {
    in_flight: usize,
    /// Value keys waiting for the next call, oldest first.
    waiting: VecDeque<(String, Waiter)>,
    /// The reader's thread runs.
    thread: bool,
    /// Tells the thread to end (the dict is closed).
    stop: bool,
}

/// The shared reads of one dict.
#[derive(Default)]
pub struct Reader {
    queue: Mutex<Queue>,
    /// Signalled when a read in flight came back, or a read was queued.
    turn: Condvar,
    /// Calls sent, and the keys they read (lone reads included).
    pub sent: AtomicU64,
    pub reads: AtomicU64,
    /// Run as a lone read starts the `GET` of a big record, for tests.
    #[cfg(test)]
    pub big_hook: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// Makes the reader's thread panic once, outside any `catch_unwind`,
    /// as it took a batch, for tests.
    #[cfg(test)]
    pub fault: AtomicBool,
}

/// A blocking reader's answer slot.
#[derive(Default)]
struct Slot {
    out: Mutex<Option<Option<Result<Read, DictError>>>>,
    cv: Condvar,
}

impl Reader {
    /// Whether a read now would queue behind one on its way (a hint: it
    /// may change at once).
    pub fn busy(&self) -> bool {
        let q = self.queue.lock();
        !q.stop && (q.in_flight >= MAX_IN_FLIGHT || !q.waiting.is_empty())
    }

    /// Holds every read back (as if one were in flight), for tests.
    #[cfg(test)]
    pub fn hold(&self) {
        self.queue.lock().in_flight += MAX_IN_FLIGHT;
    }

    /// Undoes [`hold`](Self::hold).
    #[cfg(test)]
    pub fn release(&self) {
        self.queue.lock().in_flight -= MAX_IN_FLIGHT;
        self.turn.notify_all();
    }

    /// Whether the reader's thread runs, for tests.
    #[cfg(test)]
    pub fn runs(&self) -> bool {
        self.queue.lock().thread
    }

    /// Reads queued and not yet sent, for tests.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.lock().waiting.len()
    }

    /// The record at `vkey` (`None`: missing), read alone or with the
    /// reads of concurrent callers.
    pub fn read(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        vkey: String,
    ) -> Result<Option<Vec<u8>>, DictError> {
        let lone = |vkey: &str| {
            let mut got = big::read_records(&shared.pool, &[vkey.to_owned()])?;
            Ok(got.pop().flatten())
        };
        {
            let mut q = self.queue.lock();
            if q.stop || (q.in_flight < MAX_IN_FLIGHT && q.waiting.is_empty()) {
                q.in_flight += 1;
                drop(q);
                return self.read_alone(shared, &vkey);
            }
        }
        let slot = Arc::new(Slot::default());
        let answer = slot.clone();
        let done: ReadDone = Box::new(move |out| {
            *answer.out.lock() = Some(out);
            answer.cv.notify_all();
        });
        if !self.read_later(shared, vkey.clone(), done) {
            // Not queued (closed meanwhile): alone.
            return lone(&vkey);
        }
        let mut out = slot.out.lock();
        loop {
            if let Some(got) = out.take() {
                drop(out);
                return match got {
                    Some(Ok(Read::Record(rec))) => Ok(rec),
                    Some(Err(e)) => Err(e),
                    Some(Ok(Read::Big)) | None => lone(&vkey),
                };
            }
            slot.cv.wait(&mut out);
        }
    }

    /// A lone read (its turn already taken). The turn is given back as
    /// soon as the shared read came back: a record too big for its reply
    /// is then read with its own `GET`, while the gets queued meanwhile go.
    fn read_alone(&self, shared: &Shared, vkey: &str) -> Result<Option<Vec<u8>>, DictError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        let turn = Turn(self);
        let got = big::read_batch(&shared.pool, &[vkey.to_owned()]);
        drop(turn);
        match got?.pop() {
            Some(big::Fit::Record(rec)) => Ok(rec),
            Some(big::Fit::Big(len)) => {
                #[cfg(test)]
                self.big_started();
                big::read_big(&shared.pool, vkey, len)
            }
            None => Ok(None),
        }
    }

    /// Runs [`big_hook`](Self::big_hook).
    #[cfg(test)]
    fn big_started(&self) {
        let hook = self.big_hook.lock().clone();
        if let Some(hook) = hook {
            hook();
        }
    }

    /// Queues the read of `vkey` behind the one on its way to Redis, for
    /// the reader's thread to send with the others queued, and returns at
    /// once: `done` gets what it found, on another thread. Never does I/O
    /// (a caller on a BEAM scheduler may use it). `false`: not queued
    /// (nothing on its way to queue behind, a closed dict, no thread could
    /// be started), `done` dropped uncalled: read it with
    /// [`read`](Self::read).
    pub fn read_later(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        vkey: String,
        done: ReadDone,
    ) -> bool {
        let mut q = self.queue.lock();
        if q.stop || (q.in_flight < MAX_IN_FLIGHT && q.waiting.is_empty()) {
            return false;
        }
        if !q.thread {
            let (reader, shared) = (self.clone(), shared.clone());
            let started = std::thread::Builder::new()
                .name("py-dict-redis-r".into())
                .spawn(move || reader.thread(&shared));
            if started.is_err() {
                return false;
            }
            q.thread = true;
        }
        let first = q.waiting.is_empty();
        q.waiting.push_back((vkey, Waiter(Some(done))));
        drop(q);
        if first {
            // The thread waits for a read to send (it may wait for a turn
            // too: a read in flight coming back wakes it then).
            self.turn.notify_all();
        }
        true
    }

    /// The reader's thread: sends what is queued, in turn, until the dict
    /// is closed. A panic outside [`run`](Self::run)'s own guards ends it
    /// with every reader still waiting answered ([`died`](Self::died)).
    fn thread(&self, shared: &Shared) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve(shared)));
        if served.is_err() {
            self.died();
        }
    }

    /// The reader's thread died of a panic (the readers of the batch it
    /// held were answered as their waiters were dropped, its turn given
    /// back likewise): the next queued read starts another, and every
    /// reader queued now is answered an error.
    fn died(&self) {
        let mut q = self.queue.lock();
        q.thread = false;
        let left: Vec<_> = q.waiting.drain(..).collect();
        drop(q);
        for (_, waiter) in left {
            answer(waiter, Err(died()));
        }
    }

    /// The loop of [`thread`](Self::thread).
    fn serve(&self, shared: &Shared) {
        let mut q = self.queue.lock();
        loop {
            if q.stop {
                // Closed: the readers still queued read alone (their
                // waiters, dropped, answer "not read").
                let left: Vec<_> = q.waiting.drain(..).collect();
                q.thread = false;
                drop(q);
                drop(left);
                return;
            }
            if !q.waiting.is_empty() && q.in_flight < MAX_IN_FLIGHT {
                q.in_flight += 1;
                let n = q.waiting.len().min(MAX_KEYS);
                let batch: Vec<_> = q.waiting.drain(..n).collect();
                drop(q);
                let turn = Turn(self);
                #[cfg(test)]
                if self.fault.swap(false, Ordering::SeqCst) {
                    panic!("injected fault: the Redis read thread");
                }
                self.run(shared, batch);
                drop(turn);
                q = self.queue.lock();
                continue;
            }
            self.turn.wait(&mut q);
        }
    }

    /// Ends the reader's thread.
    pub fn stop(&self) {
        self.queue.lock().stop = true;
        self.turn.notify_all();
    }

    /// Sends one call for `batch` (already counted in flight) and answers
    /// its readers.
    fn run(&self, shared: &Shared, batch: Vec<(String, Waiter)>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.reads.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let (vkeys, waiters): (Vec<String>, Vec<Waiter>) = batch.into_iter().unzip();
        // A panic becomes the batch's error, so its readers are answered.
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            big::read_batch(&shared.pool, &vkeys)
        }))
        .unwrap_or_else(|_| {
            Err(DictError::Backend(
                "internal error: a Redis read panicked".into(),
            ))
        });
        match got {
            Ok(records) if records.len() == waiters.len() => {
                for (waiter, rec) in waiters.into_iter().zip(records) {
                    let read = match rec {
                        big::Fit::Record(rec) => Read::Record(rec),
                        big::Fit::Big(_) => Read::Big,
                    };
                    answer(waiter, Ok(read));
                }
            }
            Ok(_) => {
                let e = DictError::Backend("redis: unexpected reply to a read".into());
                for waiter in waiters {
                    answer(waiter, Err(e.clone()));
                }
            }
            Err(e) => {
                for waiter in waiters {
                    answer(waiter, Err(e.clone()));
                }
            }
        }
    }

    /// A read in flight (a lone one, or the thread's batch) came back:
    /// wakes the thread when reads are queued.
    fn came_back(&self) {
        let mut q = self.queue.lock();
        q.in_flight -= 1;
        let waiting = !q.waiting.is_empty();
        drop(q);
        if waiting {
            self.turn.notify_all();
        }
    }
}

/// Answers one reader; one whose callback panics does not keep the others
/// from theirs.
fn answer(waiter: Waiter, out: Result<Read, DictError>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waiter.answer(out)));
}

/// A record as a get returns it.
pub fn found(rec: Option<Vec<u8>>) -> Result<Option<(Found, u64)>, DictError> {
    match rec {
        Some(rec) => parse_record(&rec).map(|(item, version)| Some((item.into(), version))),
        None => Ok(None),
    }
}

/// [`Backend::get_later`](crate::shared_dict::Backend::get_later) for the
/// Redis backend: the read of `key` queued on `reader`; `false`: not
/// queued, `done` dropped uncalled.
pub fn get_later(reader: &Arc<Reader>, shared: &Arc<Shared>, key: &str, done: GetDone) -> bool {
    let read_done: ReadDone = Box::new(move |out| {
        done(match out {
            Some(Ok(Read::Record(rec))) => Some(found(rec)),
            Some(Err(e)) => Some(Err(e)),
            // Read alone through `get`.
            Some(Ok(Read::Big)) | None => None,
        })
    });
    reader.read_later(shared, shared.keys.value(key), read_done)
}
