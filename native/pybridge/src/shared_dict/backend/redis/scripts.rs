//! The Lua scripts that make each Redis-backed operation one atomic step on
//! the server. Every script declares every key it touches in KEYS, all
//! under the dict's hash tag (so all on one slot: Redis Cluster routes the
//! script by them and refuses one that touches a key it did not declare
//! on another slot). Every script gets the same first KEYS and ARGV:
//!
//! * KEYS: 1 `idx` (set of key names), 2 `exp` (sorted set: key → expiry,
//!   Redis clock ms), 3 `seq` (version counter), 4 `ev` (the event stream),
//!   5 `lx` (sorted set: locked key → lease end), 6 `st` (hash: the
//!   dict's counters, see below); the value or lock keys the operation
//!   touches from 7 on;
//! * ARGV: 1 prefix of value keys, 2 the stream's cap, 3 the largest value
//!   an event carries itself ([`super::EVENT_VALUE_INLINE`]); the
//!   operation's own arguments from 4 on.
//!
//! Operations on keys not known in advance (`entries`, `clear`, the
//! reaper) take two steps: the names are read first, then the script gets
//! their keys declared and checks that the names are still the ones to
//! touch (`entries` and `clear` answer `retry` when the dict's key set
//! changed in between; the reaper leaves keys that came due meanwhile to
//! its next round).
//!
//! Time is Redis's (`TIME`), the same clock that runs `PXAT` expiries, so
//! every node agrees on when a key expires whatever its own clock says.
//!
//! Expire events are raised exactly once: the expiry of a key with a TTL is
//! also in `exp`; whoever removes it from there (a write that meets the
//! expired key, or any node's reaper) announces it, inside the script that
//! removed it, so exactly one script does.
//!
//! Counters: every script counts the events it announced into `st` as it
//! ends (one `HINCRBY` per kind): `p` puts, `d` deletes, `e` expiries, and
//! the latest expiries in ring slots `r0`… (`seq:ms:key`, the slot being
//! the expiry's number modulo their count). Every node's `stats` reads them
//! there (see [`super::counts`]), so no node has to read the stream to
//! count.
//!
//! Events: `e` kind (p/d/e/u), `k` key, and the value written (put) or
//! removed (delete, expire, when Redis had not yet dropped it) in `v` when
//! its encoding is at most ARGV 3 bytes long; a bigger put carries its
//! version in `n` instead, and a follower reads the value if it is still
//! that version. `q`: the tag of the dict that wrote it, when nothing on
//! its node heard of the write (see [`WRITES`]).

use std::sync::LazyLock;

use redis::Script;

use crate::limits::RECENT_EXPIRIES;

const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local LAST = ''
local INLINE = tonumber(ARGV[3])
-- What this script announced, counted into KEYS[6] as it ends (`count`).
local PUTS, DELS, EXPIRED = 0, 0, {}
-- The tag of the writer's dict when nothing there heard of this write.
local QUIET = false
local function event(kind, key, body, ver)
  if kind == 'p' then
    PUTS = PUTS + 1
  elseif kind == 'd' then
    DELS = DELS + 1
  elseif kind == 'e' then
    EXPIRED[#EXPIRED + 1] = key
  end
  local f, v = nil, nil
  if body and #body <= INLINE then f, v = 'v', body elseif ver then f, v = 'n', ver end
  if f and QUIET then
    LAST = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'e', kind, 'k', key, f, v, 'q', QUIET)
  elseif f then
    LAST = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'e', kind, 'k', key, f, v)
  elseif QUIET then
    LAST = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'e', kind, 'k', key, 'q', QUIET)
  else
    LAST = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'e', kind, 'k', key)
  end
