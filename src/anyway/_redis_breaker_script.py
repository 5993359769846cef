"""The Lua script of :class:`anyway.redis.RedisBreakerStore`: a circuit
breaker's whole state machine (see :class:`anyway.abc.BreakerStore`), run
atomically on the server, on the server's ``TIME`` (microseconds).

Keys (one hash tag, so one Cluster slot per breaker):

* ``KEYS[1]`` a hash: ``state`` (``c``/``o``/``h``), ``gen`` (the generation,
  bumped on every change), ``until`` (end of OPEN in us; ``-1`` held open),
  ``ofor`` (the seconds it was opened for, for the reason), the counts
  (``consec``, ``succ``, ``calls``, ``psucc``), the window totals (``wcalls``,
  ``wfail``, ``wslow``), its position (``wpos``, count window) or newest
  bucket (``whead``, time window) and ``shape`` (the window's shape: a
  breaker whose window changes starts a new window);
* ``KEYS[2]`` a sorted set: the probe slots held in HALF_OPEN, the call id
  scored by the end of its lease (a process that died holding a slot cannot
  keep the circuit half-open for longer than the lease);
* ``KEYS[3]`` a hash: the window's outcomes (count window: field = position,
  value = failure + 2 * slow; time window: ``c``/``f``/``s`` + bucket).

ARGV: op, failure_threshold, recovery_time (us), half_open_max_calls, window
kind (``none``/``count``/``time``), size or bucket count, bucket width (us),
minimum_calls, failure_rate_threshold, slow_call_rate_threshold (``-1``:
none), lease (us), then the op's own: acquire/release ``call``; record
``call ticket failure slow``; force ``state seconds_us(-1: held) seconds reset``.

Reply: {state, failure_count, success_count, call_count, slow_call_count,
probes_in_flight, retry_after_us (-1: none), ticket (-1: refused/none),
previous state ('' none), kind ('' none), n1, n2, ofor}.
"""

from __future__ import annotations

from ._redis_call import Script

__all__ = ["BREAKER"]

