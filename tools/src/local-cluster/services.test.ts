import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { postgresBinDir, redisInline, redisServerPath, startPostgres, startRedis, type DisposableService } from './services.js';

async function query(url: string, text: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  await client.connect();
  try {
    return (await client.query(text)).rows as unknown[];
  } finally {
    await client.end();
  }
}

describe.skipIf(postgresBinDir() === undefined)('a throw-away PostgreSQL', () => {
  let postgres: DisposableService | undefined;
  afterAll(async () => {
    await postgres?.dispose();
  });

  it('starts on its own port, keeps its data across a crash and a clean stop, and refuses connections while down', async () => {
    postgres = await startPostgres();
    expect(postgres.port).not.toBe(5432);
    await query(postgres.url, 'CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)');

    await postgres.crash();
    expect(postgres.running).toBe(false);
    await expect(query(postgres.url, 'SELECT 1')).rejects.toThrow(/ECONNREFUSED|connect/);

    await postgres.start();
    expect(await query(postgres.url, 'SELECT v FROM kept')).toEqual([{ v: 42 }]);

    await postgres.stop();
    await expect(query(postgres.url, 'SELECT 1')).rejects.toThrow();
    await postgres.start();
    expect(await query(postgres.url, 'SELECT v FROM kept')).toEqual([{ v: 42 }]);
  });
});

describe.skipIf(redisServerPath() === undefined)('a throw-away Redis', () => {
  let redis: DisposableService | undefined;
  afterAll(async () => {
    await redis?.dispose();
  });

  it('starts on its own port, answers, refuses while down and comes back empty after a crash', async () => {
    redis = await startRedis();
    expect(redis.port).not.toBe(6379);
    expect(await redisInline(redis.port, 'SET k v')).toBe('+OK');
    expect(await redisInline(redis.port, 'GET k')).toBe('$1');

    await redis.crash();
    await expect(redisInline(redis.port, 'PING')).rejects.toThrow(/ECONNREFUSED/);

    await redis.start();
    expect(await redisInline(redis.port, 'PING')).toBe('+PONG');
    // In memory only: a crash loses what it held, as a Redis without persistence does.
    expect(await redisInline(redis.port, 'GET k')).toBe('$-1');
  });
});