end
local function count()
  if PUTS > 0 then redis.call('HINCRBY', KEYS[6], 'p', PUTS) end
  if DELS > 0 then redis.call('HINCRBY', KEYS[6], 'd', DELS) end
  local n = #EXPIRED
  if n > 0 then
    local total = redis.call('HINCRBY', KEYS[6], 'e', n)
    local at = now_ms()
    local slots = {}
    for i = math.max(1, n - RECENT + 1), n do
      local seq = total - n + i
      slots[#slots + 1] = 'r' .. (seq % RECENT)
      slots[#slots + 1] = seq .. ':' .. at .. ':' .. EXPIRED[i]
    end
    redis.call('HSET', KEYS[6], unpack(slots))
  end
end
-- The value's encoding in a stored record, when an event carries it (no
-- copy of a big one).
local function body_of(rec)
  if rec and #rec - 20 <= INLINE then return string.sub(rec, 21) end
  return nil
end
local function claim(key, vkey, now)
  local at = redis.call('ZSCORE', KEYS[2], key)
  if at and tonumber(at) <= now then
    local cur = nil
    -- A big value is not copied into Lua: the event goes without it.
    if redis.call('STRLEN', vkey) - 20 <= INLINE then cur = redis.call('GET', vkey) end
    redis.call('ZREM', KEYS[2], key)
    redis.call('SREM', KEYS[1], key)
    redis.call('DEL', vkey)
    event('e', key, body_of(cur))
    return true, false
  end
  -- Second: whether the key has a (future) expiry.
  return false, at ~= false
end
local function due(now)
  local set = {}
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do set[k] = true end
  return set
end
local function name_of(vkey)
  return string.sub(vkey, #ARGV[1] + 1)
end
local function same_members()
  local n = 0
  for i = 7, #KEYS do
    if redis.call('SISMEMBER', KEYS[1], name_of(KEYS[i])) == 0 then return false end
    n = n + 1
  end
  return redis.call('SCARD', KEYS[1]) == n
end
"#;

/// A script: the prelude, then `body` as a function whose answer is the
/// script's, once the events it announced are counted.
fn script(body: &str) -> Script {
    Script::new(&format!(
        "local RECENT = {RECENT_EXPIRIES}\n{PRELUDE}\nlocal function main()\n{body}\nend\n\
         local out = main()\ncount()\nreturn out\n"
    ))
}

/// A batch of puts and removals (see [`super::batch`]), applied in order,
/// each announcing itself as its own event. ARGV 4: the byte budget of the
/// removed records the reply carries, 5: the writer's tag
/// ([`super::Shared::tag`]); then per write, its kind and arguments, and in
/// KEYS from 7 on its keys, in the same order (a kind in capitals: a write
/// nothing on its node heard of; its events, and the expire event of a
/// key it meets expired, carry the tag in `q`):
///
/// * put: ARGV `p` (or `P`), key, record body, expiry (`keep`, `never` or ms from
///   now), condition (`always`, `absent`, `ver`), expected version header
///   (empty: missing); KEYS its value key. Its answer: the new version, or
///   -1 (exists) or -2 (conflict).
/// * remove: ARGV `d` (or `D`), key, parked-record lifetime (ms); KEYS its value key
///   and a fresh parking key. Its answer: the removed record, or its size
///   when it did not fit the budget (it is then renamed to the parking
///   key, which expires after that lifetime), or nil (missing).
///
/// Returns `{id of the batch's last event ('' when none), answer, ...}`:
/// every write script ends with that id, so the writers can wait until
/// their node has raised the events.
pub static WRITES: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
-- Whether any key of the dict has an expiry: while none has (the sorted
-- set is missing), no write can meet an expired key, and none asks.
local has_exp = redis.call('EXISTS', KEYS[2]) == 1
local function claim_any(key, vkey)
  if not has_exp then return false, false end
  return claim(key, vkey, now)
end
-- The batch's versions, taken at once: each put that writes takes the
-- next (one that fails its condition leaves a gap).
local nput = 0
local j = 6
while j <= #ARGV do
  if ARGV[j] == 'p' or ARGV[j] == 'P' then nput, j = nput + 1, j + 6 else j = j + 3 end
end
local ver_next = 0
if nput > 0 then ver_next = redis.call('INCRBY', KEYS[3], nput) - nput end
local function put(key, vkey, body, mode, cond, expected)
  local _, ttl = claim_any(key, vkey)
  -- Only the version header of the current record (no copy of a big
  -- one), and only when the write depends on it.
  local cur = false
  if cond ~= 'always' or mode == 'keep' then
    cur = redis.call('GETRANGE', vkey, 0, 19)
    if cur == '' then cur = false end
  end
  if cond == 'absent' then
    if cur then return -1 end
  elseif cond == 'ver' then
    if (cur or '') ~= expected then return -2 end
  end
  ver_next = ver_next + 1
  local ver = ver_next
  local rec = string.format('%020d', ver) .. body
  if mode == 'keep' then
    if cur then redis.call('SET', vkey, rec, 'KEEPTTL') else redis.call('SET', vkey, rec) end
  elseif mode == 'never' then
    redis.call('SET', vkey, rec)
    if ttl then redis.call('ZREM', KEYS[2], key) end
  else
    local at = now + tonumber(mode)
    redis.call('SET', vkey, rec, 'PXAT', at)
    redis.call('ZADD', KEYS[2], at, key)
    has_exp = true
  end
  redis.call('SADD', KEYS[1], key)
  event('p', key, body, ver)
  return ver
end
local budget = tonumber(ARGV[4])
local function remove(key, vkey, park, park_ms)
  if claim_any(key, vkey) then return false end
  local n = redis.call('STRLEN', vkey)
  if n == 0 then return false end
  local out = n
  if n <= budget then
    budget = budget - n
    out = redis.call('GET', vkey)
    redis.call('DEL', vkey)
    event('d', key, body_of(out))
  else
    redis.call('RENAME', vkey, park)
    redis.call('PEXPIRE', park, park_ms)
    event('d', key, nil)
  end
  redis.call('SREM', KEYS[1], key)
  redis.call('ZREM', KEYS[2], key)
  return out
end
local out = {''}
local i, k = 6, 7
while i <= #ARGV do
  local kind = ARGV[i]
  QUIET = (kind == 'P' or kind == 'D') and ARGV[5]
  if kind == 'p' or kind == 'P' then
    out[#out + 1] = put(ARGV[i + 1], KEYS[k], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
    i, k = i + 6, k + 1
  else
    out[#out + 1] = remove(ARGV[i + 1], KEYS[k], KEYS[k + 1], ARGV[i + 2])
    i, k = i + 3, k + 2
  end
end
out[1] = LAST
return out
"#,
    )
});

/// KEYS 7 the value key. ARGV 4 key, 5 `never` or ms from now. Returns
/// `{1, or 0 when missing, last event id}`.
pub static SET_EXPIRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local key = ARGV[4]
local vkey = KEYS[7]
claim(key, vkey, now)
if redis.call('EXISTS', vkey) == 0 then return {0, LAST} end
if ARGV[5] == 'never' then
  redis.call('PERSIST', vkey)
  redis.call('ZREM', KEYS[2], key)
else
  local at = now + tonumber(ARGV[5])
  redis.call('PEXPIREAT', vkey, at)
  redis.call('ZADD', KEYS[2], at, key)
end
return {1, LAST}
"#,
    )
});

