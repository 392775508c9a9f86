//! The Lua scripts run on the Redis server.
//!
//! Each script is sent by SHA (`EVALSHA`); [`redis::Script`] loads it once
//! when the server does not know it yet (after a restart, for example).
//! Scripts run atomically, so every compare-and-store, removal and
//! notification below happens as one step on the server.
//!
//! Notifications are published from inside the scripts, in the same atomic
//! step as the change they describe: no replica can observe a change without
//! its message being on the way. A message is the JSON object
//! `{"o": origin, "k": kind, "m": [...]}` where `kind` is `keys` (members are
//! rendered resource keys), `namespace` (one member) or `clear`.

use std::sync::OnceLock;

use redis::Script;

/// Shared Lua helpers: byte-wise comparison of fixed-width hex strengths.
const COMPARE: &str = r#"
local function cmp(a, b)
  if a == b then return 0 end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  return 0
end
local function strength(rec)
  if not rec or #rec < 74 or string.sub(rec, 1, 2) ~= 'C1' then return nil end
  return string.sub(rec, 3, 34)
end
local function notify(channel, origin, kind, members)
  if channel ~= '' and #members > 0 then
    redis.call('PUBLISH', channel, cjson.encode({o = origin, k = kind, m = members}))
  end
end
"#;

/// Conditional batch write.
///
/// `KEYS`: per key group `g`, `KEYS[2g-1]` the data key and `KEYS[2g]` its
/// namespace set; last, the namespace index set.
/// `ARGV`: channel, origin, group count, then per group: TTL in ms (`0`: no
/// TTL), member (rendered key), namespace, candidate count, then per
/// candidate: flags (`<force><replace_equal>` as `0`/`1`) and the record.
///
/// Candidates come in decision order. Returns, per group: the record stored
/// before the batch (nil when absent), the 1-based index of the candidate left
/// stored (0 when none was), and one outcome letter per candidate (`S`
/// stored, `L` lower authority, `O` older, `D` duplicate).
const WRITE_BODY: &str = r#"
local channel, origin = ARGV[1], ARGV[2]
local groups = tonumber(ARGV[3])
local index_key = KEYS[2 * groups + 1]
local a = 4
local out = {}
local stored = {}
for g = 1, groups do
  local data_key, set_key = KEYS[2 * g - 1], KEYS[2 * g]
  local ttl = tonumber(ARGV[a])
  local member, namespace = ARGV[a + 1], ARGV[a + 2]
  local count = tonumber(ARGV[a + 3])
  a = a + 4
  local original = redis.call('GET', data_key)
  local current = strength(original)
  local winner, winner_rec = 0, nil
  local codes = {}
  for c = 1, count do
    local flags, rec = ARGV[a], ARGV[a + 1]
    a = a + 2
    local force = string.sub(flags, 1, 1) == '1'
    local replace = string.sub(flags, 2, 2) == '1'
    local s = string.sub(rec, 3, 34)
    local code = 'S'
    if current ~= nil and not force then
      local by_rank = cmp(string.sub(s, 1, 16), string.sub(current, 1, 16))
      if by_rank < 0 then
        code = 'L'
      elseif by_rank == 0 then
        local by_time = cmp(string.sub(s, 17, 32), string.sub(current, 17, 32))
        if by_time < 0 then
          code = 'O'
        elseif by_time == 0 and not replace then
          code = 'D'
        end
      end
    end
    if code == 'S' then
      current, winner, winner_rec = s, c, rec
    end
    codes[c] = code
  end
  if winner > 0 then
    if ttl > 0 then
      redis.call('SET', data_key, winner_rec, 'PX', ttl)
    else
      redis.call('SET', data_key, winner_rec)
    end
    local existed = redis.call('EXISTS', set_key) == 1
    redis.call('SADD', set_key, member)
    if ttl > 0 then
      if not existed then
        redis.call('PEXPIRE', set_key, ttl)
      else
        local left = redis.call('PTTL', set_key)
        if left >= 0 and left < ttl then redis.call('PEXPIRE', set_key, ttl) end
      end
    else
      redis.call('PERSIST', set_key)
    end
    redis.call('SADD', index_key, namespace)
    stored[#stored + 1] = member
  end
  out[#out + 1] = original
  out[#out + 1] = winner
  out[#out + 1] = table.concat(codes)
end
notify(channel, origin, 'keys', stored)
return out
"#;

/// Removal of keys, unconditional or while their signature is unchanged.
///
/// `KEYS`: per key `i`, `KEYS[2i-1]` the data key and `KEYS[2i]` its
/// namespace set. `ARGV`: channel, origin, then per key: member and expected
/// signature (empty: unconditional). Returns one 0/1 per key. Only
/// unconditional removals are announced.
const INVALIDATE_BODY: &str = r#"
local channel, origin = ARGV[1], ARGV[2]
local out = {}
local announced = {}
local count = (#ARGV - 2) / 2
for i = 1, count do
  local data_key, set_key = KEYS[2 * i - 1], KEYS[2 * i]
  local member, sig = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local removed = 0
  if sig == '' then
    removed = redis.call('DEL', data_key)
    redis.call('SREM', set_key, member)
    announced[#announced + 1] = member
  else
    local rec = redis.call('GET', data_key)
    if rec and string.sub(rec, 1, #sig) == sig then
      removed = redis.call('DEL', data_key)
      redis.call('SREM', set_key, member)
    end
  end
  out[i] = removed
end
notify(channel, origin, 'keys', announced)
return out
"#;

/// Removal of one namespace through its key set (never `KEYS`).
///
/// `KEYS[1]`: the namespace set, `KEYS[2]`: the namespace index.
/// `ARGV`: channel, origin, data key prefix, namespace. Returns the members
/// whose data key existed.
const INVALIDATE_NAMESPACE_BODY: &str = r#"
local channel, origin, prefix, namespace = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local removed = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('DEL', prefix .. member) == 1 then removed[#removed + 1] = member end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], namespace)
notify(channel, origin, 'namespace', {namespace})
return removed
"#;

/// Removal of everything under the prefix, through the namespace index.
///
/// `KEYS[1]`: the namespace index. `ARGV`: channel, origin, data key prefix,
/// namespace set prefix. Returns the number of data keys removed.
const CLEAR_BODY: &str = r#"
local channel, origin, prefix, set_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local total = 0
for _, namespace in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local set_key = set_prefix .. namespace
  for _, member in ipairs(redis.call('SMEMBERS', set_key)) do
    total = total + redis.call('DEL', prefix .. member)
  end
  redis.call('DEL', set_key)
end
redis.call('DEL', KEYS[1])
notify(channel, origin, 'clear', {'*'})
return total
"#;

/// The scripts, hashed once per process.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) write: Script,
    pub(crate) invalidate: Script,
    pub(crate) invalidate_namespace: Script,
    pub(crate) clear: Script,
}

/// The process-wide scripts.
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let with_helpers = |body: &str| Script::new(&format!("{COMPARE}{body}"));
        Scripts {
            write: with_helpers(WRITE_BODY),
            invalidate: with_helpers(INVALIDATE_BODY),
            invalidate_namespace: with_helpers(INVALIDATE_NAMESPACE_BODY),
            clear: with_helpers(CLEAR_BODY),
        }
    })
}
