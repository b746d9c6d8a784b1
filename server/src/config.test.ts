import { describe, expect, it } from 'vitest';
import { ConfigError, configTable, loadConfig } from './config.js';

describe('config', () => {
  it('starts on embedded defaults with no environment at all', () => {
    const config = loadConfig({});
    expect(config.port).toBe(3000);
    expect(config.databaseUrl).toBeUndefined();
    expect(config.redisUrl).toBeUndefined();
    expect(config.mockUpstream).toBe(true);
    expect(config.openRegistration).toBe(false);
    expect(config.adminPassword).toBeUndefined();
  });

  it('names every bad variable in one error', () => {
    try {
      loadConfig({ PORT: 'eighty', REDIS_URL: 'http://x', OPEN_REGISTRATION: 'maybe', ADMIN_PASSWORD: 'short' });
      expect.unreachable('bad config must throw');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const message = (err as ConfigError).message;
      for (const name of ['PORT', 'REDIS_URL', 'OPEN_REGISTRATION', 'ADMIN_PASSWORD']) expect(message).toContain(name);
      expect((err as ConfigError).problems).toHaveLength(4);
    }
  });

  it.each([
    ['shorter than 12 characters', { ADMIN_PASSWORD: 'Zq8#vN2kLp4' }, /ADMIN_PASSWORD is too weak: it must be at least 12 characters long for an admin/],
    ['one of the most common passwords', { ADMIN_PASSWORD: 'password1234' }, /ADMIN_PASSWORD is too weak: .*most commonly used/],
    ['a variant of ADMIN_USERNAME', { ADMIN_USERNAME: 'operator', ADMIN_PASSWORD: 'Operator-2024!' }, /ADMIN_PASSWORD is too weak: .*username/],
  ])('refuses an ADMIN_PASSWORD %s at start, saying why', (_label, env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('accepts a strong ADMIN_PASSWORD and bounds the per-account sign-in cap at 100', () => {
    expect(loadConfig({ ADMIN_PASSWORD: 'kettle-drum-river-9' }).adminPassword).toBe('kettle-drum-river-9');
    expect(loadConfig({}).loginFailuresPerAccountPerHour).toBe(100);
    expect(() => loadConfig({ LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR: '101' })).toThrow(/LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR must be between 1 and 100/);
  });

  it('validates the resilience settings and names each bad one', () => {
    const config = loadConfig({});
    expect(config.upstreamMaxAttempts).toBe(2);
    expect(config.healthDetailedAllow).toEqual(['127.0.0.1/32', '::1/128']);
    expect(loadConfig({ HEALTH_DETAILED_ALLOW: '' }).healthDetailedAllow).toEqual([]);
    expect(loadConfig({ HEALTH_DETAILED_ALLOW: '10.0.0.0/8, 192.168.1.7' }).healthDetailedAllow).toEqual(['10.0.0.0/8', '192.168.1.7']);
    try {
      loadConfig({ UPSTREAM_MAX_ATTEMPTS: '0', UPSTREAM_IDLE_TIMEOUT_MS: 'soon', BREAKER_FAILURE_THRESHOLD: '-1', SHED_HEAP_USED_PERCENT: '101', HEALTH_DETAILED_ALLOW: '10.0.0.0/33', IDEMPOTENCY_KEY_TTL_SECONDS: '1' });
      expect.unreachable('bad config must throw');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const names = (err as ConfigError).problems.map((p) => p.split(' ')[0]);
      expect(names).toEqual(['UPSTREAM_IDLE_TIMEOUT_MS', 'UPSTREAM_MAX_ATTEMPTS', 'BREAKER_FAILURE_THRESHOLD', 'SHED_HEAP_USED_PERCENT', 'HEALTH_DETAILED_ALLOW', 'IDEMPOTENCY_KEY_TTL_SECONDS']);
    }
  });

  it('validates the retention settings and names each bad one', () => {
    const config = loadConfig({});
    expect([config.upstreamFailuresRetentionDays, config.retentionSweepIntervalMs, config.retentionSweepBatchSize]).toEqual([30, 600_000, 1_000]);
    expect(loadConfig({ UPSTREAM_FAILURES_RETENTION_DAYS: '0' }).upstreamFailuresRetentionDays).toBe(0);
    try {
      loadConfig({ UPSTREAM_FAILURES_RETENTION_DAYS: '-1', RETENTION_SWEEP_INTERVAL_MS: 'hourly', RETENTION_SWEEP_BATCH_SIZE: '0' });
      expect.unreachable('bad config must throw');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual([
        'UPSTREAM_FAILURES_RETENTION_DAYS must be between 0 and 3650, got -1',
        'RETENTION_SWEEP_INTERVAL_MS must be an integer, got "hourly"',
        'RETENTION_SWEEP_BATCH_SIZE must be between 1 and 100000, got 0',
      ]);
    }
  });

  it('requires token and encryption secrets with a real database', () => {
    expect(() => loadConfig({ DATABASE_URL: 'postgres://u@h/db' })).toThrow(/JWT_SECRET[\s\S]*SECRETS_KEY/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://u@h/db', JWT_SECRET: 'x'.repeat(40), SECRETS_KEY: 'short' })).toThrow(/SECRETS_KEY must be at least 32/);
    const config = loadConfig({ DATABASE_URL: 'postgres://u@h/db', JWT_SECRET: 'x'.repeat(40), SECRETS_KEY: 'y'.repeat(40) });
    expect(config.mockUpstream).toBe(false);
  });

  it('takes a previous JWT secret only with the end of its grace period, and a maximum token age no shorter than the TTL', () => {
    const previous = 'p'.repeat(40);
    expect(() => loadConfig({ JWT_SECRET_PREVIOUS: previous })).toThrow(/JWT_SECRET_PREVIOUS_UNTIL is required when JWT_SECRET_PREVIOUS is set/);
    expect(() => loadConfig({ JWT_SECRET_PREVIOUS: previous, JWT_SECRET_PREVIOUS_UNTIL: 'tomorrow' })).toThrow(/JWT_SECRET_PREVIOUS_UNTIL must be an ISO 8601/);
    expect(() => loadConfig({ JWT_SECRET_PREVIOUS: previous, JWT_SECRET_PREVIOUS_UNTIL: '2026-12-06T12:00:00' })).toThrow(/with a zone/);
    expect(() => loadConfig({ JWT_SECRET_PREVIOUS_UNTIL: '2026-12-06T12:00:00Z' })).toThrow(/needs JWT_SECRET_PREVIOUS/);
    expect(() => loadConfig({ JWT_SECRET_PREVIOUS: 'short', JWT_SECRET_PREVIOUS_UNTIL: '2026-12-06T12:00:00Z' })).toThrow(/JWT_SECRET_PREVIOUS must be at least 32/);
    expect(() => loadConfig({ SECRETS_KEY_PREVIOUS: 'short' })).toThrow(/SECRETS_KEY_PREVIOUS must be at least 32/);
    const config = loadConfig({ JWT_SECRET_PREVIOUS: previous, JWT_SECRET_PREVIOUS_UNTIL: '2026-12-06T12:00:00Z' });
    expect(config.jwtSecretPreviousUntil?.toISOString()).toBe('2026-12-06T12:00:00.000Z');
    expect(loadConfig({ ACCESS_TOKEN_TTL: '600' }).accessTokenMaxAgeSeconds).toBe(600);
    expect(() => loadConfig({ ACCESS_TOKEN_TTL: '600', ACCESS_TOKEN_MAX_AGE: '300' })).toThrow(/ACCESS_TOKEN_MAX_AGE must be at least ACCESS_TOKEN_TTL \(600\)/);
    expect(loadConfig({}).apiKeyDefaultExpiryDays).toBe(90);
  });

  it('accepts the Sentinel form of REDIS_URL and refuses a read URL without a writer', () => {
    expect(loadConfig({ REDIS_URL: 'redis-sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster' }).redisUrl).toContain('sentinel');
    expect(() => loadConfig({ REDIS_URL: 'redis-sentinel://10.0.0.1:26379' })).toThrow(/REDIS_URL/);
    expect(() => loadConfig({ DATABASE_READ_URL: 'postgres://r@h/db' })).toThrow(/DATABASE_READ_URL needs DATABASE_URL/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://u@h/db' })).toThrow(/DATABASE_URL must use the postgres/);
  });

  it('runs several workers only on PostgreSQL and Redis, without the in-process simulated upstream', () => {
    const real = { DATABASE_URL: 'postgres://u@h/db', REDIS_URL: 'redis://h:6379', JWT_SECRET: 'x'.repeat(40), SECRETS_KEY: 'y'.repeat(40) };
    expect(loadConfig({}).workers).toBe(1);
    expect(loadConfig({ ...real, WORKERS: '4' }).workers).toBe(4);
    expect(() => loadConfig({ WORKERS: '2' })).toThrow(/WORKERS above 1 needs DATABASE_URL and REDIS_URL/);
    expect(() => loadConfig({ DATABASE_URL: real.DATABASE_URL, JWT_SECRET: real.JWT_SECRET, SECRETS_KEY: real.SECRETS_KEY, WORKERS: '2' })).toThrow(/WORKERS above 1 needs/);
    expect(() => loadConfig({ ...real, WORKERS: '2', MOCK_UPSTREAM: 'true' })).toThrow(/WORKERS above 1 cannot run with MOCK_UPSTREAM=true/);
    expect(() => loadConfig({ ...real, WORKERS: '0' })).toThrow(/WORKERS must be between 1 and 256/);
    expect(() => loadConfig({ ...real, WORKERS: 'two' })).toThrow(/WORKERS must be an integer/);
    // A bad MOCK_UPSTREAM is reported under its own name, not as a WORKERS problem.
    expect(() => loadConfig({ ...real, WORKERS: '2', MOCK_UPSTREAM: 'perhaps' })).toThrow(/^(?![\s\S]*WORKERS)[\s\S]*MOCK_UPSTREAM must be true or false/);
  });

  it('refuses COOKIE_SECURE=false in production unless COOKIE_INSECURE_FORCE says so', () => {
    expect(loadConfig({ NODE_ENV: 'production' }).cookieSecure).toBe(true);
    expect(() => loadConfig({ NODE_ENV: 'production', COOKIE_SECURE: 'false' })).toThrow(/COOKIE_SECURE is false with NODE_ENV=production[\s\S]*COOKIE_INSECURE_FORCE=true/);
    expect(loadConfig({ NODE_ENV: 'production', COOKIE_SECURE: 'false', COOKIE_INSECURE_FORCE: 'true' }).cookieSecure).toBe(false);
    expect(loadConfig({ NODE_ENV: 'development', COOKIE_SECURE: 'false' }).cookieSecure).toBe(false);
    expect(() => loadConfig({ COOKIE_INSECURE_FORCE: 'maybe' })).toThrow(/COOKIE_INSECURE_FORCE must be true or false/);
  });

  it('documents every variable in the README table', () => {
    const table = configTable();
    for (const name of ['PORT', 'DATABASE_URL', 'DATABASE_READ_URL', 'REDIS_URL', 'JWT_SECRET', 'ADMIN_USERNAME', 'ADMIN_PASSWORD', 'AGENTS_CONFIG_PATH', 'OPEN_REGISTRATION']) {
      expect(table).toContain(`\`${name}\``);
    }
  });
});

describe('the README', () => {
  it('lists every configuration variable in its table', async () => {
    const fs = await import('node:fs');
    const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const line of configTable().split('\n').slice(2)) {
      const name = /^\| `([A-Z0-9_]+)`/.exec(line)?.[1];
      expect(name, line).toBeDefined();
      expect(readme).toContain(`| \`${name}\` |`);
    }
  });
});
