import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../../db/migrate.js';
import { AppError } from '../../errors.js';
import { Channels } from '../../shared-state/shared-state.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { createAuditLog } from '../audit/audit-log.js';
import { verifyPassword } from '../auth/password.js';
import { createUsersService, INITIAL_ADMIN_PASSWORD_FILE, type UsersService } from './users-service.js';
import { emptyAuditLog } from '../../test/audit-reset.js';

const actor = { id: '00000000-0000-4000-8000-000000000001', username: 'test-admin' };

function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (line: string) => lines.push(line) });
  return { logger, lines };
}

describe.each(await backendNames())('users service on %s', (backendName) => {
  let backend: Backend;
  let dataDir: string;

  function service(options: { adminPassword?: string; logger?: Logger } = {}): UsersService {
    const logger = options.logger ?? pino({ level: 'silent' });
    return createUsersService({
      db: backend.database.db,
      state: backend.state,
      audit: createAuditLog({ db: backend.database.db, logger }),
      config: { adminUsername: 'root', adminPassword: options.adminPassword, dataDir, dailyTokenQuota: 0, monthlyTokenQuota: 0 },
      logger,
    });
  }

  async function admins() {
    return backend.database.db.selectFrom('users').selectAll().where('role', '=', 'admin').execute();
  }

  beforeAll(async () => {
    backend = await createBackend(backendName);
    await migrateToLatest(backend.database.db);
  });
  afterAll(async () => {
    await backend.dispose();
  });
  // Every test starts from an empty account table and an empty data directory.
  beforeEach(async () => {
    await backend.database.db.deleteFrom('users').execute();
    await emptyAuditLog(backend.database.db);
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmchat-users-'));
  });
  afterEach(() => {
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  describe('ensureFirstAdmin', () => {
    it('with no ADMIN_PASSWORD, writes a random password to a 0600 file and logs only the path, even when instances race', async () => {
      const { logger, lines } = capturingLogger();
      await Promise.all([service({ logger }), service({ logger }), service({ logger })].map((s) => s.ensureFirstAdmin()));

      const created = await admins();
      expect(created).toHaveLength(1);
      expect(created[0]?.username).toBe('root');
      expect(fs.readdirSync(dataDir)).toEqual([INITIAL_ADMIN_PASSWORD_FILE]);
      const file = path.join(dataDir, INITIAL_ADMIN_PASSWORD_FILE);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      const password = fs.readFileSync(file, 'utf8').trim();
      expect(password.length).toBeGreaterThanOrEqual(20);
      expect(await verifyPassword(created[0]?.password_hash ?? '', password)).toBe(true);

      const log = lines.join('');
      expect(log).toContain(file);
      expect(log).not.toContain(password);
      const audit = await backend.database.db.selectFrom('audit_log').selectAll().where('action', '=', 'user.first_admin').execute();
      expect(audit).toHaveLength(1);
      expect(JSON.stringify(audit)).not.toContain(password);
    });

    it('does nothing when an admin exists', async () => {
      await service().ensureFirstAdmin();
      const file = path.join(dataDir, INITIAL_ADMIN_PASSWORD_FILE);
      const first = fs.readFileSync(file, 'utf8');
      await service().ensureFirstAdmin();
      expect(fs.readFileSync(file, 'utf8')).toBe(first);
      expect(await admins()).toHaveLength(1);
    });

    it('uses ADMIN_PASSWORD when set and writes no file', async () => {
      const { logger, lines } = capturingLogger();
      await service({ adminPassword: 'configured-admin-password', logger }).ensureFirstAdmin();
      const [admin] = await admins();
      expect(await verifyPassword(admin?.password_hash ?? '', 'configured-admin-password')).toBe(true);
      expect(fs.readdirSync(dataDir)).toEqual([]);
      expect(lines.join('')).not.toContain('configured-admin-password');
    });

    it('holds the first admin to the admin policy even when config was bypassed, and creates nobody', async () => {
      await expect(service({ adminPassword: 'root-2024-root' }).ensureFirstAdmin()).rejects.toMatchObject({ code: 'PASSWORD_TOO_WEAK' });
      await expect(service({ adminPassword: 'qwertyuiop12' }).ensureFirstAdmin()).rejects.toMatchObject({ code: 'PASSWORD_TOO_WEAK' });
      expect(await admins()).toHaveLength(0);
    });

    it('leaves things alone when a non-admin already holds the name', async () => {
      await service().createAccount({ username: 'ROOT', password: 'plain-user-password' });
      await service().ensureFirstAdmin();
      expect(await admins()).toHaveLength(0);
      expect(fs.readdirSync(dataDir)).toEqual([]);
    });
  });

  describe('last admin', () => {
    it('two admins demoting each other at once: exactly one succeeds', async () => {
      const users = service();
      const a = await users.create(actor, { username: 'admin-a', password: 'admin-a-password', role: 'admin' });
      const b = await users.create(actor, { username: 'admin-b', password: 'admin-b-password', role: 'admin' });
      const results = await Promise.allSettled([
        users.setRole({ id: a.id, username: a.username }, b.id, 'user'),
        users.setRole({ id: b.id, username: b.username }, a.id, 'user'),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect((rejected?.reason as AppError).code).toBe('LAST_ADMIN');
      expect((await admins()).filter((u) => u.status === 'active')).toHaveLength(1);
    });

    it('disabling both admins at once leaves one active', async () => {
      const users = service();
      const a = await users.create(actor, { username: 'admin-c', password: 'admin-c-password', role: 'admin' });
      const b = await users.create(actor, { username: 'admin-d', password: 'admin-d-password', role: 'admin' });
      const results = await Promise.allSettled([users.disable(actor, a.id), users.disable(actor, b.id)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect((await admins()).filter((u) => u.status === 'active')).toHaveLength(1);
    });
  });

  it('disable publishes users-changed for other instances', async () => {
    const users = service();
    const user = await users.create(actor, { username: 'announced', password: 'announced-password' });
    let heard: (message: string) => void = () => undefined;
    const message = new Promise<string>((resolve) => (heard = resolve));
    const unsubscribe = await backend.state.subscribe(Channels.usersChanged, (m) => heard(m));
    await users.disable(actor, user.id);
    expect(JSON.parse(await message)).toEqual({ userId: user.id });
    await unsubscribe();
  });

  it('createAccount rejects a bad username even when called directly', async () => {
    await expect(service().createAccount({ username: 'bad name', password: 'some-password-1' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });
});
