/**
 * The registry of live instances (takeover.ts): each instance renews a lease
 * on itself a few times a second, and the same call tells it which other
 * instances let their lease run out. One sorted set holds every instance's
 * last beat, stamped with the registry's own clock (Redis TIME, or this
 * process's in memory), so the instances' clocks never matter. An instance
 * judged gone stays in it with a negative score (minus when it was judged),
 * so one that was only paused learns at its next beat that it was taken for
 * dead, and lets go of what it lost; score 0 is a lease ended on purpose.
 *
 * The registry also keeps its own continuity: when no instance at all beat
 * for longer than a caller's `judgeWithinMs` (Redis was down, failed over to
 * a replica holding older beats, emptied, or every instance stalled), every
 * lease looks run out at once. Then nobody is judged until the registry has
 * run for `rejoinMs` without such a gap: long enough for every live instance
 * to reconnect and beat again. Otherwise the first instance back would take
 * over the live answers of all the others. A registry with no clock at all
 * (new, or Redis restarted empty) holds no old beats, only the fresh ones of
 * instances that are back, so there is nothing to wait for.
 */

/** What one beat saw. */
export interface InstanceBeat {
  /**
   * The registry held this instance's previous beat, no older than the
   * caller's `judgeWithinMs`: the registry and this instance ran without a
   * stall, so leases that ran out meanwhile ran out for their owner alone,
   * and `gone` was judged. After a stall (this process paused, Redis slow,
   * down or emptied) nothing is judged on that beat.
   */
  steady: boolean;
  /** Another instance judged this one gone since its last beat: answers it runs may have been taken over. */
  lost: boolean;
  /** Instances whose lease ran out, judged gone now: this caller alone was told, and takes their answers over. */
  gone: string[];
}

/** How long an instance judged gone is remembered, so one that was only paused learns it at its next beat. */
export const TAKEN_MEMORY_MS = 3_600_000;
/** At most this many instances are judged gone per beat (the rest at the next). */
export const GONE_PER_BEAT = 100;

/**
 * KEYS: the registry, its clock (a hash: `last`, the last beat by anyone;
 * `since`, when the registry last came back from a gap). ARGV: this
 * instance, the lease (ms), judgeWithinMs, TAKEN_MEMORY_MS, GONE_PER_BEAT,
 * rejoinMs. Returns lost (0/1), steady (0/1), then the instances judged
 * gone. Six commands on a quiet beat.
 */
export const BEAT_SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
local clock = redis.call('HMGET', KEYS[2], 'last', 'since')
local last = tonumber(clock[1])
local since = tonumber(clock[2]) or 0
if last and now - last > tonumber(ARGV[3]) then
  since = now
  redis.call('HSET', KEYS[2], 'since', since)
end
redis.call('HSET', KEYS[2], 'last', now)
local out = { (prev and prev < 0) and 1 or 0, 0 }
if prev and prev > 0 and now - prev <= tonumber(ARGV[3]) then
  out[2] = 1
end
if out[2] == 1 and now - since >= tonumber(ARGV[6]) then
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], 0, '(' .. (now - tonumber(ARGV[2])), 'LIMIT', 0, tonumber(ARGV[5]))
  if #gone > 0 then
    for _, id in ipairs(gone) do
      redis.call('ZADD', KEYS[1], -now, id)
      out[#out + 1] = id
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (tonumber(ARGV[4]) - now), '(0')
  end
end
return out`;

/** KEYS: the registry. ARGV: the lease (ms), then instance ids. Returns 1 or 0 per id: holds a lease now. */
export const ALIVE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 2, #ARGV do
  local s = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]))
  out[#out + 1] = (s and s > 0 and now - s < tonumber(ARGV[1])) and 1 or 0
end
return out`;

/** The same rules in process memory (the embedded single node, tests). */
export class MemoryInstanceRegistry {
  /** Last beat per instance; negative: judged gone then; 0: lease ended. */
  private readonly beats = new Map<string, number>();
  /** The last beat by anyone, and when the registry last came back from a gap. */
  private last: number | undefined;
  private since = Number.NEGATIVE_INFINITY;

  constructor(private readonly now: () => number = Date.now) {}

  beat(instanceId: string, leaseMs: number, judgeWithinMs: number, rejoinMs = 0): InstanceBeat {
    const now = this.now();
    const prev = this.beats.get(instanceId);
    this.beats.set(instanceId, now);
    if (this.last !== undefined && now - this.last > judgeWithinMs) this.since = now;
    this.last = now;
    const lost = prev !== undefined && prev < 0;
    const steady = prev !== undefined && prev > 0 && now - prev <= judgeWithinMs;
    const gone: string[] = [];
    if (steady && now - this.since >= rejoinMs) {
      for (const [id, at] of this.beats) {
        if (gone.length >= GONE_PER_BEAT) break;
        if (at < 0 || at >= now - leaseMs) continue;
        this.beats.set(id, -now);
        gone.push(id);
      }
      if (gone.length > 0) for (const [id, at] of this.beats) if (at < 0 && -at < now - TAKEN_MEMORY_MS) this.beats.delete(id);
    }
    return { steady, lost, gone };
  }

  alive(instanceIds: readonly string[], leaseMs: number): boolean[] {
    const now = this.now();
    return instanceIds.map((id) => {
      const at = this.beats.get(id);
      return at !== undefined && at > 0 && now - at < leaseMs;
    });
  }

  /** Its lease ends now: the next beat of another instance judges it gone. */
  expire(instanceId: string): void {
    const at = this.beats.get(instanceId);
    if (at !== undefined && at > 0) this.beats.set(instanceId, 0);
  }

  markTaken(instanceId: string): void {
    this.beats.set(instanceId, -this.now());
  }
}
