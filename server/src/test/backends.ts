import crypto from 'node:crypto';
import pg from 'pg';
import { createDatabase, type DatabaseHandle } from '../db/database.js';
import { MemoryState } from '../shared-state/memory-state.js';
import { RedisState } from '../shared-state/redis-state.js';
import type { SharedState } from '../shared-state/shared-state.js';

/**
 * The backends every data-layer test runs on: PGlite with in-process state
 * always, and real PostgreSQL with real Redis whenever they are reachable.
 * With LLMCHAT_REQUIRE_SERVICES=1 (set by .ci/run) an unreachable
 * PostgreSQL or Redis fails the run instead of being skipped.
 */

export const TEST_POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const REQUIRE = process.env.LLMCHAT_REQUIRE_SERVICES === '1';

export interface Backend {
  name: 'pglite+memory' | 'postgres+redis';
  database: DatabaseHandle;
  state: SharedState;
  /** Set when the backend is PostgreSQL: the URL of this test's own database. */
  databaseUrl?: string;
  redisUrl?: string;
  redisPrefix?: string;
  dispose(): Promise<void>;
}

async function servicesReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL, connectionTimeoutMillis: 2000 });
  let pgOk: boolean;
  try {
    await client.connect();
    await client.query('select 1');
    pgOk = true;
  } catch {
    pgOk = false;
  } finally {
    await client.end().catch(() => undefined);
  }
  let redisOk: boolean;
  const probe = new RedisState(TEST_REDIS_URL, `llmchat-probe:${crypto.randomUUID()}:`);
  try {
    await probe.ping();
    redisOk = true;
  } catch {
    redisOk = false;
  } finally {
    await probe.close();
  }
  if (REQUIRE && !(pgOk && redisOk)) {
    throw new Error(`LLMCHAT_REQUIRE_SERVICES=1 but PostgreSQL reachable=${pgOk}, Redis reachable=${redisOk} (${TEST_POSTGRES_URL}, ${TEST_REDIS_URL})`);
  }
  return pgOk && redisOk;
}

let reachable: Promise<boolean> | undefined;

/** Names of the backends this run covers. */
export async function backendNames(): Promise<Backend['name'][]> {
  reachable ??= servicesReachable();
  return (await reachable) ? ['pglite+memory', 'postgres+redis'] : ['pglite+memory'];
}

/** Creates a fresh, empty backend: its own PostgreSQL database and Redis key prefix. */
export async function createBackend(name: Backend['name']): Promise<Backend> {
  if (name === 'pglite+memory') {
    const database = await createDatabase({});
    const state = new MemoryState();
    return {
      name,
      database,
      state,
      async dispose() {
        await state.close();
        await database.close();
      },
    };
  }
  const dbName = `llmchat_test_${crypto.randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${dbName}`;
  const databaseUrl = url.toString();
  const database = await createDatabase({ url: databaseUrl, poolMax: 10 });
  const redisPrefix = `llmchat-test:${dbName}:`;
  const state = new RedisState(TEST_REDIS_URL, redisPrefix);
  return {
    name,
    database,
    state,
    databaseUrl,
    redisUrl: TEST_REDIS_URL,
    redisPrefix,
    async dispose() {
      await state.close();
      await database.close();
      const cleanup = new pg.Client({ connectionString: TEST_POSTGRES_URL });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await cleanup.end();
    },
  };
}
