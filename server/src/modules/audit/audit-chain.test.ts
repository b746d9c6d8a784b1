import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type DatabaseHandle } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { canonicalEntry, entryHash, GENESIS_HASH, verifyAuditChain } from './audit-chain.js';
import { createAuditLog } from './audit-log.js';

/**
 * The audit log as an attacker with write access to the database sees it:
 * the app never rewrites it, the table refuses to be rewritten, and what a
 * database owner changes anyway (a row modified, modified and re-hashed,
 * deleted, cut from the end) is found by `verifyAuditChain` and by the
 * `npm run audit:verify` command, which name the entry.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const verifyCli = path.join(here, 'verify-cli.ts');
const quiet = pino({ level: 'silent' });

/** What the attacker does first: lift the append-only guard, as the table's owner can. */
async function tamper(database: DatabaseHandle, statement: ReturnType<typeof sql>): Promise<void> {
  await database.db.transaction().execute(async (trx) => {
    await sql`ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only`.execute(trx);
    await statement.execute(trx);
    await sql`ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only`.execute(trx);
  });
}

async function ids(database: DatabaseHandle): Promise<number[]> {
  const { rows } = await sql<{ id: number }>`SELECT id FROM audit_log ORDER BY chain_seq`.execute(database.db);
  return rows.map((r) => Number(r.id));
}

/** Runs the verify command (the source of `npm run audit:verify`) against a database. */
function runVerify(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', verifyCli], {
      env: { PATH: process.env.PATH, LOG_LEVEL: 'silent', JWT_SECRET: 'j'.repeat(40), SECRETS_KEY: 's'.repeat(40), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => resolve({ code, out }));
  });
}

