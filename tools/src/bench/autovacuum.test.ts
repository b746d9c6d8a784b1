import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { autovacuumAction, startAutovacuumStandIn } from './autovacuum.js';
import { POSTGRES_ADMIN_URL, servicesReachable } from './stack.js';

describe('autovacuumAction: autovacuum\'s default thresholds', () => {
  it('vacuums past 50 + 20% dead rows, analyzes past 50 + 10% changes, else leaves the table alone', () => {
    expect(autovacuumAction({ table: 't', deadRows: 51, changedSinceAnalyze: 0, rows: -1 })).toBe('vacuum');
    expect(autovacuumAction({ table: 't', deadRows: 250, changedSinceAnalyze: 0, rows: 1000 })).toBe(undefined);
    expect(autovacuumAction({ table: 't', deadRows: 251, changedSinceAnalyze: 0, rows: 1000 })).toBe('vacuum');
    expect(autovacuumAction({ table: 't', deadRows: 0, changedSinceAnalyze: 151, rows: 1000 })).toBe('analyze');
    expect(autovacuumAction({ table: 't', deadRows: 0, changedSinceAnalyze: 150, rows: 1000 })).toBe(undefined);
    // Never analyzed (reltuples -1): 50 changes are enough.
    expect(autovacuumAction({ table: 't', deadRows: 0, changedSinceAnalyze: 51, rows: -1 })).toBe('analyze');
  });
});

const { postgres } = await servicesReachable();

describe.skipIf(!postgres)('startAutovacuumStandIn on PostgreSQL', () => {
  const name = `llmchat_autovacuum_test_${process.pid}`;
  let url = '';
  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(POSTGRES_ADMIN_URL);
    u.pathname = `/${name}`;
    url = u.toString();
  });
  afterAll(async () => {
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });

  it('analyzes a table that changed and vacuums one with dead rows, then stops', async () => {
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      // Autovacuum, where it runs, leaves these two to the stand-in.
      await db.query('CREATE TABLE fresh (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)');
      await db.query('CREATE TABLE churned (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)');
      await db.query(`INSERT INTO fresh SELECT g, 'x' FROM generate_series(1, 500) AS g`);
      await db.query(`INSERT INTO churned SELECT g, 'x' FROM generate_series(1, 500) AS g`);
      await db.query(`DELETE FROM churned WHERE id <= 400`);
      const standIn = await startAutovacuumStandIn(url, 50);
      const stats = async () =>
        (await db.query<{ relname: string; analyzed: boolean; vacuumed: boolean; reltuples: number }>(
          `SELECT s.relname, s.last_analyze IS NOT NULL AS analyzed, s.last_vacuum IS NOT NULL AS vacuumed, c.reltuples
           FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid ORDER BY s.relname`,
        )).rows;
      let seen = await stats();
      for (let i = 0; i < 200 && !seen.every((t) => t.analyzed); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        seen = await stats();
      }
      await standIn.stop();
      const churned = seen.find((t) => t.relname === 'churned');
      const fresh = seen.find((t) => t.relname === 'fresh');
      expect(churned).toMatchObject({ analyzed: true, vacuumed: true, reltuples: 100 });
      expect(fresh).toMatchObject({ analyzed: true, reltuples: 500 });
      expect(standIn.counts().vacuums).toBeGreaterThanOrEqual(1);
      expect(standIn.counts().vacuums + standIn.counts().analyzes).toBeGreaterThanOrEqual(2);
    } finally {
      await db.end();
    }
  });
});
