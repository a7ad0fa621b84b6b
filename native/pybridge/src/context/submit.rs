//! Queueing a call: the refusals ([`SubmitError`]), a place under the
//! queue's bound ([`super::queue_bound`]), and, while a worker of the context
//! waits on the BEAM for a callback's answer, a thread free to take the call
//! at once. [`ContextState::wait_on_beam`] and [`Context::submit_or_wait`]
//! fence around each other so that a call queued just as a worker starts
//! waiting is never missed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::queue_bound::Refusal;
use super::{
    job_namespace, worker, CallState, Context, ContextState, ErrorKind, Job, Reply, Request, Task,
    Waker,
};

/// Why a context refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    Closed,
    NotInitialized,
    /// The namespace passed belongs to another context.
    ForeignNamespace,
    /// The OS would not start an executor thread.
    Spawn(String),
    /// No sub-interpreter could be made (e.g. Python older than 3.12).
    Interpreter(String),
    /// `max_queue` calls are waiting already.
    Overloaded(usize),
    /// `max_queue` calls are waiting already; the caller was registered to
    /// be woken, under this id, when there is room (`Overload::Wait`).
    Waiting(u64),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubmitError::Closed => "the context is closed",
            SubmitError::NotInitialized => "the Python runtime is not started",
            SubmitError::ForeignNamespace => "the namespace belongs to another context",
            SubmitError::Spawn(err) => return write!(f, "cannot start an executor thread: {err}"),
            SubmitError::Interpreter(err) => err,
            SubmitError::Overloaded(max) => {
                return write!(f, "the context has {max} calls waiting already (max_queue)")
            }
            SubmitError::Waiting(_) => "the context's queue is full; waiting for room",
        })
    }
}

impl SubmitError {
    /// The kind of `%Py.Error{}` the caller gets.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SubmitError::Closed => ErrorKind::Closed,
            SubmitError::NotInitialized => ErrorKind::NotStarted,
            SubmitError::ForeignNamespace => ErrorKind::BadArg,
            SubmitError::Spawn(_) | SubmitError::Interpreter(_) => ErrorKind::Internal,
            SubmitError::Overloaded(_) | SubmitError::Waiting(_) => ErrorKind::Overloaded,
        }
    }
}

impl Context {
    /// Queues a call. The outcome goes to `reply`, unless `state` is
    /// cancelled first. Beyond `max_queue` waiting calls it is refused
    /// (`Overloaded`), whatever the context's `overload` mode.
    pub fn submit(
        &self,
        job: Job,
        reply: Box<dyn Reply>,
        state: Arc<CallState>,
    ) -> Result<(), SubmitError> {
        self.submit_or_wait(job, reply, state, None, None)
    }

    /// [`submit`](Self::submit), except that in `Overload::Wait` mode a
    /// call beyond `max_queue` registers its caller to be woken through
    /// the waker `waker(id)` makes when there is room, and is refused with
    /// `Waiting(id)`: the caller then submits again with `claim: Some(id)`,
    /// taking the place kept for it, or gives up with
    /// [`cancel_wait`](Self::cancel_wait). A claim this refuses for another
    /// reason (closed, foreign namespace) is given up here.
    pub fn submit_or_wait(
        &self,
        job: Job,
        reply: Box<dyn Reply>,
        state: Arc<CallState>,
        claim: Option<u64>,
        waker: Option<&mut dyn FnMut(u64) -> Box<dyn Waker>>,
    ) -> Result<(), SubmitError> {
        let _open = self.state().gate.read();
        let bound = &self.state().bound;
        let refused = if self.state().closed.load(Ordering::SeqCst) {
            Some(SubmitError::Closed)
        } else {
            job_namespace(&job)
                .filter(|namespace| !namespace.belongs_to(self.state()))
                .map(|_| SubmitError::ForeignNamespace)
        };
        if let Some(err) = refused {
            if let Some(id) = claim {
                bound.cancel_wait(id);
            }
            return Err(err);
        }
        match bound.acquire(claim, waker) {
            Ok(()) => {}
            Err(Refusal::Overloaded) => return Err(SubmitError::Overloaded(bound.max())),
            Err(Refusal::Waiting(id)) => return Err(SubmitError::Waiting(id)),
        }
        self.state().stats.submitted();
        self.state().caller_cpu.record();
        let request = Request {
            job,
            reply,
            state,
            queued: Instant::now(),
        };
        self.state().tx.send(Task::Call(request)).map_err(|_| {
            bound.release();
            SubmitError::Closed
        })?;
        // A worker of this context waits on the BEAM: this may be the
        // callback calling back in, which must not wait for that worker.
        // The fence pairs with `wait_on_beam`'s (a worker starting to wait
        // just now sees this call queued).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.state().beam_waits.load(Ordering::Relaxed) > 0 {
            self.state().serve_now();
        }
        Ok(())
    }

    /// The caller waiting under `id` (see
    /// [`submit_or_wait`](Self::submit_or_wait)) gave up: it no longer
    /// waits, and a place kept for it goes to the next waiter.
    pub fn cancel_wait(&self, id: u64) {
        self.state().bound.cancel_wait(id);
    }
}

/// A worker's wait on the BEAM for a callback's answer (see
/// [`ContextState::wait_on_beam`]); ends when dropped.
pub(crate) struct BeamWait<'a>(&'a Arc<ContextState>);

impl Drop for BeamWait<'_> {
    fn drop(&mut self) {
        self.0.beam_waits.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ContextState {
    /// Counts the calling worker as waiting on the BEAM until the guard is
    /// dropped. Meanwhile calls queued on this context (the callback
    /// calling back into it, or anyone else's) get another thread at once
    /// instead of waiting for the monitor to find the worker stuck.
    pub(crate) fn wait_on_beam(self: &Arc<Self>) -> BeamWait<'_> {
        self.beam_waits.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `Context::submit`: either this sees the
        // call just queued, or its submitter sees this wait.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.rx.is_empty() {
            self.serve_now();
        }
        BeamWait(self)
    }

    /// Makes sure a thread is free to take the call just queued while a
    /// worker waits on the BEAM: the home worker if it is not running a
    /// call, else an overflow worker already polling, else a parked one
    /// woken, else a new one. Workers waiting on the BEAM do not count
    /// against `max_workers`: they hold no GIL and run no Python.
    fn serve_now(self: &Arc<Self>) {
        if !self.home_running.load(Ordering::Relaxed)
            || self.polling.load(Ordering::SeqCst) > 0
            || self.closed.load(Ordering::SeqCst)
        {
            return;
        }
        if self.parked.load(Ordering::SeqCst) > 0 {
            let _ = self.wake_tx.send(());
            return;
        }
        let limit = self.config.max_workers + self.beam_waits.load(Ordering::Relaxed);
        if self.workers.load(Ordering::Acquire) < limit {
            let _ = worker::spawn(self, false);
        }
    }
}