/// The reaper. ARGV 4 max, 5 how many of the names after it are due keys
/// (the rest are locked keys whose lease looked lapsed), then the names;
/// KEYS 7.. their value keys, then their lock keys, in the same order.
/// Removes the due keys among them that are still due (announcing each),
/// announces the lapsed leases; returns `{removed, ms to the next expiry
/// or -1, last event id, up to max due keys, up to max lapsed locked
/// keys}` (the last two: what to pass next time).
pub static REAP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local max = tonumber(ARGV[4])
local ndue = tonumber(ARGV[5])
local n = 0
for i = 6, #ARGV do
  local key, k = ARGV[i], KEYS[i + 1]
  if i - 5 <= ndue then
    if claim(key, k, now) then n = n + 1 end
  else
    local at = redis.call('ZSCORE', KEYS[5], key)
    if at and tonumber(at) <= now then
      local left = redis.call('PTTL', k)
      if left > 0 then
        redis.call('ZADD', KEYS[5], now + left, key)
      else
        redis.call('ZREM', KEYS[5], key)
        event('u', key)
      end
    end
  end
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
local due_keys = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, max)
return {n, wait, LAST, due_keys, lapsed}
"#,
    )
});

/// Live keys (expired ones not yet reaped are left out).
pub static KEYS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local gone = due(now_ms())
local out = {}
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not gone[k] then out[#out + 1] = k end
end
return out
"#,
    )
});

/// KEYS 7.. the value keys of every key in `idx` (read just before).
/// Live entries as a flat `{key, record, ...}`, or `'retry'` when the key
/// set is not the one declared any more.
pub static ENTRIES: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if not same_members() then return 'retry' end
local gone = due(now_ms())
local out = {}
for i = 7, #KEYS do
  local k = name_of(KEYS[i])
  if not gone[k] then
    local rec = redis.call('GET', KEYS[i])
    if rec then out[#out + 1] = k; out[#out + 1] = rec end
  end
end
return out
"#,
    )
});

/// How many keys are live.
pub static LEN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
return redis.call('SCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[2], '-inf', now_ms())
"#,
    )
});

/// KEYS 7.. the value keys of every key in `idx` (read just before).
/// Removes every entry (no events); returns how many were live, or
/// `'retry'` when the key set is not the one declared any more.
pub static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if not same_members() then return 'retry' end
local live = redis.call('SCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[2], '-inf', now_ms())
for i = 7, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[1], KEYS[2])
return live
"#,
    )
});

/// KEYS 7 the lock key. ARGV 4 key, 5 token, 6 lease ms. Returns 1 (taken
/// or already ours) or the holder's token.
pub static LOCK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local lkey = KEYS[7]
local cur = redis.call('GET', lkey)
if cur and cur ~= ARGV[5] then return cur end
local at = now_ms() + tonumber(ARGV[6])
redis.call('SET', lkey, ARGV[5], 'PXAT', at)
redis.call('ZADD', KEYS[5], at, ARGV[4])
return 1
"#,
    )
});

/// KEYS 7 the lock key. ARGV 4 key, 5 token. Returns 1 when released, 0
/// when not ours.
pub static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local lkey = KEYS[7]
if redis.call('GET', lkey) ~= ARGV[5] then return 0 end
redis.call('DEL', lkey)
redis.call('ZREM', KEYS[5], ARGV[4])
event('u', ARGV[4])
return 1
"#,
    )
});

/// KEYS 7.. the lock keys. ARGV 4 lease ms, then a (key, token) pair per
/// lock key, in the same order. Extends the leases still held; returns the
/// keys whose lock was lost (lapsed or taken by another).
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local at = now_ms() + tonumber(ARGV[4])
local lost = {}
for j = 7, #KEYS do
  local key, token = ARGV[2 * j - 9], ARGV[2 * j - 8]
  local lkey = KEYS[j]
  if redis.call('GET', lkey) == token then
    redis.call('PEXPIREAT', lkey, at)
    redis.call('ZADD', KEYS[5], at, key)
  else
    lost[#lost + 1] = key
  end
end
return lost
"#,
    )
});
