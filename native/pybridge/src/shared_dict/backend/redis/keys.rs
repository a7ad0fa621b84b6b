//! The names of one dict's Redis keys (the layout in the module doc of
//! [`super`]: all under the hash tag `{prefix:name}`, so one slot) and the
//! record a value key holds (a 20-digit version, then the value's
//! encoding).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::ScriptInvocation;

use super::{EVENT_STREAM_CAP, EVENT_VALUE_INLINE};
use crate::shared_dict::backend::Item;
use crate::shared_dict::codec;
use crate::shared_dict::DictError;

/// How many KEYS every script takes before its own (see [`super::scripts`]).
const COMMON_KEYS: usize = 6;

/// Bytes of the version header in front of each stored value.
const VERSION_BYTES: usize = 20;

/// The names of one dict's Redis keys.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `{prefix:name}`: the hash tag every key of the dict shares.
    #[allow(dead_code)]
    pub base: String,
    pub(super) idx: String,
    exp: String,
    pub(super) seq: String,
    pub ev: String,
    lx: String,
    /// The dict's counters (a hash, see [`super::counts`]).
    pub(super) st: String,
    vprefix: String,
    lprefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, name: &str) -> Keys {
        let base = if prefix.is_empty() {
            format!("{{{name}}}")
        } else {
            format!("{{{prefix}:{name}}}")
        };
        Keys {
            idx: format!("{base}:idx"),
            exp: format!("{base}:exp"),
            seq: format!("{base}:seq"),
            ev: format!("{base}:ev"),
            lx: format!("{base}:lx"),
            st: format!("{base}:st"),
            vprefix: format!("{base}:v:"),
            lprefix: format!("{base}:l:"),
            base,
        }
    }

    pub(super) fn value(&self, key: &str) -> String {
        format!("{}{key}", self.vprefix)
    }

    /// A fresh key (of this dict's slot) where a removal parks a big
    /// record for its remover to read (see [`super::big`]).
    pub(super) fn park(&self, node: u64) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("{}:park:{node:016x}:{n}", self.base)
    }

    pub(super) fn lock(&self, key: &str) -> String {
        format!("{}{key}", self.lprefix)
    }

    /// `script` with the KEYS and first ARGV every script takes, then
    /// `more` keys (the value or lock keys it touches).
    pub(super) fn invoke<'a, K: redis::ToRedisArgs>(
        &self,
        script: &'a redis::Script,
        more: impl IntoIterator<Item = K>,
    ) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.idx)
            .key(&self.exp)
            .key(&self.seq)
            .key(&self.ev)
            .key(&self.lx)
            .key(&self.st);
        for k in more {
            inv.key(k);
        }
        inv.arg(&self.vprefix)
            .arg(EVENT_STREAM_CAP)
            .arg(EVENT_VALUE_INLINE);
        inv
    }

    /// What [`invoke`](Self::invoke) makes, as one `EVALSHA` command built
    /// in one buffer (no buffer per argument): the KEYS every script takes;
    /// the caller then adds its `more` keys, [`common_args`](Self::common_args)
    /// and its own arguments, and runs it with [`run_script`].
    pub(super) fn eval(&self, script: &redis::Script, more: usize) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(COMMON_KEYS + more)
            .arg(&self.idx)
            .arg(&self.exp)
            .arg(&self.seq)
            .arg(&self.ev)
            .arg(&self.lx)
            .arg(&self.st);
        cmd
    }

    /// The first ARGV every script takes (after all the keys of [`eval`](Self::eval)).
    pub(super) fn common_args(&self, cmd: &mut redis::Cmd) {
        cmd.arg(&self.vprefix)
            .arg(EVENT_STREAM_CAP)
            .arg(EVENT_VALUE_INLINE);
    }

    /// The value key of `key`, as an argument written in place.
    pub(super) fn value_arg<'a>(&'a self, key: &'a str) -> ValueKey<'a> {
        ValueKey(&self.vprefix, key)
    }
}

/// A value key (prefix and key) written into a command without a string of
/// its own.
pub(super) struct ValueKey<'a>(&'a str, &'a str);

impl std::fmt::Display for ValueKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

impl redis::ToRedisArgs for ValueKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg_fmt(self);
    }
}

/// Runs `cmd` (from [`Keys::eval`] for `script`) on `c`, loading the script
/// first when the server does not have it (a restart, `SCRIPT FLUSH`), as
/// `ScriptInvocation::invoke` does.
pub(super) fn run_script(
    c: &mut redis::Connection,
    script: &redis::Script,
    cmd: &redis::Cmd,
) -> redis::RedisResult<redis::Value> {
    match cmd.query(c) {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load(c)?;
            cmd.query(c)
        }
        other => other,
    }
}

/// Splits a stored record into its version and value.
pub(crate) fn parse_record(rec: &[u8]) -> Result<(Item, u64), DictError> {
    let bad = |why: &str| DictError::Backend(format!("a stored value is unreadable: {why}"));
    if rec.len() < VERSION_BYTES {
        return Err(bad("too short"));
    }
    let version = std::str::from_utf8(&rec[..VERSION_BYTES])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad("no version"))?;
    let stored =
        codec::decode(&rec[VERSION_BYTES..]).map_err(|e| DictError::Backend(e.to_string()))?;
    Ok((Arc::new(stored), version))
}
