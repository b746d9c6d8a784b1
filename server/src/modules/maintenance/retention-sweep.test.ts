import crypto from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type DatabaseHandle } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { buildTestApp, login, type TestApp } from '../../test/app.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { eventually } from '../../test/sse.js';
import { createIdempotencyStore } from '../chat/idempotency.js';
import { createFailureLog } from '../resilience/failure-log.js';
import { RetentionSweep, retentionTasks, type RetentionTask } from './retention-sweep.js';

const NOW = Date.parse('2030-06-01T12:00:00Z');
const TTL_SECONDS = 3_600;
const RETENTION_DAYS = 30;
const DAY_MS = 86_400_000;
const silent = pino({ level: 'silent' });

describe.each(await backendNames())('retention sweep on %s', (name) => {
  let backend: Backend;
  let userId: string;

  beforeAll(async () => {
    backend = await createBackend(name);
    await migrateToLatest(backend.database.db);
    const user = await backend.database.db.insertInto('users').values({ username: 'sweeper', password_hash: 'x', daily_token_quota: null }).returning('id').executeTakeFirstOrThrow();
    userId = user.id;
  });
  afterAll(async () => {
    await backend.dispose();
  });

  const db = () => backend.database.db;

  async function clear(): Promise<void> {
    await db().deleteFrom('idempotency_keys').execute();
    await db().deleteFrom('upstream_failures').execute();
  }

  async function addKeys(prefix: string, count: number, createdAt: number): Promise<void> {
    const rows = Array.from({ length: count }, (_, i) => ({ user_id: userId, key: `${prefix}-${i}`, request_hash: 'h', message_id: crypto.randomUUID(), created_at: new Date(createdAt) }));
    await db().insertInto('idempotency_keys').values(rows).execute();
  }

  async function addFailures(count: number, at: number): Promise<void> {
    const rows = Array.from({ length: count }, () => ({ at: new Date(at), agent_id: 'a', position: 0, provider: 'openai', kind: 'status', error_code: 'UPSTREAM_ERROR', mid_answer: false }));
    await db().insertInto('upstream_failures').values(rows).execute();
  }

  async function remaining(): Promise<{ keys: string[]; failures: number }> {
    const keys = (await db().selectFrom('idempotency_keys').select('key').orderBy('key').execute()).map((r) => r.key);
    const failures = Number((await db().selectFrom('upstream_failures').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    return { keys, failures };
  }

  function sweepOn(handle: DatabaseHandle, options: { batchSize?: number; maxBatchesPerRun?: number } = {}): RetentionSweep {
    return new RetentionSweep({
      tasks: retentionTasks({
        idempotencyKeys: createIdempotencyStore(handle.db, TTL_SECONDS),
        failures: createFailureLog(handle.db, silent),
        upstreamFailuresRetentionDays: RETENTION_DAYS,
      }),
      logger: silent,
      intervalMs: 3_600_000,
      batchSize: options.batchSize ?? 100,
      maxBatchesPerRun: options.maxBatchesPerRun,
      now: () => NOW,
    });
  }

  it('deletes idempotency keys past their TTL and failed attempts past retention, and keeps the rest', async () => {
    await clear();
    await addKeys('expired', 3, NOW - TTL_SECONDS * 1000 - 1_000);
    await addKeys('fresh', 2, NOW - TTL_SECONDS * 1000 + 60_000);
    await addFailures(3, NOW - (RETENTION_DAYS + 1) * DAY_MS);
    await addFailures(2, NOW - (RETENTION_DAYS - 1) * DAY_MS);

    expect(await sweepOn(backend.database).sweepOnce()).toEqual({ idempotencyKeys: 3, upstreamFailures: 3 });
    expect(await remaining()).toEqual({ keys: ['fresh-0', 'fresh-1'], failures: 2 });
  });

  it('keeps failed attempts for ever with a retention of 0 days', async () => {
    await clear();
    await addFailures(2, NOW - 3_000 * DAY_MS);
    const tasks = retentionTasks({ idempotencyKeys: createIdempotencyStore(db(), TTL_SECONDS), failures: createFailureLog(db(), silent), upstreamFailuresRetentionDays: 0 });
    expect(tasks.map((t) => t.name)).toEqual(['idempotencyKeys']);
    expect(await new RetentionSweep({ tasks, logger: silent, intervalMs: 3_600_000, batchSize: 10, now: () => NOW }).sweepOnce()).toEqual({ idempotencyKeys: 0 });
    expect((await remaining()).failures).toBe(2);
  });

  it('bounds each DELETE by the batch size and each run by its batch count; a backlog drains over several runs', async () => {
    await clear();
    await addKeys('backlog', 25, NOW - TTL_SECONDS * 1000 - 1_000);
    const sweep = sweepOn(backend.database, { batchSize: 10, maxBatchesPerRun: 2 });
    expect((await sweep.sweepOnce()).idempotencyKeys).toBe(20);
    expect((await remaining()).keys).toHaveLength(5);
    expect((await sweep.sweepOnce()).idempotencyKeys).toBe(5);
    expect((await sweep.sweepOnce()).idempotencyKeys).toBe(0);
  });

  it('lets instances sweep at once: every expired row is deleted exactly once and nothing else', async () => {
    await clear();
    await addFailures(60, NOW - (RETENTION_DAYS + 2) * DAY_MS);
    await addFailures(5, NOW - DAY_MS);
    await addKeys('expired', 40, NOW - TTL_SECONDS * 1000 - 1_000);
    await addKeys('fresh', 3, NOW);
    // On PostgreSQL the second instance has its own pool, as another process would.
    const other = backend.databaseUrl ? await createDatabase({ url: backend.databaseUrl, poolMax: 4 }) : backend.database;
    try {
      const sweeps = [sweepOn(backend.database, { batchSize: 7, maxBatchesPerRun: 20 }), sweepOn(other, { batchSize: 7, maxBatchesPerRun: 20 }), sweepOn(other, { batchSize: 7, maxBatchesPerRun: 20 })];
      const results = await Promise.all(sweeps.map((s) => s.sweepOnce()));
      expect(results.reduce((sum, r) => sum + (r.upstreamFailures ?? 0), 0)).toBe(60);
      expect(results.reduce((sum, r) => sum + (r.idempotencyKeys ?? 0), 0)).toBe(40);
      expect(await remaining()).toEqual({ keys: ['fresh-0', 'fresh-1', 'fresh-2'], failures: 5 });
    } finally {
      if (other !== backend.database) await other.close();
    }
  });

  it('sweeps once at start and waits for a run in progress when stopped', async () => {
    await clear();
    await addKeys('at-start', 4, NOW - TTL_SECONDS * 1000 - 1_000);
    const sweep = sweepOn(backend.database);
    sweep.start();
    try {
      await eventually(async () => (await remaining()).keys.length === 0, 'the first sweep to delete the expired keys');
    } finally {
      await sweep.stop();
    }
    expect(await sweep.sweepOnce()).toEqual({});
  });
});

describe('retention sweep failures', () => {
  it('logs a failing task and still runs the others; the next run tries again', async () => {
    const lines: { level: number; msg: string; task?: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as typeof lines[number]) });
    let calls = 0;
    const broken: RetentionTask = {
      name: 'broken',
      deleteBatch: () => {
        calls++;
        return Promise.reject(new Error('connection terminated'));
      },
    };
    const fine: RetentionTask = { name: 'fine', deleteBatch: () => Promise.resolve(2) };
    const sweep = new RetentionSweep({ tasks: [broken, fine], logger, intervalMs: 3_600_000, batchSize: 10 });
    expect(await sweep.sweepOnce()).toEqual({ broken: 0, fine: 2 });
    expect(await sweep.sweepOnce()).toEqual({ broken: 0, fine: 2 });
    expect(calls).toBe(2);
    expect(lines.filter((l) => l.level === 40)).toEqual([
      expect.objectContaining({ msg: 'retention sweep failed', task: 'broken' }),
      expect.objectContaining({ msg: 'retention sweep failed', task: 'broken' }),
    ]);
  });
});

