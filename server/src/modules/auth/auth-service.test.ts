import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, QueryResult, RootOperationNode, UnknownRow } from 'kysely';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../config.js';
import { migrateToLatest } from '../../db/migrate.js';
import { AppError } from '../../errors.js';
import { RedisState } from '../../shared-state/redis-state.js';
import { Channels, type SharedState } from '../../shared-state/shared-state.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { createAuditLog } from '../audit/audit-log.js';
import { createUsersService, type UsersService } from '../users/users-service.js';
import { createAuthService, type AuthService } from './auth-service.js';

/** Counts the statements a Kysely instance sends. */
class StatementCounter implements KyselyPlugin {
  count = 0;
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    this.count++;
    return args.node;
  }
  transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return Promise.resolve(args.result);
  }
}

const config = {
  accessTokenTtlSeconds: 900,
  refreshTokenTtlSeconds: 86_400,
  loginRateLimitPerMinute: 0,
  dailyTokenQuota: 0,
  monthlyTokenQuota: 0,
  loginFailuresPerAccountPerHour: 100,
  loginBackoffMaxSeconds: 900,
  openRegistration: false,
  adminUsername: 'admin',
  adminPassword: 'admin-password-for-tests',
  dataDir: '/tmp/llmchat-auth-service-test',
} satisfies Partial<Config>;

const logger = pino({ level: 'silent' });
const actor = { id: '00000000-0000-4000-8000-000000000001', username: 'test-admin' };

interface Instance {
  state: SharedState;
  users: UsersService;
  auth: AuthService;
  counter: StatementCounter;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    return err instanceof AppError ? err.code : `unexpected ${String(err)}`;
  }
}

/** Resolves once `state` has delivered a message on users-changed to this (later) subscriber. */
function nextUsersChanged(state: SharedState, match: (message: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    state
      .subscribe(Channels.usersChanged, (message) => {
        if (match(message)) resolve();
      })
      .catch(reject);
  });
}