describe.each(await backendNames())('the audit chain on %s', (backendName) => {
  describe('written by the running app', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await buildTestApp(backendName);
      const admin = await login(t.app);
      await createUserAndLogin(t.app, admin, 'chained');
      await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'chained', password: 'wrong-password' } });
      await t.app.inject({ method: 'POST', url: '/api/admin/users', headers: bearer(admin), payload: { username: 'chained-2', password: 'user-password-123', role: 'user' } });
    });
    afterAll(async () => {
      await t.close();
    });

    it('links every entry to the one before it, and the head to the last', async () => {
      const report = await verifyAuditChain(t.backend.database.db);
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
      expect(report.entries).toBeGreaterThanOrEqual(5);
      expect(report.head.seq).toBe(report.entries);
      const { rows } = await sql<{ chain_seq: number; prev_hash: string; hash: string; canonical: string }>`
        SELECT a.chain_seq, a.prev_hash, a.hash, ${canonicalEntry('a')} AS canonical FROM audit_log a ORDER BY a.chain_seq
      `.execute(t.backend.database.db);
      expect(rows[0]?.prev_hash).toBe(GENESIS_HASH);
      for (const [i, row] of rows.entries()) {
        expect(Number(row.chain_seq)).toBe(i + 1);
        expect(row.hash).toBe(entryHash(row.canonical));
        if (i > 0) expect(row.prev_hash).toBe(rows[i - 1]?.hash);
      }
      expect(report.head.hash).toBe(rows.at(-1)?.hash);
    });

    it('refuses UPDATE, DELETE and TRUNCATE of entries, whoever asks', async () => {
      const { db } = t.backend.database;
      const before = await ids(t.backend.database);
      await expect(sql`UPDATE audit_log SET action = 'nothing.happened'`.execute(db)).rejects.toThrow(/append-only/);
      await expect(sql`DELETE FROM audit_log`.execute(db)).rejects.toThrow(/append-only/);
      await expect(sql`TRUNCATE audit_log`.execute(db)).rejects.toThrow(/append-only/);
      expect(await ids(t.backend.database)).toEqual(before);
      expect((await verifyAuditChain(db)).ok).toBe(true);
    });
  });

  describe('written by several instances at once', () => {
    let backend: Backend;
    let second: DatabaseHandle | undefined;
    beforeAll(async () => {
      backend = await createBackend(backendName);
      await migrateToLatest(backend.database.db);
      // On PostgreSQL a second instance has its own pool; PGlite belongs to one process.
      if (backend.databaseUrl) second = await createDatabase({ url: backend.databaseUrl, poolMax: 10 });
    });
    afterAll(async () => {
      await second?.close();
      await backend.dispose();
    });

    it('never forks the chain: 60 concurrent entries take 60 consecutive positions', async () => {
      const one = createAuditLog({ db: backend.database.db, logger: quiet });
      const other = createAuditLog({ db: (second ?? backend.database).db, logger: quiet });
      await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? one : other).record({ action: 'test.concurrent', detail: { i, text: '中文 ✓' } })));
      const report = await verifyAuditChain(backend.database.db);
      expect(report.problems).toEqual([]);
      expect(report.entries).toBe(60);
      expect(report.head.seq).toBe(60);
      const { rows } = await sql<{ n: number; hashes: number }>`SELECT count(*)::int AS n, count(DISTINCT prev_hash)::int AS hashes FROM audit_log`.execute(backend.database.db);
      expect(rows[0]).toEqual({ n: 60, hashes: 60 });
    });
  });

  describe('tampered with by the database owner', () => {
    let backend: Backend;
    let entryIds: number[];
    beforeAll(async () => {
      backend = await createBackend(backendName);
      await migrateToLatest(backend.database.db);
    });
    afterAll(async () => {
      await backend.dispose();
    });

    /** A fresh chain of 8 entries for each attack. */
    async function freshChain(): Promise<void> {
      await tamper(backend.database, sql`DELETE FROM audit_log`);
      await sql`UPDATE audit_chain_head SET seq = 0, hash = ${GENESIS_HASH}`.execute(backend.database.db);
      const audit = createAuditLog({ db: backend.database.db, logger: quiet });
      for (let i = 0; i < 8; i++) await audit.record({ action: 'user.role', actorUsername: 'admin', targetId: `user-${i}`, detail: { role: 'user' } });
      entryIds = await ids(backend.database);
      expect((await verifyAuditChain(backend.database.db)).ok).toBe(true);
    }

    it('finds a modified entry and names it', async () => {
      await freshChain();
      const victim = entryIds[3] as number;
      await tamper(backend.database, sql`UPDATE audit_log SET detail = '{"role":"admin"}' WHERE id = ${victim}`);
      const report = await verifyAuditChain(backend.database.db);
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'modified', id: victim, seq: 4 })]);
    });

    it('finds an entry modified and re-hashed, by the broken link of the next one', async () => {
      await freshChain();
      const victim = entryIds[5] as number;
      await tamper(backend.database, sql`UPDATE audit_log SET action = 'user.update' WHERE id = ${victim}`);
      await tamper(backend.database, sql`UPDATE audit_log a SET hash = encode(sha256(convert_to(${canonicalEntry('a')}, 'UTF8')), 'hex') WHERE a.id = ${victim}`);
      const report = await verifyAuditChain(backend.database.db);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'relinked', id: entryIds[6], seq: 7 })]);
    });

    it('finds a deleted entry and says between which entries it was', async () => {
      await freshChain();
      await tamper(backend.database, sql`DELETE FROM audit_log WHERE id = ${entryIds[2]}`);
      const report = await verifyAuditChain(backend.database.db);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'deleted', id: entryIds[3], seq: 4 })]);
      expect(report.problems[0]?.message).toBe(`entry 3 is missing (deleted) between id ${entryIds[1]} and id ${entryIds[3]}`);
    });

    it('finds entries cut from the end, against the head', async () => {
      await freshChain();
      await tamper(backend.database, sql`DELETE FROM audit_log WHERE id >= ${entryIds[6]}`);
      const report = await verifyAuditChain(backend.database.db);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'truncated', seq: 7 })]);
      expect(report.problems[0]?.message).toContain('entries 7–8 are missing');
    });

    it('`npm run audit:verify` passes an intact chain and names the modified and the deleted entry', async () => {
      // PostgreSQL by DATABASE_URL; PGlite by a data directory the command opens itself, as an operator runs it.
      // Two CLI runs (each compiles the server's imports with tsx and opens the database) take well over the
      // default 30 s on a loaded CI machine: a generous bound, not a timing.
      let env: Record<string, string>;
      let database: DatabaseHandle;
      let dataDir: string | undefined;
      await freshChain();
      if (backend.databaseUrl) {
        env = { DATABASE_URL: backend.databaseUrl };
        database = backend.database;
      } else {
        dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmchat-audit-verify-'));
        env = { DATA_DIR: dataDir };
        database = await createDatabase({ pgliteDir: `${dataDir}/pglite` });
        await migrateToLatest(database.db);
      }
      try {
        const audit = createAuditLog({ db: database.db, logger: quiet });
        for (let i = 0; i < 6; i++) await audit.record({ action: 'user.disable', actorUsername: 'admin', targetId: `cli-${i}` });
        const all = await ids(database);
        const release = async () => {
          if (dataDir) await database.close();
        };
        const reopen = async () => {
          if (dataDir) database = await createDatabase({ pgliteDir: `${dataDir}/pglite` });
        };

        await release();
        const intact = await runVerify(env);
        expect(intact.out).toMatch(/audit log intact: \d+ entries/);
        expect(intact.code).toBe(0);

        await reopen();
        const modified = all.at(-4) as number;
        const deleted = all.at(-2) as number;
        await tamper(database, sql`UPDATE audit_log SET target_id = 'someone-else' WHERE id = ${modified}`);
        await tamper(database, sql`DELETE FROM audit_log WHERE id = ${deleted}`);
        await release();
        const broken = await runVerify(env);
        expect(broken.code).toBe(1);
        expect(broken.out).toContain('audit log TAMPERED');
        expect(broken.out).toMatch(new RegExp(`modified: entry \\d+ \\(id ${modified}\\) was modified`));
        expect(broken.out).toMatch(new RegExp(`deleted: entry \\d+ is missing \\(deleted\\) between id ${all.at(-3)} and id ${all.at(-1)}`));
        await reopen();
      } finally {
        if (dataDir) {
          await database.close();
          fs.rmSync(dataDir, { recursive: true, force: true });
        }
      }
    }, 120_000);
  });
});