BREAKER = Script(
    """
local st, probes, win = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local recovery = tonumber(ARGV[3])
local max_probes = tonumber(ARGV[4])
local wkind = ARGV[5]
local wsize = tonumber(ARGV[6])
local wwidth = tonumber(ARGV[7])
local min_calls = tonumber(ARGV[8])
local rate_thr = tonumber(ARGV[9])
local slow_thr = tonumber(ARGV[10])
local lease = tonumber(ARGV[11])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function f(x) return string.format('%.0f', x) end

local raw = redis.call('HGETALL', st)
local exists = #raw > 0
local s = {state = 'c', gen = 0, ['until'] = 0, ofor = '', consec = 0, succ = 0, calls = 0,
           psucc = 0, wcalls = 0, wfail = 0, wslow = 0, wpos = 0, whead = -1, shape = ''}
for i = 1, #raw, 2 do
  local k, v = raw[i], raw[i + 1]
  if k == 'state' or k == 'ofor' or k == 'shape' then s[k] = v else s[k] = tonumber(v) end
end

local prev, kind, n1, n2 = '', '', 0, 0

local function clear_window()
  s.wcalls, s.wfail, s.wslow, s.wpos, s.whead = 0, 0, 0, 0, -1
  redis.call('DEL', win)
end
local function clear()
  s.consec, s.succ, s.calls, s.psucc = 0, 0, 0, 0
  redis.call('DEL', probes)
  clear_window()
end
local shape = wkind .. ':' .. ARGV[6] .. ':' .. ARGV[7]
if s.shape ~= shape then
  if op ~= 'snapshot' then clear_window() end
  s.shape = shape
end
local function change(new, why)
  prev, kind = s.state, why
  s.state = new
  s.gen = s.gen + 1
  clear()
end
local function open(seconds_us, seconds, why)
  s.ofor = seconds
  if seconds_us < 0 then s['until'] = -1 else s['until'] = now + seconds_us end
  change('o', why)
end

local function advance()
  local index = math.floor(now / wwidth)
  if s.whead < 0 then s.whead = index return end
  if index <= s.whead then return end
  if index - s.whead >= wsize then
    local head = index
    clear_window()
    s.whead = head
    return
  end
  for i = s.whead + 1, index do
    local slot = i % wsize
    local v = redis.call('HMGET', win, 'c' .. slot, 'f' .. slot, 's' .. slot)
    s.wcalls = s.wcalls - (tonumber(v[1]) or 0)
    s.wfail = s.wfail - (tonumber(v[2]) or 0)
    s.wslow = s.wslow - (tonumber(v[3]) or 0)
    redis.call('HDEL', win, 'c' .. slot, 'f' .. slot, 's' .. slot)
  end
  s.whead = index
end

local function add(failure, slow)
  if wkind == 'count' then
    local pos = s.wpos
    if s.wcalls == wsize then
      local old = tonumber(redis.call('HGET', win, pos)) or 0
      s.wfail = s.wfail - old % 2
      s.wslow = s.wslow - math.floor(old / 2)
    else
      s.wcalls = s.wcalls + 1
    end
    redis.call('HSET', win, pos, failure + 2 * slow)
    s.wpos = (pos + 1) % wsize
  else
    advance()
    local slot = s.whead % wsize
    redis.call('HINCRBY', win, 'c' .. slot, 1)
    redis.call('HINCRBY', win, 'f' .. slot, failure)
    redis.call('HINCRBY', win, 's' .. slot, slow)
    redis.call('PEXPIRE', win, math.ceil(wwidth * wsize / 1000) + 1)
    s.wcalls = s.wcalls + 1
  end
  s.wfail = s.wfail + failure
  s.wslow = s.wslow + slow
end

-- the totals of a time window as of now, without changing anything
local function window_now()
  if wkind ~= 'time' or s.whead < 0 then return s.wcalls, s.wfail, s.wslow end
  local index = math.floor(now / wwidth)
  if index <= s.whead then return s.wcalls, s.wfail, s.wslow end
  local c, fl, sl = 0, 0, 0
  for i = math.max(index - wsize + 1, s.whead - wsize + 1), s.whead do
    local slot = i % wsize
    local v = redis.call('HMGET', win, 'c' .. slot, 'f' .. slot, 's' .. slot)
    c = c + (tonumber(v[1]) or 0)
    fl = fl + (tonumber(v[2]) or 0)
    sl = sl + (tonumber(v[3]) or 0)
  end
  return c, fl, sl
end

local function purge()
  redis.call('ZREMRANGEBYSCORE', probes, '-inf', f(now))
end

local function reply(ticket)
  local state, fc, sc, cc, sl, pr, retry = s.state, 0, 0, 0, 0, 0, -1
  if state == 'o' then
    if s['until'] >= 0 then
      if now >= s['until'] then state = 'h' else retry = s['until'] - now end
    end
  elseif state == 'h' then
    sc, cc = s.psucc, s.psucc
    pr = redis.call('ZCOUNT', probes, '(' .. f(now), '+inf')
  elseif wkind ~= 'none' then
    cc, fc, sl = window_now()
    sc = cc - fc
  else
    fc, sc, cc = s.consec, s.succ, s.calls
  end
  return {state, fc, sc, cc, sl, pr, retry, ticket, prev, kind, n1, n2, s.ofor}
end

local function save()
  redis.call('HSET', st, 'state', s.state, 'gen', s.gen, 'until', f(s['until']), 'ofor', s.ofor,
             'consec', s.consec, 'succ', s.succ, 'calls', s.calls, 'psucc', s.psucc,
             'wcalls', s.wcalls, 'wfail', s.wfail, 'wslow', s.wslow, 'wpos', s.wpos,
             'whead', f(s.whead), 'shape', s.shape)
end

if op == 'snapshot' then
  return reply(-1)
end

local ticket = -1
if op == 'acquire' then
  if s.state == 'o' and s['until'] >= 0 and now >= s['until'] then
    change('h', 'recovery_time')
  end
  if s.state == 'c' then
    ticket = s.gen
  elseif s.state == 'h' then
    purge()
    if redis.call('ZCARD', probes) + s.psucc < max_probes then
      redis.call('ZADD', probes, f(now + lease), ARGV[12])
      redis.call('PEXPIRE', probes, math.ceil(lease / 1000) + 1)
      ticket = s.gen
    end
  end
  if not exists and kind == '' then
    return reply(ticket)  -- a fresh closed circuit: nothing to store
  end
elseif op == 'record' then
  if tonumber(ARGV[13]) ~= s.gen then
    return reply(-1)
  end
  local failure, slow = tonumber(ARGV[14]), tonumber(ARGV[15])
  if s.state == 'c' then
    if wkind == 'none' then
      s.calls = s.calls + 1
      if failure == 0 then
        s.consec = 0
        s.succ = s.succ + 1
      else
        s.consec = s.consec + 1
        if s.consec >= threshold then
          n1 = s.consec
          open(recovery, ARGV[16], 'failures')
        end
      end
    else
      add(failure, slow)
      if s.wcalls >= min_calls then
        local calls, fails, slows = s.wcalls, s.wfail, s.wslow
        if fails / calls >= rate_thr then
          n1, n2 = fails, calls
          open(recovery, ARGV[16], 'failure_rate')
        elseif slow_thr >= 0 and slows / calls >= slow_thr then
          n1, n2 = slows, calls
          open(recovery, ARGV[16], 'slow_call_rate')
        end
      end
    end
  elseif s.state == 'h' then
    purge()
    if redis.call('ZREM', probes, ARGV[12]) == 0 then
      return reply(-1)  -- not a probe (or its lease ran out): says nothing
    end
    if failure == 1 then
      open(recovery, ARGV[16], 'probe_failed')
    elseif slow == 1 then
      open(recovery, ARGV[16], 'probe_slow')
    else
      s.psucc = s.psucc + 1
      if s.psucc >= max_probes then
        n1 = s.psucc
        change('c', 'probes_succeeded')
      end
    end
  else
    return reply(-1)
  end
elseif op == 'release' then
  redis.call('ZREM', probes, ARGV[12])
  return reply(-1)
elseif op == 'force' then
  local target, reset = ARGV[12], ARGV[15] == '1'
  if target == 'o' then
    if s.state == 'o' and not reset then return reply(-1) end
    open(tonumber(ARGV[13]), ARGV[14], 'operator_open')
  elseif s.state == 'c' then
    if not reset then return reply(-1) end
    s.gen = s.gen + 1
    clear()
  elseif reset then
    change('c', 'operator_reset')
  else
    change('c', 'operator_close')
  end
end
save()
return reply(ticket)
"""
)
