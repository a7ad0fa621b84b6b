//! One batch's script call: its writes ([`Op`]) encoded as one `EVALSHA`
//! of [`scripts::WRITES`], and the reply parsed into each write's answer
//! and the id of the batch's last event.
//!
//! Apart from the batching ([`super`]: who queues, who sends, the turn,
//! the batcher's thread) because this is the other side of one contract:
//! the keys and arguments built here are the ones `WRITES` reads, in its
//! order, and nothing here knows about waiting.
//!
//! * The script applies the batch's writes in the order they joined, each
//!   with its own condition, and announces each with its own event on the
//!   stream, so each writer gets its own answer (`:ok`, `:exists`, a
//!   conflict, the removed value) and its own event, as if it had run
//!   alone.
//! * A dict lives on one hash slot, so a batch is one slot: Redis Cluster
//!   routes and redirects it as one command.
//! * A panic while the call is built or made becomes the batch's error,
//!   so its writers are still answered.

use redis::{Connection, Value};

use crate::shared_dict::backend::redis::keys::run_script;
use crate::shared_dict::backend::redis::{big, scripts, Shared};
use crate::shared_dict::DictError;

/// One write of a batch.
pub enum Op {
    Put {
        key: String,
        body: Vec<u8>,
        /// `keep`, `never` or ms from now.
        mode: String,
        /// `always`, `absent` or `ver`.
        cond: &'static str,
        /// The expected version header (empty: missing).
        expected: String,
        /// Nothing on this node heard of it: its events are marked
        /// ([`Shared::written`]).
        quiet: bool,
    },
    Remove {
        key: String,
        /// Where a record too big for the reply is parked.
        park: String,
        /// As for a put.
        quiet: bool,
    },
}

impl Op {
    /// The value bytes it adds to its batch.
    pub(super) fn bytes(&self) -> usize {
        match self {
            Op::Put { body, .. } => body.len(),
            Op::Remove { .. } => 0,
        }
    }

    pub(super) fn quiet(&self) -> bool {
        match self {
            Op::Put { quiet, .. } | Op::Remove { quiet, .. } => *quiet,
        }
    }
}

/// One write's answer, and the id of the last event of its batch.
pub type Answer = Result<(Value, String), DictError>;

/// What Redis answered for a batch: each write's answer, in order, and the
/// id of the batch's last event.
pub(super) type Answers = Result<(Vec<Value>, String), DictError>;

/// How a batch's script call is made on a connection (the big write's
/// longer deadline, or as it is).
pub(super) type Call<'a> = &'a dyn Fn(
    &mut Connection,
    &mut dyn FnMut(&mut Connection) -> redis::RedisResult<Value>,
) -> redis::RedisResult<Value>;

/// Takes the answer of the write at `at` out of its batch's answers.
pub(super) fn answer(out: &mut Answers, at: usize) -> Answer {
    match out {
        Ok((all, last)) => Ok((
            all.get_mut(at).map_or(Value::Nil, std::mem::take),
            last.clone(),
        )),
        Err(e) => Err(e.clone()),
    }
}

/// The answer of a batch of one.
pub(super) fn one(out: Answers) -> Answer {
    let (answers, last) = out?;
    let answer = answers.into_iter().next().unwrap_or(Value::Nil);
    Ok((answer, last))
}

/// Sends `ops` as one script call (through `call`, which may change the
/// connection's deadlines): each write's answer and the last event's id.
/// A panic becomes the batch's error, so its writers are still answered.
pub(super) fn send(shared: &Shared, ops: Vec<Op>, call: Call<'_>) -> Answers {
    let n = ops.len();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let keys = &shared.keys;
        let declared = ops
            .iter()
            .map(|op| match op {
                Op::Put { .. } => 1,
                Op::Remove { .. } => 2,
            })
            .sum();
        let mut inv = keys.eval(&scripts::WRITES, declared);
        for op in &ops {
            match op {
                Op::Put { key, .. } => inv.arg(keys.value_arg(key)),
                Op::Remove { key, park, .. } => inv.arg(keys.value_arg(key)).arg(park),
            };
        }
        keys.common_args(&mut inv);
        inv.arg(big::BIG).arg(&shared.tag);
        for op in &ops {
            match op {
                Op::Put {
                    key,
                    body,
                    mode,
                    cond,
                    expected,
                    quiet,
                } => inv
                    .arg(if *quiet { "P" } else { "p" })
                    .arg(key)
                    .arg(body)
                    .arg(mode)
                    .arg(*cond)
                    .arg(expected),
                Op::Remove { key, quiet, .. } => inv
                    .arg(if *quiet { "D" } else { "d" })
                    .arg(key)
                    .arg(big::PARK_TTL.as_millis() as u64),
            };
        }
        shared
            .pool
            .run(|c| call(c, &mut |c| run_script(c, &scripts::WRITES, &inv)))
    }));
    match ran {
        Ok(reply) => parse(reply?, n),
        Err(_) => Err(super::panicked()),
    }
}

/// The reply of `WRITES` for `n` writes: the last event's id, then each
/// write's answer.
fn parse(reply: Value, n: usize) -> Answers {
    let bad = || DictError::Backend("redis: unexpected reply to a write".into());
    let Value::Array(mut all) = reply else {
        return Err(bad());
    };
    if all.len() != n + 1 {
        return Err(bad());
    }
    let last = match all.remove(0) {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| bad())?,
        Value::SimpleString(s) => s,
        _ => String::new(),
    };
    Ok((all, last))
}
