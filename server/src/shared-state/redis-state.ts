import crypto from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { parseRedisUrl } from './redis-url.js';
import type { BreakerDecision, BreakerOutcome, BreakerSettings, BreakerSnapshot } from './breaker.js';
import { redisBreakers } from './redis-breaker.js';
import { ALIVE_SCRIPT, BEAT_SCRIPT, GONE_PER_BEAT, TAKEN_MEMORY_MS, type InstanceBeat } from './instance-registry.js';
import { DEFAULT_REDIS_FOLLOW_TIMINGS, eventsFromEntries, RedisTurnFollower, type RedisFollowTimings } from './redis-follower.js';
import { MAX_EVENTS_PER_TURN, SharedStateUnavailable, type SharedState, type StopFollowing, type TurnEvent, type TurnFollowHandler, type TurnLimitsRequest, type TurnLimitsResult, type Unsubscribe } from './shared-state.js';

const HIT_SCRIPT = `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n`;

/**
 * KEYS: the counters, the buckets, the reservation record.
 * ARGV: counter count, bucket count, tokens to reserve, the record's TTL,
 * then (window, limit) per counter and (ttl, limit) per bucket.
 * Returns each counter's count, each bucket's use before the turn, then 1
 * if admitted. The record lists the buckets' full keys, so a settlement
 * needs only the turn id.
 */
const ADMIT_SCRIPT = `
local nc = tonumber(ARGV[1])
local nb = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local out = {}
local ok = 1
for i = 1, nc do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('EXPIRE', KEYS[i], ARGV[3 + 2 * i]) end
  if n > tonumber(ARGV[4 + 2 * i]) then ok = 0 end
  out[#out + 1] = n
end
local base = 4 + 2 * nc
for j = 1, nb do
  local used = tonumber(redis.call('GET', KEYS[nc + j]) or '0')
  if used >= tonumber(ARGV[base + 2 * j]) then ok = 0 end
  out[#out + 1] = used
end
if ok == 1 and nb > 0 then
  local keys = {}
  for j = 1, nb do
    local k = KEYS[nc + j]
    redis.call('INCRBY', k, reserve)
    if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ARGV[base + 2 * j - 1]) end
    keys[j] = k
  end
  redis.call('SET', KEYS[nc + nb + 1], cjson.encode({ keys = keys, reserved = reserve }), 'EX', ARGV[4])
end
out[#out + 1] = ok
return out`;

/** KEYS: the reservation record. ARGV: the tokens used. Buckets whose window expired meanwhile are left alone. */
const SETTLE_SCRIPT = `
local record = redis.call('GET', KEYS[1])
if not record then return 0 end
redis.call('DEL', KEYS[1])
local r = cjson.decode(record)
local delta = tonumber(ARGV[1]) - tonumber(r.reserved)
if delta ~= 0 then
  for _, k in ipairs(r.keys) do
    if redis.call('EXISTS', k) == 1 then redis.call('INCRBY', k, delta) end
  end
end
return 1`;

interface HitCommand {
  llmchatHit(key: string, by: number, ttlSeconds: number): Promise<number>;
  llmchatAdmit(...args: (string | number)[]): Promise<number[]>;
  llmchatSettle(key: string, tokens: number): Promise<number>;
  llmchatBeat(registry: string, clock: string, instanceId: string, leaseMs: number, judgeWithinMs: number, takenMemoryMs: number, gonePerBeat: number, rejoinMs: number): Promise<(number | string)[]>;
  llmchatAlive(registry: string, leaseMs: number, ...instanceIds: string[]): Promise<number[]>;
}

function clientOptions(url: string, connectionName: string): RedisOptions {
  return {
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    enableAutoPipelining: true,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    ...parseRedisUrl(url),
    connectionName,
  };
}

/**
 * SharedState on Redis (standalone or Sentinel). Commands fail fast while
 * Redis is unreachable instead of queueing without bound; the clients
 * reconnect by themselves and ioredis restores subscriptions on reconnect.
 */
export class RedisState implements SharedState {
  readonly kind = 'redis' as const;
  private readonly client: Redis;
  private subscriber: Promise<Redis> | undefined;
  private readonly handlers = new Map<string, Set<(message: string) => void>>();
  private everReady = false;
  private readonly breakers: ReturnType<typeof redisBreakers>;
  private follower: RedisTurnFollower | undefined;
  private readonly followTimings: RedisFollowTimings;

