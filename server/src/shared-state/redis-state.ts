import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { parseRedisUrl } from './redis-url.js';
import { MAX_EVENTS_PER_TURN, type SharedState, type TurnEvent, type Unsubscribe } from './shared-state.js';

const HIT_SCRIPT = `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n`;

/**
 * SharedState on Redis (standalone or Sentinel). Commands fail fast while
 * Redis is unreachable instead of queueing without bound; the client
 * reconnects by itself and subscriptions are restored by ioredis.
 */
export class RedisState implements SharedState {
  readonly kind = 'redis' as const;
  private readonly client: Redis;
  private subscriber: Redis | undefined;
  private readonly handlers = new Map<string, Set<(message: string) => void>>();

  constructor(
    url: string,
    private readonly prefix: string,
    private readonly logger?: Logger,
  ) {
    this.client = new Redis({ ...RedisState.options(), ...parseRedisUrl(url), connectionName: 'llmchat' });
    this.client.on('error', (err: Error) => this.logger?.warn({ err: err.message }, 'redis error'));
    this.client.defineCommand('llmchatHit', { numberOfKeys: 1, lua: HIT_SCRIPT });
    this.url = url;
  }

  private readonly url: string;

  private static options() {
    return {
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      enableAutoPipelining: true,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    };
  }

  private key(k: string): string {
    return this.prefix + k;
  }

  async hit(key: string, windowSeconds: number, by = 1): Promise<number> {
    const run = (this.client as unknown as { llmchatHit(k: string, by: number, ttl: number): Promise<number> }).llmchatHit;
    return Number(await run.call(this.client, this.key(key), by, windowSeconds));
  }

  get(key: string): Promise<string | null> {
    return this.client.get(this.key(key));
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    await this.client.set(this.key(key), value, 'EX', ttlSeconds);
  }

  async del(key: string): Promise<void> {
    await this.client.del(this.key(key));
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.client.publish(this.key(channel), message);
  }

  async subscribe(channel: string, onMessage: (message: string) => void): Promise<Unsubscribe> {
    const subscriber = this.ensureSubscriber();
    const full = this.key(channel);
    let set = this.handlers.get(full);
    if (!set) {
      set = new Set();
      this.handlers.set(full, set);
      await subscriber.subscribe(full);
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

  private ensureSubscriber(): Redis {
    if (!this.subscriber) {
      const subscriber = new Redis({ ...RedisState.options(), ...parseRedisUrl(this.url), connectionName: 'llmchat-sub', maxRetriesPerRequest: null });
      subscriber.on('error', (err: Error) => this.logger?.warn({ err: err.message }, 'redis subscriber error'));
      subscriber.on('message', (channel: string, message: string) => {
        for (const handler of this.handlers.get(channel) ?? []) handler(message);
      });
      this.subscriber = subscriber;
    }
    return this.subscriber;
  }

  async appendEvents(turnId: string, events: readonly TurnEvent[], ttlSeconds: number): Promise<void> {
    if (events.length === 0) return;
    const key = this.key(`turn:${turnId}:events`);
    const pipeline = this.client.pipeline();
    for (const e of events) {
      pipeline.xadd(key, 'MAXLEN', '~', MAX_EVENTS_PER_TURN, `0-${e.id}`, 'e', e.event, 'd', e.data);
    }
    pipeline.expire(key, ttlSeconds);
    const results = await pipeline.exec();
    const failed = results?.find(([err]) => err);
    if (failed?.[0]) throw failed[0];
  }

  async readEvents(turnId: string, afterId: number): Promise<TurnEvent[]> {
    const entries = await this.client.xrange(this.key(`turn:${turnId}:events`), `(0-${afterId}`, '+');
    return entries.map(([id, fields]) => ({
      id: Number(id.slice(2)),
      event: fields[1] ?? 'message',
      data: fields[3] ?? '',
    }));
  }

  async ping(): Promise<number> {
    const start = performance.now();
    await this.client.ping();
    return performance.now() - start;
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.client.quit(), this.subscriber?.quit()]);
  }
}