describe.each(await backendNames())('the app sweeps on %s', (name) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp(name, { IDEMPOTENCY_KEY_TTL_SECONDS: '60', UPSTREAM_FAILURES_RETENTION_DAYS: '1' });
    await login(t.app);
    // The sweep at start has found nothing; wait for it so the rows below meet the next run.
    await t.app.deps.retention.sweepOnce();
  });
  afterAll(async () => {
    await t.close();
  });

  it('deletes what the configuration says is past retention', async () => {
    const db = t.backend.database.db;
    const admin = await db.selectFrom('users').select('id').executeTakeFirstOrThrow();
    const now = Date.now();
    await db
      .insertInto('idempotency_keys')
      .values([
        { user_id: admin.id, key: 'old', request_hash: 'h', message_id: crypto.randomUUID(), created_at: new Date(now - 120_000) },
        { user_id: admin.id, key: 'new', request_hash: 'h', message_id: crypto.randomUUID() },
      ])
      .execute();
    const failure = { agent_id: 'a', position: 0, provider: 'openai', kind: 'status', error_code: 'UPSTREAM_ERROR', mid_answer: false };
    await db.insertInto('upstream_failures').values([{ ...failure, at: new Date(now - 2 * DAY_MS) }, failure]).execute();

    expect(await t.app.deps.retention.sweepOnce()).toEqual({ idempotencyKeys: 1, upstreamFailures: 1 });
    expect((await db.selectFrom('idempotency_keys').select('key').execute()).map((r) => r.key)).toEqual(['new']);
    expect(await db.selectFrom('upstream_failures').select('id').execute()).toHaveLength(1);
  });
});