  constructor(
    private readonly url: string,
    private readonly prefix: string,
    private readonly logger?: Logger,
    options: { follow?: Partial<RedisFollowTimings> } = {},
  ) {
    this.followTimings = { ...DEFAULT_REDIS_FOLLOW_TIMINGS, ...options.follow };
    this.client = new Redis(clientOptions(url, 'llmchat'));
    this.client.on('error', (err: Error) => this.logger?.warn({ err: err.message }, 'redis error'));
    this.client.on('ready', () => {
      if (this.everReady) this.logger?.info('redis is back: full service restored');
      this.everReady = true;
    });
    this.client.defineCommand('llmchatHit', { numberOfKeys: 1, lua: HIT_SCRIPT });
    this.client.defineCommand('llmchatAdmit', { lua: ADMIT_SCRIPT });
    this.client.defineCommand('llmchatSettle', { numberOfKeys: 1, lua: SETTLE_SCRIPT });
    this.client.defineCommand('llmchatBeat', { numberOfKeys: 2, lua: BEAT_SCRIPT });
    this.client.defineCommand('llmchatAlive', { numberOfKeys: 1, lua: ALIVE_SCRIPT });
    // Breaker commands fail at once while Redis is down too: a failing turn must not wait for reconnects on each record.
    this.breakers = redisBreakers(this.client, (endpointId) => this.key(`breaker:${endpointId}`), () => this.live);
  }

  /**
   * The client for a command, or SharedStateUnavailable at once when a
   * connection that was up is lost: callers degrade (rate limits fail open or
   * closed, resumption is off) instead of waiting for reconnects. Before the
   * first connection, commands queue as usual (start-up).
   */
  private get live(): Redis {
    if (this.everReady && this.client.status !== 'ready') throw new SharedStateUnavailable(`redis is ${this.client.status}`);
    return this.client;
  }

  private key(k: string): string {
    return this.prefix + k;
  }

  async hit(key: string, windowSeconds: number, by = 1): Promise<number> {
    return Number(await (this.live as unknown as HitCommand).llmchatHit(this.key(key), by, windowSeconds));
  }

  async admitTurn(request: TurnLimitsRequest): Promise<TurnLimitsResult> {
    const { counters, buckets } = request;
    const keys = [...counters.map((c) => this.key(c.key)), ...buckets.map((b) => this.key(b.key)), this.key(`reservation:${request.reservationId}`)];
    const args: (string | number)[] = [counters.length, buckets.length, request.reserve, request.reservationTtlSeconds];
    for (const c of counters) args.push(c.windowSeconds, c.limit);
    for (const b of buckets) args.push(b.ttlSeconds, b.limit);
    // Without numberOfKeys in its definition, the command takes the key count first.
    const out = (await (this.live as unknown as HitCommand).llmchatAdmit(keys.length, ...keys, ...args)).map(Number);
    return { counts: out.slice(0, counters.length), used: out.slice(counters.length, counters.length + buckets.length), admitted: out.at(-1) === 1 };
  }

  async settleTurn(reservationId: string, tokens: number): Promise<boolean> {
    return Number(await (this.live as unknown as HitCommand).llmchatSettle(this.key(`reservation:${reservationId}`), tokens)) === 1;
  }

  async readCounters(keys: readonly string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const values = await this.live.mget(...keys.map((k) => this.key(k)));
    return values.map((v) => Number(v ?? 0));
  }

  async get(key: string): Promise<string | null> {
    return this.live.get(this.key(key));
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    await this.live.set(this.key(key), value, 'EX', ttlSeconds);
  }

  async del(key: string): Promise<void> {
    await this.live.del(this.key(key));
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.live.publish(this.key(channel), message);
  }

  async subscribe(channel: string, onMessage: (message: string) => void): Promise<Unsubscribe> {
    const subscriber = await this.connectSubscriber();
    const full = this.key(channel);
    let set = this.handlers.get(full);
    if (!set) {
      set = new Set();
      this.handlers.set(full, set);
      try {
        await subscriber.subscribe(full);
      } catch (err) {
        this.handlers.delete(full);
        throw err;
      }
    }
    set.add(onMessage);
    return async () => {
      const handlers = this.handlers.get(full);
      if (!handlers) return;
      handlers.delete(onMessage);
      if (handlers.size === 0) {
        this.handlers.delete(full);
        await subscriber.unsubscribe(full).catch(() => undefined);
      }
    };
  }

  /**
   * The subscriber connection is made ready before its first SUBSCRIBE: a
   * SUBSCRIBE sent while connecting makes ioredis's ready check fail and the
   * channels confirmed so far are silently dropped on the reconnect.
   */
  private connectSubscriber(): Promise<Redis> {
    this.subscriber ??= (async () => {
      const subscriber = new Redis({ ...clientOptions(this.url, 'llmchat-sub'), maxRetriesPerRequest: null, lazyConnect: true });
      subscriber.on('error', (err: Error) => this.logger?.warn({ err: err.message }, 'redis subscriber error'));
      subscriber.on('message', (channel: string, message: string) => {
        for (const handler of this.handlers.get(channel) ?? []) handler(message);
      });
      await subscriber.connect();
      return subscriber;
    })().catch((err: unknown) => {
      this.subscriber = undefined;
      throw err;
    });
    return this.subscriber;
  }
  /**
   * One stream entry per batch (`0-<last id>`, fields `<id>:<event>` → data):
   * a flush costs one XADD however many events it carries.
   */
  async appendEvents(turnId: string, events: readonly TurnEvent[], ttlSeconds: number, refreshTtl = true): Promise<void> {
    const last = events[events.length - 1];
    if (!last) return;
    const key = this.eventsKey(turnId);
    const fields: string[] = [];
    for (const e of events) fields.push(`${e.id}:${e.event}`, e.data);
    const added = this.live.xadd(key, 'MAXLEN', '~', MAX_EVENTS_PER_TURN, `0-${last.id}`, ...fields);
    if (!refreshTtl) {
      await added;
      return;
    }
    await Promise.all([added, this.live.expire(key, ttlSeconds)]);
  }