describe.each(await backendNames())('auth service across instances on %s', (backendName) => {
  let backend: Backend;
  let a: Instance;
  let b: Instance;
  const extraStates: SharedState[] = [];

  function instance(state: SharedState): Instance {
    const counter = new StatementCounter();
    const db = backend.database.db.withPlugin(counter);
    const audit = createAuditLog({ db, logger });
    const users = createUsersService({ db, state, audit, config, logger });
    // A cache that never expires on its own, so only the users-changed notice can explain a rejection.
    const auth = createAuthService({ db, state, audit, users, config, secrets: { jwtSecret: 'service-test-secret-that-is-long-enough-0123' }, logger, statusCacheTtlMs: 3_600_000 });
    return { state, users, auth, counter };
  }

  /** A second instance has its own connection to the shared state, as a second process would. */
  function secondState(): SharedState {
    if (backend.name === 'pglite+memory') return backend.state;
    const state = new RedisState(backend.redisUrl ?? '', backend.redisPrefix ?? '');
    extraStates.push(state);
    return state;
  }

  /**
   * Proves B's subscription is live before the test relies on it: a Redis
   * SUBSCRIBE completes asynchronously, so publish until B hears one.
   */
  async function warmUp(instanceB: Instance): Promise<void> {
    let heard = false;
    const stop = await instanceB.state.subscribe(Channels.usersChanged, (m) => {
      if (m.includes('warm-up')) heard = true;
    });
    while (!heard) {
      await a.state.publish(Channels.usersChanged, JSON.stringify({ userId: 'warm-up' }));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await stop();
  }

  beforeAll(async () => {
    backend = await createBackend(backendName);
    await migrateToLatest(backend.database.db);
  });
  afterAll(async () => {
    await backend.dispose();
  });

  // Two fresh instances per test, over one database and one shared state.
  beforeEach(async () => {
    a = instance(backend.state);
    b = instance(secondState());
    await a.users.ensureFirstAdmin();
    await warmUp(b);
  });
  afterEach(async () => {
    await a.auth.close();
    await b.auth.close();
    for (const s of extraStates.splice(0)) await s.close();
  });

  async function userWithToken(username: string): Promise<{ id: string; token: string }> {
    const user = await a.users.create(actor, { username, password: `${username}-password` });
    const session = await b.auth.login({ username, password: `${username}-password` }, { ip: '127.0.0.1' });
    return { id: user.id, token: session.accessToken };
  }

  it('authenticates from the cache: no statement per request once the status is known', async () => {
    const { token, id } = await userWithToken('cached');
    const before = b.counter.count;
    const first = await b.auth.authenticate(token);
    expect(first).toEqual({ userId: id, username: 'cached', role: 'user', via: 'token', scopes: ['chat', 'admin', 'keys'] });
    expect(b.counter.count - before).toBe(1);
    for (let i = 0; i < 20; i++) await b.auth.authenticate(token);
    expect(b.counter.count - before).toBe(1);
  });

  it('a user disabled on instance A is rejected by instance B, which had them cached', async () => {
    const { token, id } = await userWithToken('to-disable');
    expect((await b.auth.authenticate(token)).userId).toBe(id);
    const heard = nextUsersChanged(b.state, (m) => m.includes(id));
    await a.users.disable(actor, id);
    await heard;
    expect(await codeOf(b.auth.authenticate(token))).toBe('ACCOUNT_DISABLED');
    // And back.
    const heardAgain = nextUsersChanged(b.state, (m) => m.includes(id));
    await a.users.enable(actor, id);
    await heardAgain;
    expect((await b.auth.authenticate(token)).userId).toBe(id);
  });

  it('a role change on instance A applies on instance B', async () => {
    const { token, id } = await userWithToken('to-promote');
    expect((await b.auth.authenticate(token)).role).toBe('user');
    const heard = nextUsersChanged(b.state, (m) => m.includes(id));
    await a.users.setRole(actor, id, 'admin');
    await heard;
    expect((await b.auth.authenticate(token)).role).toBe('admin');
  });

  it('on the instance that made the change, the rejection is immediate', async () => {
    const { token, id } = await userWithToken('local-disable');
    await b.auth.authenticate(token);
    await b.users.disable(actor, id);
    expect(await codeOf(b.auth.authenticate(token))).toBe('ACCOUNT_DISABLED');
  });

  it('of two concurrent refreshes with one token, exactly one wins and the family is revoked', async () => {
    await a.users.create(actor, { username: 'racer', password: 'racer-password' });
    // Several rounds, since the interleaving differs from run to run.
    for (let round = 0; round < 5; round++) {
      const session = await a.auth.login({ username: 'racer', password: 'racer-password' }, {});
      const results = await Promise.allSettled([a.auth.refresh(session.refreshToken, {}), b.auth.refresh(session.refreshToken, {})]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect((lost[0]?.reason as AppError).code).toBe('REFRESH_TOKEN_REUSED');
      const winner = (won[0] as PromiseFulfilledResult<{ refreshToken: string }>).value;
      expect(await codeOf(a.auth.refresh(winner.refreshToken, {}))).toBe('REFRESH_TOKEN_INVALID');
    }
  });

  it('login, refresh and logout keep one family per sign-in', async () => {
    await a.users.create(actor, { username: 'family', password: 'family-password' });
    const first = await a.auth.login({ username: 'family', password: 'family-password' }, { ip: '10.0.0.1', userAgent: 'vitest' });
    const second = await b.auth.refresh(first.refreshToken, { ip: '10.0.0.2' });
    const rows = await backend.database.db.selectFrom('refresh_tokens').selectAll().where('user_id', '=', first.user.id).orderBy('created_at').execute();
    expect(rows.map((r) => r.family_id)).toEqual([rows[0]?.family_id, rows[0]?.family_id]);
    expect(rows[0]).toMatchObject({ ip: '10.0.0.1', user_agent: 'vitest' });
    await a.auth.logout(second.refreshToken, {});
    expect(await codeOf(a.auth.refresh(second.refreshToken, {}))).toBe('REFRESH_TOKEN_INVALID');
  });
});
