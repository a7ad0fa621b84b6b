//! Big records: deadlines that scale with their size.
//!
//! Every connection has a read and a write timeout of [`COMMAND_TIMEOUT`]
//! (`SO_RCVTIMEO`/`SO_SNDTIMEO`): it bounds each *socket call*, not the
//! whole command. Once a reply flows, a 100 MB one can take as long as it
//! takes; what trips is a reply that has not *started* within it. Redis
//! only starts a reply once the command has run, and that time grows with
//! what the reply holds: a `GET` first copies the value into the client's
//! reply buffer, a script copies it into Lua and back (about 0.5 s and 2-3
//! s for 100 MB on a loaded 2-core machine). So:
//!
//! * a write of more than [`BIG`] bytes waits [`big_timeout`] for its
//!   answer (Redis answers once it stored, and with `appendfsync always`
//!   synced, the value);
//! * reads never let Redis build a reply of more than [`BIG`] bytes under
//!   the usual deadline: [`read_records`] asks for the records that fit,
//!   and only the sizes of the others, then reads each bigger one with a
//!   plain `GET` under [`big_timeout`] of its size;
//! * a removal of a big record ([`scripts::WRITES`](super::scripts::WRITES))
//!   renames it to a parked key in the same atomic step instead of
//!   returning it; [`take_parked`] then reads and deletes it (`GETDEL`)
//!   under the scaled deadline. A parked key expires on its own after
//!   [`PARK_TTL`] should its reader die first.

use std::time::Duration;

use redis::{Connection, RedisError, Value};

use super::pool::Pool;
use super::COMMAND_TIMEOUT;
use crate::shared_dict::DictError;

/// Records (and write bodies) above this many bytes get a deadline scaled
/// to their size; replies are built with at most this much under the
/// usual one.
pub const BIG: usize = 1 << 20;

/// How long a parked big removed record lives when its reader never comes.
pub const PARK_TTL: Duration = Duration::from_secs(600);

/// The deadline of a command that sends or gets `len` bytes: the usual one
/// plus a second per 4 MB.
pub fn big_timeout(len: usize) -> Duration {
    COMMAND_TIMEOUT + Duration::from_secs((len / (4 << 20)) as u64)
}

/// Runs `f` on `c` with read and write timeouts of `t`, then puts the
/// usual ones back.
pub fn with_deadline<T>(
    c: &mut Connection,
    t: Duration,
    f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
) -> Result<T, RedisError> {
    c.set_read_timeout(Some(t))?;
    c.set_write_timeout(Some(t))?;
    let out = f(c);
    c.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    c.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    out
}

/// KEYS: value keys; ARGV 1: the byte budget of the reply. Each key's
/// record while the budget lasts, else its size (an integer); `false`
/// when missing.
static READ: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
local budget = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local n = redis.call('STRLEN', KEYS[i])
  if n == 0 then
    out[i] = false
  elseif n <= budget then
    out[i] = redis.call('GET', KEYS[i])
    budget = budget - n
  else
    out[i] = n
  end
end
return out
"#,
    )
});

/// A record as one call of the read script answers it.
#[derive(Debug)]
pub enum Fit {
    /// The record (`None`: missing).
    Record(Option<Vec<u8>>),
    /// Its size: it did not fit the reply's budget.
    Big(usize),
}

/// One call of the read script for `vkeys`: the records that fit the
/// reply's budget of [`BIG`] bytes, the sizes of the others.
pub fn read_batch(pool: &Pool, vkeys: &[String]) -> Result<Vec<Fit>, DictError> {
    if vkeys.is_empty() {
        return Ok(Vec::new());
    }
    let mut inv = READ.prepare_invoke();
    for k in vkeys {
        inv.key(k);
    }
    inv.arg(BIG);
    let got: Vec<Value> = pool.run_idempotent(|c| inv.invoke(c))?;
    Ok(got
        .into_iter()
        .map(|v| match v {
            Value::BulkString(rec) => Fit::Record(Some(rec)),
            Value::Int(n) => Fit::Big(n.max(0) as usize),
            _ => Fit::Record(None),
        })
        .collect())
}

/// The records at `vkeys` (`None`: missing), the big ones each read on its
/// own under a deadline scaled to its size.
pub fn read_records(pool: &Pool, vkeys: &[String]) -> Result<Vec<Option<Vec<u8>>>, DictError> {
    let got = read_batch(pool, vkeys)?;
    let mut out = Vec::with_capacity(vkeys.len());
    for (vkey, fit) in vkeys.iter().zip(got) {
        out.push(match fit {
            Fit::Record(rec) => rec,
            Fit::Big(n) => read_big(pool, vkey, n)?,
        });
    }
    Ok(out)
}

/// The record at `vkey` that did not fit a reply ([`Fit::Big`] of `len`
/// bytes): read alone, with a plain `GET` under [`big_timeout`] of its
/// size (`None`: gone meanwhile).
pub fn read_big(pool: &Pool, vkey: &str, len: usize) -> Result<Option<Vec<u8>>, DictError> {
    let t = big_timeout(len);
    pool.run_idempotent(|c| with_deadline(c, t, |c| redis::cmd("GET").arg(vkey).query(c)))
}

/// Reads and deletes the parked record `park` of `len` bytes (see the
/// module doc).
pub fn take_parked(pool: &Pool, park: &str, len: usize) -> Result<Vec<u8>, DictError> {
    let t = big_timeout(len);
    let rec: Option<Vec<u8>> =
        pool.run_idempotent(|c| with_deadline(c, t, |c| redis::cmd("GETDEL").arg(park).query(c)))?;
    rec.ok_or_else(|| DictError::Backend("a removed big value was lost before it was read".into()))
}
