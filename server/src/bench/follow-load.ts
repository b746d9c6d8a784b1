/**
 * Redis commands per second spent on clients that wait for answers running
 * on another instance: the follower (one blocking XREAD over every followed
 * buffer) against the polling it replaced (one XRANGE per client every
 * 100 ms). Counts come from the server's INFO commandstats, so run it
 * against a Redis of its own:
 *
 *   redis-server --port 6390 --save '' --appendonly no &
 *   node server/dist/bench/follow-load.js --redis redis://127.0.0.1:6390 --follows 200 --seconds 30
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pino from 'pino';
import { TurnEventBuffer } from '../modules/chat/event-buffer.js';
import { RedisState } from '../shared-state/redis-state.js';

const { values } = parseArgs({
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6390' },
    follows: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '30' },
  },
});
const url = values.redis;
const follows = Number(values.follows);
const seconds = Number(values.seconds);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const logger = pino({ level: 'silent' });

/** Calls per second of each command while `during` runs, from the server's own counters. */
async function measure(admin: Redis, during: () => Promise<void>): Promise<Record<string, number>> {
  await admin.config('RESETSTAT');
  const started = performance.now();
  await during();
  const elapsed = (performance.now() - started) / 1000;
  const info = await admin.info('commandstats');
  const rates: Record<string, number> = {};
  for (const line of info.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (!m?.[1] || !m[2] || m[1] === 'config' || m[1] === 'info') continue;
    rates[m[1]] = Math.round((Number(m[2]) / elapsed) * 10) / 10;
  }
  return rates;
}

const total = (rates: Record<string, number>) => Math.round(Object.values(rates).reduce((a, b) => a + b, 0) * 10) / 10;

async function main(): Promise<void> {
  const admin = new Redis(url);
  const prefix = `follow-load:${Date.now()}:`;
  const writer = new RedisState(url, prefix, logger);
  const turns = Array.from({ length: follows }, (_, i) => `turn-${i}`);
  for (const t of turns) await writer.appendEvents(t, [{ id: 1, event: 'start', data: '{}' }, { id: 2, event: 'chatId', data: '{}' }], 600);

  // 1. Idle: every client follows an answer that sends nothing for a while.
  const follower = new RedisState(url, prefix, logger);
  let caughtUp = 0;
  const stops = turns.map((t) =>
    follower.followEvents(t, 0, {
      onEvents: (events) => {
        if (events.some((e) => e.id === 2)) caughtUp++;
      },
      onClose: () => undefined,
    }),
  );
  while (caughtUp < follows) await sleep(20);
  const idle = await measure(admin, () => sleep(seconds * 1000));

  // 2. Active: the other instance appends to every answer on its 40 ms tick (25 batches a second each).
  const buffer = new TurnEventBuffer({ state: writer, logger, ttlSeconds: 600, intervalMs: 40 });
  let nextId = 3;
  let delivered = 0;
  stops.forEach((stop) => stop());
  for (const t of turns) follower.followEvents(t, nextId - 1, { onEvents: (events) => (delivered += events.length), onClose: () => undefined });
  const producing = setInterval(() => {
    const id = nextId++;
    for (const t of turns) buffer.append(t, { id, event: 'chunk', data: '{"content":"x"}' });
  }, 10);
  await sleep(1_000);
  const activeStart = delivered;
  const active = await measure(admin, () => sleep(seconds * 1000));
  const activeDelivered = delivered - activeStart;
  clearInterval(producing);
  await buffer.flushAll();
  await follower.close();

  // 3. The polling this replaced: one XRANGE per client every 100 ms.
  let polling = true;
  const polled = measure(admin, () => sleep(seconds * 1000)).finally(() => (polling = false));
  await Promise.all(
    turns.map(async (t) => {
      let last = 0;
      while (polling) {
        await sleep(100);
        const events = await writer.readEvents(t, last);
        last = events.at(-1)?.id ?? last;
      }
    }),
  );
  const poll = await polled;

  process.stdout.write(
    [
      `${follows} clients, each following its own answer; commands/s over ${seconds} s (INFO commandstats):`,
      `  follower, idle:   ${total(idle)} ${JSON.stringify(idle)}`,
      `  follower, active: ${total(active)} ${JSON.stringify(active)} (${Math.round(activeDelivered / seconds)} events/s delivered)`,
      `  polling, idle:    ${total(poll)} ${JSON.stringify(poll)}`,
      '',
    ].join('\n'),
  );
  await writer.close();
  admin.disconnect();
}

await main();
