import type { Redis } from 'ioredis';
import { BREAKER_TTL_MS, closedBreaker, type BreakerDecision, type BreakerOutcome, type BreakerSettings, type BreakerSnapshot, type BreakerState } from './breaker.js';

/**
 * The breaker transitions of breaker.ts as Lua scripts, so a read-modify-write
 * is atomic across instances (two instances never both take the probe lease).
 * A breaker is one hash; both scripts return the decision (or '') followed by
 * the hash's fields.
 */

const FIELDS = ['state', 'failures', 'windowStart', 'openUntil', 'probeUntil', 'opens', 'lastFailure'] as const;

const LOAD = `
local k = KEYS[1]
local h = redis.call('HMGET', k, 'state', 'failures', 'windowStart', 'openUntil', 'probeUntil', 'opens', 'lastFailure')
local s = { state = h[1] or 'closed', failures = tonumber(h[2] or 0), windowStart = tonumber(h[3] or 0), openUntil = tonumber(h[4] or 0),
  probeUntil = tonumber(h[5] or 0), opens = tonumber(h[6] or 0), lastFailure = tonumber(h[7] or 0) }
local function save(ttl)
  redis.call('HSET', k, 'state', s.state, 'failures', s.failures, 'windowStart', s.windowStart, 'openUntil', s.openUntil,
    'probeUntil', s.probeUntil, 'opens', s.opens, 'lastFailure', s.lastFailure)
  redis.call('PEXPIRE', k, ttl)
end
local function out(decision)
  return { decision, s.state, tostring(s.failures), tostring(s.windowStart), tostring(s.openUntil), tostring(s.probeUntil), tostring(s.opens), tostring(s.lastFailure) }
end
`;

/** ARGV: now, probe lease, ttl. */
const ACQUIRE = `${LOAD}
local now, lease, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if s.state == 'closed' then return out('allow') end
if s.state == 'open' then
  if now < s.openUntil then return out('reject') end
  s.state = 'half_open'
  s.probeUntil = now + lease
  save(ttl)
  return out('probe')
end
if now < s.probeUntil then return out('reject') end
s.probeUntil = now + lease
save(ttl)
return out('probe')`;

/** ARGV: outcome, now, threshold, window, cooldown, ttl. */
const RECORD = `${LOAD}
local outcome, now = ARGV[1], tonumber(ARGV[2])
local threshold, window, cooldown, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if outcome == 'success' then
  if s.state == 'open' then return out('') end
  s.state = 'closed'
  s.failures = 0
  s.windowStart = now
  s.probeUntil = 0
elseif outcome == 'release' then
  if s.state ~= 'half_open' then return out('') end
  s.probeUntil = 0
else
  s.lastFailure = now
  if s.state == 'half_open' then
    s.state = 'open'
    s.openUntil = now + cooldown
    s.probeUntil = 0
    s.opens = s.opens + 1
  elseif s.state == 'closed' then
    if now - s.windowStart >= window then
      s.failures = 0
      s.windowStart = now
    end
    s.failures = s.failures + 1
    if s.failures >= threshold then
      s.state = 'open'
      s.openUntil = now + cooldown
      s.failures = 0
      s.opens = s.opens + 1
    end
  end
end
save(ttl)
return out('')`;

interface BreakerCommands {
  llmchatBreakerAcquire(key: string, now: number, lease: number, ttl: number): Promise<string[]>;
  llmchatBreakerRecord(key: string, outcome: string, now: number, threshold: number, window: number, cooldown: number, ttl: number): Promise<string[]>;
}

function snapshotFrom(reply: string[]): BreakerSnapshot {
  const num = (i: number) => Number(reply[i] ?? 0) || 0;
  const state = (reply[1] ?? 'closed') as BreakerState;
  return { state, failures: num(2), windowStartMs: num(3), openUntilMs: num(4), probeUntilMs: num(5), opens: num(6), lastFailureMs: num(7) };
}

/**
 * Registers the scripts on a client; returns the three breaker operations
 * bound to it. `live` hands out the client for each command, so the caller
 * can fail commands at once while Redis is down (RedisState's `live`) rather
 * than let them wait in the client's queue for reconnects.
 */
export function redisBreakers(client: Redis, keyOf: (endpointId: string) => string, live: () => Redis = () => client) {
  client.defineCommand('llmchatBreakerAcquire', { numberOfKeys: 1, lua: ACQUIRE });
  client.defineCommand('llmchatBreakerRecord', { numberOfKeys: 1, lua: RECORD });
  const commands = () => live() as unknown as BreakerCommands;
  return {
    async acquire(endpointId: string, nowMs: number, probeLeaseMs: number): Promise<{ decision: BreakerDecision; snapshot: BreakerSnapshot }> {
      const reply = await commands().llmchatBreakerAcquire(keyOf(endpointId), nowMs, probeLeaseMs, BREAKER_TTL_MS);
      return { decision: reply[0] as BreakerDecision, snapshot: snapshotFrom(reply) };
    },
    async record(endpointId: string, outcome: BreakerOutcome, nowMs: number, settings: BreakerSettings): Promise<BreakerSnapshot> {
      const reply = await commands().llmchatBreakerRecord(keyOf(endpointId), outcome, nowMs, settings.threshold, settings.windowMs, settings.cooldownMs, BREAKER_TTL_MS);
      return snapshotFrom(reply);
    },
    async read(endpointIds: readonly string[]): Promise<BreakerSnapshot[]> {
      if (endpointIds.length === 0) return [];
      const pipeline = live().pipeline();
      for (const id of endpointIds) pipeline.hmget(keyOf(id), ...FIELDS);
      const results = (await pipeline.exec()) ?? [];
      return results.map(([err, value]) => {
        if (err) throw err;
        const h = value as (string | null)[];
        if (h[0] === null || h[0] === undefined) return closedBreaker();
        return snapshotFrom(['', ...h.map((v) => v ?? '0')]);
      });
    },
  };
}
