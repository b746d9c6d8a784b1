import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { TurnEvent } from './shared-state.js';
import { TurnFollows, type Follow, type FollowTimings, type StopFollowing, type TurnFollowHandler } from './turn-follow.js';

/** A stream entry as XRANGE / XREAD return it: id, then field, value, field, value… */
export type StreamEntry = [id: string, fields: string[]];

/** The events of event-buffer entries (fields `<id>:<event>` → data) with id > afterId. */
export function eventsFromEntries(entries: readonly StreamEntry[], afterId: number): TurnEvent[] {
  const events: TurnEvent[] = [];
  for (const [, fields] of entries) {
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const name = fields[i] ?? '';
      const colon = name.indexOf(':');
      const id = Number(name.slice(0, colon));
      if (id > afterId) events.push({ id, event: name.slice(colon + 1), data: fields[i + 1] ?? '' });
    }
  }
  return events;
}

export interface RedisFollowTimings extends FollowTimings {
  /** BLOCK of each XREAD: how often an idle follower re-reads (and may check for absent buffers). */
  blockMs: number;
}

export const DEFAULT_REDIS_FOLLOW_TIMINGS: RedisFollowTimings = { blockMs: 10_000, absentAfterMs: 10_000 };

export interface RedisFollowerOptions {
  /** Creates the follower's own connection (lazyConnect); it carries nothing but the blocking reads. */
  connect: () => Redis;
  /** The shared command connection (wake-ups); throws while Redis is unreachable. */
  commands: () => Redis;
  /** The Redis key of a turn's event buffer. */
  keyOf: (turnId: string) => string;
  /** A key of this follower's own (a fresh one per process): its wake-up stream. */
  wakeKey: string;
  timings: RedisFollowTimings;
  logger?: Logger | undefined;
}

/** A read that has not come back this long after its BLOCK ran out is taken for a dead connection. */
const WATCHDOG_GRACE_MS = 5_000;
/** After an error reply (not a lost connection), the next read waits this long: never a tight loop. */
const ERROR_BACKOFF_MS = 1_000;
/** The wake-up stream outlives the process that reads it by at most this long. */
const WAKE_KEY_TTL_MS = 60 * 60_000;

/** Existence of each key, in order: one command for every idle buffer. */
const EXISTING_SCRIPT = `local r = {}
for i = 1, #KEYS do r[i] = redis.call('EXISTS', KEYS[i]) end
return r`;

/**
 * One instance's follower of turn event buffers on Redis: a single
 * connection of its own blocks in one XREAD over every followed buffer
 * (`XREAD BLOCK <ms> STREAMS wake k1 k2 … <wake id> id1 id2 …`) and hands
 * each entry to the follows of its turn. However many clients wait, the
 * instance holds one blocked connection and, idle, sends one XREAD per
 * BLOCK period.
 *
 * A new follow that the read in flight does not cover wakes it with an
 * XADD to the follower's own wake-up stream, which the read includes at the
 * last wake id it saw: a wake-up written before the read reaches Redis makes
 * that read return at once, so none is lost (CLIENT UNBLOCK can arrive
 * before the read blocks and be lost, needs the client id again after every
 * reconnect, and is an @admin command that restricted ACL users lack).
 * Wake-ups within one event-loop turn are sent as one. A stopped follow
 * wakes nothing: its buffer drops out of the next read.
 *
 * When the connection is lost every follow ends with `unavailable` (the
 * client stream ends so the client reconnects later); no read is sent until
 * the connection is ready again, and ioredis reconnects with backoff. A
 * followed buffer that stays absent (expired, never written, lost with a
 * Redis restart) is found by one existence check per `absentAfterMs` over
 * the idle buffers, and its follows end with `absent`.
 */
