"""The Lua scripts of the Redis rate limiters.

Time is the server's ``TIME`` in whole microseconds (hosts disagree about
the time; the server is one clock), read inside the script, so the decision
and the clock reading are one atomic step. Lua numbers are doubles: integers
up to 2**53 (285 years of microseconds) are exact, so every comparison here
is exact integer arithmetic.

The state of one limit is one string key holding its *theoretical arrival
time* ``TAT`` in microseconds (see :mod:`anyway._ratelimit` for GCRA). A
missing key is a limit at rest. The key expires at the first whole
millisecond at or after ``TAT``: that is when its state has fully recovered
(a fresh key behaves identically from then on), so nothing is reset early
and nothing lingers more than a millisecond longer (Redis expiries are whole
milliseconds; ``SET ... PXAT`` is absolute, so the server's cached clock
cannot move it earlier).
"""

from __future__ import annotations

from ._redis_call import Script

__all__ = ["GCRA", "GIVE_BACK"]

# KEYS[1]: the limit's key.
# ARGV: interval T (us, a whole number >= 1), burst, cost, take ("1" to take the
# units when they conform, "0" only to look).
# Returns {granted (1/0), TAT (us; after the grant when granted), now (us)}.
# A request of `cost` units conforms when max(TAT, now) + cost*T - burst*T <= now.
GCRA = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local new = tat + cost * interval
if new - burst * interval > now then
  return {0, tat, now}
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[1], string.format('%.0f', new), 'PXAT',
             string.format('%.0f', math.ceil(new / 1000)))
end
return {1, new, now}
"""
)

# Gives back `amount` us of a grant whose TAT is still `expected` (nobody was
# granted since): the state is then exactly as if the grant had not happened
# (or stricter, when the grant had restarted an idle limit). When someone was
# granted since, giving back would let a later request share their slot, so
# nothing is given back.
# KEYS[1]: the limit's key. ARGV: expected TAT (us), amount (us).
# Returns 1 when given back, else 0.
GIVE_BACK = Script(
    """
local tat = redis.call('GET', KEYS[1])
if tat ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new = tonumber(tat) - tonumber(ARGV[2])
if new <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', new), 'PXAT',
             string.format('%.0f', math.ceil(new / 1000)))
end
return 1
"""
)
