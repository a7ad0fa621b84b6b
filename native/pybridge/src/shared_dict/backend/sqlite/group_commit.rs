//! Group commit: many writers share one transaction.
//!
//! A writer that arrives while another writes joins its open transaction
//! (the batch), in a savepoint of its own; the last writer in commits for
//! all, and every writer of the batch is answered only after that commit,
//! with its own result or the commit's error.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::{closed, Sqlite};
use crate::shared_dict::backend::{Events, RawEvent};
use crate::shared_dict::DictError;

/// The writing connection and its open batch.
pub(super) struct WriterState {
    pub(super) conn: Option<Connection>,
    /// The batch the open transaction holds, if one is open.
    pub(super) open: Option<u64>,
    pub(super) next_batch: u64,
}

/// What became of the batches: every one up to `finished` is over, and
/// those in `failed` did not commit.
#[derive(Default)]
pub(super) struct Batches {
    pub(super) finished: u64,
    pub(super) failed: BTreeMap<u64, DictError>,
    /// The newest failed batch dropped from `failed` (0: none). A waiter
    /// of a batch up to it cannot tell how its batch went, and is told so
    /// rather than `:ok`.
    pub(super) forgotten: u64,
}

impl Sqlite {
    /// Runs `f` as one write and returns once it is committed; events `f`
    /// reports are handed on only then. Group commit: writers that arrive
    /// while another is writing join its transaction (each in a savepoint of
    /// its own, so a write that fails leaves no trace), and the last of them
    /// commits for all; every writer of a batch is answered only after that
    /// commit, with its own result, or with the commit's error when the
    /// commit failed (then none of the batch's writes happened).
    pub(super) fn write<T>(
        &self,
        events: &mut Events,
        f: impl FnOnce(&Connection, &mut Vec<RawEvent>) -> Result<T, DictError>,
    ) -> Result<T, DictError> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.writer.lock();
        let mut mine = Vec::new();
        // A panic in `f` must not leave the batch's other writers waiting
        // for a commit nobody makes: it becomes this write's error.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_in_batch(&mut guard, |conn| f(conn, &mut mine))
        }));
        let (batch, own) = ran.unwrap_or_else(|_| {
            if let Some(conn) = guard.conn.as_ref() {
                // Undo whatever it wrote (fails harmlessly when the
                // savepoint was never made).
                let _ = conn.execute_batch("ROLLBACK TO pybridge_op; RELEASE pybridge_op");
            }
            self.forget_versions();
            let why = DictError::Backend("internal error: a write panicked".into());
            (guard.open, Err(why))
        });
        let last = self.pending.fetch_sub(1, Ordering::SeqCst) == 1;
        let outcome = match batch {
            None => Ok(()),
            Some(_) if last => self.commit(&mut guard),
            Some(b) => {
                drop(guard);
                self.wait_for(b)
            }
        };
        let out = match outcome {
            Ok(()) => own,
            Err(e) => Err(e),
        };
        if out.is_ok() {
            events.append(&mut mine);
        }
        out
    }

    /// Runs `op` in the open batch (opening one when none is), in a
    /// savepoint: `(the batch it joined, its result)`.
    fn run_in_batch<T>(
        &self,
        w: &mut WriterState,
        op: impl FnOnce(&Connection) -> Result<T, DictError>,
    ) -> (Option<u64>, Result<T, DictError>) {
        let Some(conn) = w.conn.as_ref() else {
            return (w.open, Err(closed()));
        };
        let batch = match w.open {
            Some(b) => b,
            None => {
                if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                    return (None, Err(self.e(e)));
                }
                w.next_batch += 1;
                w.open = Some(w.next_batch);
                w.next_batch
            }
        };
        if let Err(e) = conn.execute_batch("SAVEPOINT pybridge_op") {
            return (Some(batch), Err(self.e(e)));
        }
        let reservations = self.reservations();
        let own = op(conn);
        let end = if own.is_ok() {
            "RELEASE pybridge_op"
        } else {
            // A block it reserved is rolled back with it (a write refused
            // by its condition, the usual failure, reserved none).
            if self.reservations() != reservations {
                self.forget_versions();
            }
            "ROLLBACK TO pybridge_op; RELEASE pybridge_op"
        };
        match conn.execute_batch(end) {
            Ok(()) => (Some(batch), own),
            Err(e) => {
                self.forget_versions();
                (Some(batch), Err(self.e(e)))
            }
        }
    }

    /// Commits the open batch (rolling it back when the commit fails) and
    /// tells its waiting writers how it went.
    pub(super) fn commit(&self, w: &mut WriterState) -> Result<(), DictError> {
        let Some(batch) = w.open.take() else {
            return Ok(());
        };
        let outcome = match w.conn.as_ref() {
            Some(conn) => conn.execute_batch("COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                self.forget_versions();
                self.e(e)
            }),
            None => Err(closed()),
        };
        let mut done = self.batches.lock();
        done.finished = batch;
        if let Err(e) = &outcome {
            done.failed.insert(batch, e.clone());
            // Waiters read theirs at once; keep a bounded history.
            while done.failed.len() > 1024 {
                if let Some((dropped, _)) = done.failed.pop_first() {
                    done.forgotten = done.forgotten.max(dropped);
                }
            }
        }
        self.batch_done.notify_all();
        outcome
    }

    /// Waits until batch `b` was committed (or failed).
    pub(super) fn wait_for(&self, b: u64) -> Result<(), DictError> {
        let mut done = self.batches.lock();
        while done.finished < b {
            self.batch_done.wait(&mut done);
        }
        match done.failed.get(&b) {
            Some(e) => Err(e.clone()),
            None if b <= done.forgotten => Err(DictError::Backend(
                "the outcome of this write's commit was not kept (over 1,024 failed commits \
                 since); it may not have been applied"
                    .to_string(),
            )),
            None => Ok(()),
        }
    }
}