export class RedisTurnFollower {
  private readonly follows: TurnFollows;
  private conn: Redis | undefined;
  private everReady = false;
  private running = false;
  private closing = false;
  /** Turn → cursor of the XREAD in flight; undefined between reads. */
  private inFlight: Map<string, number> | undefined;
  /** Follows added while a read that does not cover them was in flight: served from the next read on. */
  private readonly waiting = new Set<Follow>();
  private wakeScheduled = false;
  private wakeCursor = '0-0';
  private wakeTtlSetAt = 0;
  private lastAbsentCheck = Date.now();
  private retryAt = 0;
  private lostAt: number | undefined;
  /** XREADs sent so far (diagnostics, tests). */
  reads = 0;

  constructor(private readonly options: RedisFollowerOptions) {
    this.follows = new TurnFollows();
  }

  get size(): number {
    return this.follows.size;
  }

  follow(turnId: string, afterId: number, handler: TurnFollowHandler): StopFollowing {
    const conn = this.connection();
    if (this.closing || (this.everReady && conn.status !== 'ready')) {
      const reason = this.closing ? 'closed' : 'unavailable';
      queueMicrotask(() => handler.onClose(reason));
      return () => undefined;
    }
    const follow = this.follows.add(turnId, afterId, handler);
    const flight = this.inFlight;
    const cursor = flight?.get(turnId);
    if (!flight || (cursor !== undefined && cursor <= afterId)) {
      // The next read starts at its cursor, or the read in flight already returns what it needs.
      follow.caughtUp = true;
    } else {
      this.waiting.add(follow);
      this.wake();
    }
    this.kick();
    return () => {
      this.waiting.delete(follow);
      this.follows.remove(follow);
    };
  }

  /** Ends every follow (`closed`) and drops the connection; a read in flight is cut, not waited for. */
  async close(): Promise<void> {
    this.closing = true;
    this.follows.closeAll('closed');
    this.waiting.clear();
    const conn = this.conn;
    if (!conn) return;
    try {
      await this.options.commands().del(this.options.wakeKey);
    } catch {
      // Redis is down: the key expires by itself.
    }
    conn.disconnect();
  }

  private connection(): Redis {
    if (this.conn) return this.conn;
    const conn = this.options.connect();
    conn.on('ready', () => {
      this.everReady = true;
      if (this.lostAt !== undefined) {
        this.options.logger?.info({ downMs: Date.now() - this.lostAt }, 'redis follower connection back: answers can be followed from other instances again');
        this.lostAt = undefined;
      }
      this.kick();
    });
    conn.on('close', () => this.lost());
    // The command connection reports Redis errors; this one would repeat them on every reconnect attempt.
    conn.on('error', (err: Error) => this.options.logger?.debug({ err: err.message }, 'redis follower connection error'));
    this.conn = conn;
    conn.connect().catch(() => undefined);
    return conn;
  }

  /** The connection closed: every follow ends so its client reconnects later (Redis may come back empty). */
  private lost(): void {
    this.waiting.clear();
    if (this.closing || this.follows.size === 0) return;
    if (this.lostAt === undefined) {
      this.lostAt = Date.now();
      this.options.logger?.warn({ follows: this.follows.size }, 'redis follower connection lost: followed answers end here, their clients reconnect');
    }
    this.follows.closeAll('unavailable');
  }