  async readEvents(turnId: string, afterId: number): Promise<TurnEvent[]> {
    return eventsFromEntries(await this.live.xrange(this.eventsKey(turnId), `(0-${afterId}`, '+'), afterId);
  }

  async deleteEvents(turnId: string): Promise<void> {
    await this.live.del(this.eventsKey(turnId));
  }

  /** One blocking XREAD per instance, on a connection of its own, serves every follow (redis-follower.ts). */
  followEvents(turnId: string, afterId: number, handler: TurnFollowHandler): StopFollowing {
    if (this.everReady && this.client.status !== 'ready') {
      queueMicrotask(() => handler.onClose('unavailable'));
      return () => undefined;
    }
    this.follower ??= new RedisTurnFollower({
      connect: () =>
        new Redis({
          ...clientOptions(this.url, 'llmchat-follow'),
          // A read in flight fails at once when the connection drops (the follows end), and nothing queues while it is down.
          maxRetriesPerRequest: 0,
          enableOfflineQueue: false,
          autoResendUnfulfilledCommands: false,
          enableAutoPipelining: false,
          lazyConnect: true,
        }),
      commands: () => this.live,
      keyOf: (id) => this.eventsKey(id),
      wakeKey: this.key(`follower:${crypto.randomUUID()}:wake`),
      timings: this.followTimings,
      logger: this.logger,
    });
    return this.follower.follow(turnId, afterId, handler);
  }

  get followCount(): number {
    return this.follower?.size ?? 0;
  }

  /** XREADs the follower has sent (tests, measurements). */
  get followerReads(): number {
    return this.follower?.reads ?? 0;
  }

  private eventsKey(turnId: string): string {
    return this.key(`turn:${turnId}:events`);
  }

  breakerAcquire(endpointId: string, nowMs: number, probeLeaseMs: number): Promise<{ decision: BreakerDecision; snapshot: BreakerSnapshot }> {
    return this.breakers.acquire(endpointId, nowMs, probeLeaseMs);
  }

  breakerRecord(endpointId: string, outcome: BreakerOutcome, nowMs: number, settings: BreakerSettings): Promise<BreakerSnapshot> {
    return this.breakers.record(endpointId, outcome, nowMs, settings);
  }

  breakerRead(endpointIds: readonly string[]): Promise<BreakerSnapshot[]> {
    return this.breakers.read(endpointIds);
  }

  async beatInstance(instanceId: string, leaseMs: number, judgeWithinMs: number, rejoinMs = 0): Promise<InstanceBeat> {
    const reply = await (this.live as unknown as HitCommand).llmchatBeat(this.key('instances'), this.key('instances-clock'), instanceId, leaseMs, judgeWithinMs, TAKEN_MEMORY_MS, GONE_PER_BEAT, rejoinMs);
    return { lost: Number(reply[0]) === 1, steady: Number(reply[1]) === 1, gone: reply.slice(2).map(String) };
  }

  async instancesAlive(instanceIds: readonly string[], leaseMs: number): Promise<boolean[]> {
    if (instanceIds.length === 0) return [];
    const reply = await (this.live as unknown as HitCommand).llmchatAlive(this.key('instances'), leaseMs, ...instanceIds);
    return reply.map((v) => Number(v) === 1);
  }

  async expireInstance(instanceId: string): Promise<void> {
    // Only a lease it holds (a positive score): one judged gone meanwhile stays so.
    await this.live.zadd(this.key('instances'), 'XX', 'LT', 0, instanceId);
  }

  async markInstanceTaken(instanceId: string): Promise<void> {
    // Judged gone now: this process's clock stands in for Redis's, only to be forgotten an hour later.
    await this.live.zadd(this.key('instances'), -Date.now(), instanceId);
  }

  async ping(): Promise<number> {
    const start = performance.now();
    await this.live.ping();
    return performance.now() - start;
  }

  async close(): Promise<void> {
    await this.follower?.close();
    const subscriber = this.subscriber?.catch(() => undefined);
    await Promise.allSettled([this.client.quit(), subscriber?.then((s) => s?.quit())]);
  }
}
