import crypto from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portAllocator } from '../../../tools/src/local-cluster/ports.js';
import { redisCommand, redisSentinelPath, startRedisSentinelSet, type RedisSentinelSet } from '../../../tools/src/local-cluster/redis-sentinel.js';
import { redisServerPath } from '../../../tools/src/local-cluster/services.js';
import { eventually } from '../test/sse.js';
import { RedisState } from './redis-state.js';
import type { FollowEndReason, TurnEvent } from './shared-state.js';

/**
 * Shared state reached through Sentinel (`redis-sentinel://`) across a
 * failover, on a master, a replica and three Sentinels of the test's own
 * (the shipped configs): once the Sentinels have promoted the replica,
 * everything the instances keep in Redis works again by itself, on the same
 * client, with no restart: rate-limit counters, turn buffers and their
 * follows, breakers and notices between instances.
 */
const available = redisServerPath() !== undefined && redisSentinelPath() !== undefined;
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';

describe('shared state through Sentinel', () => {
  it.runIf(required)('has redis-server and redis-sentinel (LLMCHAT_REQUIRE_SERVICES=1)', () => {
    expect({ redis: redisServerPath() !== undefined, sentinel: redisSentinelPath() !== undefined }).toEqual({ redis: true, sentinel: true });
  });
});

const event = (id: number, name = 'chunk'): TurnEvent => ({ id, event: name, data: JSON.stringify({ n: id }) });

describe.skipIf(!available)('shared state through Sentinel, across failovers', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-sentinel-'));
  let redis: RedisSentinelSet;
  let instance: RedisState;
  let other: RedisState;
  const prefix = `llmchat-sentinel-${crypto.randomUUID()}:`;
  const password = crypto.randomBytes(12).toString('hex');

  beforeAll(async () => {
    // Its own range below 32768, apart from the topology's (21000, 23000).
    const ports = portAllocator(24500);
    redis = await startRedisSentinelSet({
      masterName: 'llmchat',
      password,
      nodePorts: [await ports.next(), await ports.next()],
      sentinelPorts: [await ports.next(), await ports.next(), await ports.next()],
      dir,
      logDir: dir,
      env: { PATH: process.env.PATH },
    });
    instance = new RedisState(redis.url, prefix);
    other = new RedisState(redis.url, prefix);
  }, 120_000);
  afterAll(async () => {
    await instance?.close();
    await other?.close();
    await redis?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Resolves once a write goes through again (commands fail fast while the client reconnects). */
  const writable = (state: RedisState) => eventually(async () => state.set(`${prefix}probe`, 'x', 60).then(() => true, () => false), 'a write to succeed again', 30_000);

  for (const failure of ['a planned failover (SENTINEL FAILOVER)', 'the master killed (-9)'] as const) {
    it(`comes back by itself after ${failure}: counters, buffers and follows, breakers, notices`, async () => {
      await eventually(async () => ((await redis.whole()) === true ? true : undefined), 'the Redis set whole', 60_000);
      const before = await redis.master();
      expect(before).toBeDefined();
      const turn = crypto.randomUUID();
      await instance.appendEvents(turn, [event(1), event(2)], 60);
      await instance.hit(`rl:${turn}`, 60);
      // Redis replicates asynchronously: what the master took in its last instant may not survive it. The
      // promise here is the client's (it comes back by itself), so the writes are on the replica first.
      const replica = redis.nodes.find((n) => n !== before);
      await eventually(
        async () => Number(await redisCommand(replica?.port ?? 0, ['EXISTS', `${prefix}turn:${turn}:events`, `${prefix}rl:${turn}`], { password })) === 2,
        'the writes on the replica',
      );
      const followed: number[] = [];
      let ended: FollowEndReason | undefined;
      let following = true;
      // A follow cut by the failover ends `unavailable`, whenever its own connection notices (which may be after the
      // commands' connection works again); its client follows again from the last event it saw, as the web app does.
      const follow = (): void => {
        other.followEvents(turn, followed.at(-1) ?? 0, {
          onEvents: (events) => followed.push(...events.map((e) => e.id)),
          onClose: (reason) => {
            if (reason === 'unavailable' && following) setTimeout(follow, 200);
            else ended = reason;
          },
        });
      };
      follow();
      await eventually(async () => followed.includes(2), 'the follow to see the buffer');
      const notices: string[] = [];
      await other.subscribe('drill-notice', (message) => notices.push(message));

      if (failure === 'the master killed (-9)') {
        await before?.crash();
        await eventually(async () => ((await redis.master())?.name !== before?.name ? true : undefined), 'the Sentinels to promote the replica', 30_000);
      } else {
        await redis.failover();
      }
      const after = await redis.master();
      expect(after?.name).not.toBe(before?.name);

      await writable(instance);
      await writable(other);
      // The buffer is on the new master (replicated before the switch), and takes appends that the follow sees.
      expect((await instance.readEvents(turn, 0)).map((e) => e.id)).toEqual([1, 2]);
      await instance.appendEvents(turn, [event(3), event(4, 'end')], 60);
      await eventually(async () => ended, 'the follow to reach `end`');
      expect(ended).toBe('end');
      following = false;
      expect(followed.filter((id) => id > 2)).toEqual([3, 4]);
      // Counters go on from where they were (the replica had the count).
      expect(await instance.hit(`rl:${turn}`, 60)).toBe(2);
      // Breakers: an atomic read-modify-write on the new master.
      const endpoint = `endpoint-${turn}`;
      const settings = { threshold: 1, windowMs: 10_000, cooldownMs: 60_000 };
      expect((await instance.breakerRecord(endpoint, 'failure', Date.now(), settings)).state).toBe('open');
      expect((await other.breakerAcquire(endpoint, Date.now(), 1_000)).decision).toBe('reject');
      // Notices between instances: the subscription was restored on the new master.
      await eventually(async () => {
        await instance.publish('drill-notice', turn);
        await new Promise((resolve) => setTimeout(resolve, 100));
        return notices.includes(turn);
      }, 'a notice across the failover', 30_000);

      if (failure === 'the master killed (-9)') {
        // The old master, started again, rejoins as a replica (the set is whole for the next test).
        await before?.start();
        await eventually(async () => ((await redis.whole()) === true ? true : undefined), 'the Redis set whole again', 60_000);
      }
    }, 120_000);
  }
});