  private kick(): void {
    if (this.running || this.closing || this.follows.size === 0 || this.conn?.status !== 'ready') return;
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
      this.kick();
    });
  }

  private async loop(): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    while (!this.closing && this.follows.size > 0 && conn.status === 'ready') {
      const backoff = this.retryAt - Date.now();
      if (backoff > 0) {
        await new Promise((resolve) => setTimeout(resolve, backoff));
        continue;
      }
      const cursors = new Map<string, number>();
      const turnOf = new Map<string, string>();
      const keys = [this.options.wakeKey];
      const ids = [this.wakeCursor];
      for (const turnId of this.follows.turnIds) {
        const cursor = this.follows.cursor(turnId) ?? 0;
        const key = this.options.keyOf(turnId);
        cursors.set(turnId, cursor);
        turnOf.set(key, turnId);
        keys.push(key);
        ids.push(`0-${cursor}`);
      }
      // Every follow open now is covered by this read's cursors.
      for (const follow of this.waiting) follow.caughtUp = true;
      this.waiting.clear();
      this.inFlight = cursors;
      let reply: unknown;
      try {
        reply = await this.read(conn, keys, ids);
      } catch (err) {
        this.inFlight = undefined;
        this.readFailed(err, conn);
        continue;
      }
      this.inFlight = undefined;
      this.consume(reply, turnOf);
      await this.checkAbsent(conn);
    }
  }

  private async read(conn: Redis, keys: string[], ids: string[]): Promise<unknown> {
    this.reads++;
    // A connection that died without a close (a silent network partition) would leave the read hanging.
    const watchdog = setTimeout(() => {
      this.options.logger?.warn('redis follower read overdue: reconnecting');
      conn.disconnect(true);
    }, this.options.timings.blockMs + WATCHDOG_GRACE_MS);
    try {
      return await conn.call('XREAD', 'BLOCK', String(this.options.timings.blockMs), 'STREAMS', ...keys, ...ids);
    } finally {
      clearTimeout(watchdog);
    }
  }

  private readFailed(err: unknown, conn: Redis): void {
    if (conn.status !== 'ready') {
      // The connection went: lost() ended the follows; reads resume once it is ready again.
      this.lost();
      return;
    }
    // An error reply: end the follows (their clients reconnect) and never retry in a tight loop.
    this.options.logger?.warn({ err: (err as Error).message }, 'redis follower read failed');
    this.retryAt = Date.now() + ERROR_BACKOFF_MS;
    this.follows.closeAll('unavailable');
  }

  private consume(reply: unknown, turnOf: Map<string, string>): void {
    if (!Array.isArray(reply)) return; // BLOCK ran out: nothing new
    for (const [key, entries] of reply as [string, StreamEntry[]][]) {
      if (key === this.options.wakeKey) {
        const last = entries.at(-1);
        if (last) this.wakeCursor = last[0];
        continue;
      }
      const turnId = turnOf.get(key);
      if (turnId !== undefined) this.follows.deliver(turnId, eventsFromEntries(entries, -1));
    }
  }

  /** At most once per absentAfterMs: buffers idle that long that no longer exist end their follows. */
  private async checkAbsent(conn: Redis): Promise<void> {
    const now = Date.now();
    const { absentAfterMs } = this.options.timings;
    if (now - this.lastAbsentCheck < absentAfterMs) return;
    this.lastAbsentCheck = now;
    const idle = this.follows.idleSince(now - absentAfterMs);
    if (idle.length === 0) return;
    try {
      const exists = (await conn.call('EVAL', EXISTING_SCRIPT, String(idle.length), ...idle.map((turnId) => this.options.keyOf(turnId)))) as number[];
      idle.forEach((turnId, i) => {
        if (exists[i] === 0) this.follows.closeTurn(turnId, 'absent');
      });
    } catch (err) {
      // The next read finds out whether the connection is gone.
      this.options.logger?.debug({ err: (err as Error).message }, 'redis follower existence check failed');
    }
  }

  /** Makes the read in flight return, so the next one includes new follows. One XADD per event-loop turn at most. */
  private wake(): void {
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      if (!this.inFlight) return; // the next read includes them anyway
      let client: Redis;
      try {
        client = this.options.commands();
      } catch {
        return; // Redis is down: the follows end with the connection
      }
      const onError = (err: unknown) => this.options.logger?.debug({ err: (err as Error).message }, 'redis follower wake-up failed');
      client.xadd(this.options.wakeKey, 'MAXLEN', '1', '*', 'wake', '1').catch(onError);
      const now = Date.now();
      if (now - this.wakeTtlSetAt > WAKE_KEY_TTL_MS / 4) {
        this.wakeTtlSetAt = now;
        client.pexpire(this.options.wakeKey, WAKE_KEY_TTL_MS).catch(onError);
      }
    });
  }
}
