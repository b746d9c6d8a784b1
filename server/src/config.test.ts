import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, SECRET_VARIABLES, configTable, envExample, loadConfig } from './config.js';
import { tracesUrl } from './tracing/tracing.js';

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

  it('takes the instance lease in seconds to the millisecond, and refuses what is not', () => {
    expect(loadConfig({}).instanceHeartbeatTtlSeconds).toBe(1.2);
    expect(loadConfig({ INSTANCE_HEARTBEAT_TTL_SECONDS: '5' }).instanceHeartbeatTtlSeconds).toBe(5);
    expect(loadConfig({ INSTANCE_HEARTBEAT_TTL_SECONDS: '0.75' }).instanceHeartbeatTtlSeconds).toBe(0.75);
    expect(() => loadConfig({ INSTANCE_HEARTBEAT_TTL_SECONDS: '0.1' })).toThrow(/INSTANCE_HEARTBEAT_TTL_SECONDS must be between 0.5 and 300/);
    expect(() => loadConfig({ INSTANCE_HEARTBEAT_TTL_SECONDS: '1.2345' })).toThrow(/INSTANCE_HEARTBEAT_TTL_SECONDS must be a number like 1.5/);
    expect(() => loadConfig({ INSTANCE_HEARTBEAT_TTL_SECONDS: '1s' })).toThrow(/INSTANCE_HEARTBEAT_TTL_SECONDS must be a number like 1.5/);
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

  it('serves metrics on METRICS_PORT only when set, and never on PORT itself', () => {
    expect(loadConfig({}).metricsPort).toBeUndefined();
    expect(loadConfig({ METRICS_PORT: '9464' }).metricsPort).toBe(9464);
    expect(() => loadConfig({ METRICS_PORT: '3000' })).toThrow(/METRICS_PORT must differ from PORT \(3000\)/);
    expect(() => loadConfig({ PORT: '8080', METRICS_PORT: '8080' })).toThrow(/METRICS_PORT must differ from PORT/);
    expect(() => loadConfig({ METRICS_PORT: 'prometheus' })).toThrow(/METRICS_PORT must be an integer/);
    expect(() => loadConfig({ METRICS_PORT: '70000' })).toThrow(/METRICS_PORT must be between 1 and 65535/);
  });

  it('turns tracing on only with an OTLP endpoint, and reads the standard sampler variables', () => {
    expect(tracesUrl(loadConfig({}))).toBeUndefined();
    expect(tracesUrl(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }))).toBe('http://collector:4318/v1/traces');
    expect(tracesUrl(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://tempo/otlp/v1/traces' }))).toBe('https://tempo/otlp/v1/traces');
    expect(tracesUrl(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }))).toBeUndefined();
    const sampled = loadConfig({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' });
    expect([sampled.tracesSampler, sampled.tracesSamplerArg]).toEqual(['parentbased_traceidratio', 0.1]);
    expect(loadConfig({}).tracesSampler).toBe('parentbased_always_on');
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER: 'jaeger_remote' })).toThrow(/OTEL_TRACES_SAMPLER must be one of always_on/);
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER_ARG: '1.5' })).toThrow(/OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1/);
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER_ARG: 'half' })).toThrow(/OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT must/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL must be http\/json/);
    expect(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).otlpProtocol).toBe('http/json');
  });

  it('takes LOG_FORMAT json or ecs', () => {
    expect(loadConfig({}).logFormat).toBe('json');
    expect(loadConfig({ LOG_FORMAT: 'ECS' }).logFormat).toBe('ecs');
    expect(() => loadConfig({ LOG_FORMAT: 'logfmt' })).toThrow(/LOG_FORMAT must be json or ecs/);
  });

  it('documents every variable in the README table', () => {
    const table = configTable();
    for (const name of ['PORT', 'DATABASE_URL', 'DATABASE_READ_URL', 'REDIS_URL', 'JWT_SECRET', 'ADMIN_USERNAME', 'ADMIN_PASSWORD', 'AGENTS_CONFIG_PATH', 'OPEN_REGISTRATION']) {
      expect(table).toContain(`\`${name}\``);
    }
  });
});

describe('secrets from files (NAME_FILE)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: string): string => {
    const p = path.join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  const jwt = 'j'.repeat(40);
  const key = 'k'.repeat(40);

  it('reads every secret from its file, trailing line break trimmed', () => {
    const config = loadConfig({
      DATABASE_URL_FILE: file('database-url', 'postgres://llmchat:s3cret@db:5432/llmchat\n'),
      DATABASE_READ_URL_FILE: file('database-read-url', 'postgres://llmchat:s3cret@replica:5432/llmchat\r\n'),
      REDIS_URL_FILE: file('redis-url', 'redis://:pw@redis:6379/0\n'),
      JWT_SECRET_FILE: file('jwt', `${jwt}\n`),
      JWT_SECRET_PREVIOUS_FILE: file('jwt-previous', 'p'.repeat(40)),
      JWT_SECRET_PREVIOUS_UNTIL: '2026-12-06T12:00:00Z',
      SECRETS_KEY_FILE: file('key', `${key}\n`),
      SECRETS_KEY_PREVIOUS_FILE: file('key-previous', `${'q'.repeat(40)}\n`),
      ADMIN_PASSWORD_FILE: file('admin', 'kettle-drum-river-9\n'),
    });
    expect(config.databaseUrl).toBe('postgres://llmchat:s3cret@db:5432/llmchat');
    expect(config.databaseReadUrl).toBe('postgres://llmchat:s3cret@replica:5432/llmchat');
    expect(config.redisUrl).toBe('redis://:pw@redis:6379/0');
    expect([config.jwtSecret, config.jwtSecretPrevious, config.secretsKey, config.secretsKeyPrevious]).toEqual([jwt, 'p'.repeat(40), key, 'q'.repeat(40)]);
    expect(config.adminPassword).toBe('kettle-drum-river-9');
    // A DATABASE_URL read from a file counts as set: the simulated upstream is off as with the variable.
    expect(config.mockUpstream).toBe(false);
  });

  it('keeps spaces inside the value and validates it like the variable', () => {
    expect(loadConfig({ ADMIN_PASSWORD_FILE: file('spaced', 'kettle drum river 9\n\n') }).adminPassword).toBe('kettle drum river 9');
    expect(() => loadConfig({ JWT_SECRET_FILE: file('short', 'short\n') })).toThrow(/JWT_SECRET must be at least 32/);
  });

  it('refuses NAME and NAME_FILE both set, naming both and never the value', () => {
    try {
      loadConfig({ JWT_SECRET: jwt, JWT_SECRET_FILE: file('jwt2', 'x'.repeat(40)) });
      expect.unreachable('both set must throw');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual(['JWT_SECRET and JWT_SECRET_FILE are both set: give the value one way only']);
      expect((err as Error).message).not.toContain(jwt);
    }
  });

  it('refuses a file that is missing, unreadable or empty, naming the path and not the content', () => {
    const missing = path.join(dir, 'nope');
    expect(() => loadConfig({ SECRETS_KEY_FILE: missing })).toThrow(`SECRETS_KEY_FILE cannot read ${missing}: ENOENT`);
    expect(() => loadConfig({ REDIS_URL_FILE: file('empty', '\n') })).toThrow(/REDIS_URL_FILE names an empty file/);
    expect(() => loadConfig({ DATABASE_URL_FILE: dir })).toThrow(/DATABASE_URL_FILE cannot read .*EISDIR/);
    const secretFile = file('unreadable', 'z'.repeat(40));
    chmodSync(secretFile, 0o000);
    // root reads any file whatever its mode: the check only means something for another user.
    if (process.getuid?.() !== 0) expect(() => loadConfig({ JWT_SECRET_FILE: secretFile })).toThrow(/JWT_SECRET_FILE cannot read .*EACCES/);
  });

  it('offers NAME_FILE for secrets only, and says so in the table and .env.example', () => {
    expect(loadConfig({ PORT_FILE: file('port', '80\n') }).port).toBe(3000);
    for (const name of SECRET_VARIABLES) {
      expect(configTable()).toContain(`\`${name}_FILE\``);
      expect(envExample()).toContain(`#${name}_FILE=`);
    }
  });
});

describe('.env.example', () => {
  it('is the one generated from config.ts (npm run config:env-example -w server)', () => {
    const shipped = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    expect(shipped).toBe(envExample());
  });

  it('names every variable, each commented out so a copy changes nothing', () => {
    const text = envExample();
    for (const line of configTable().split('\n').slice(2)) {
      const name = /^\| `([A-Z0-9_]+)`/.exec(line)?.[1] ?? '';
      expect(text).toMatch(new RegExp(`^#${name}=`, 'm'));
    }
    expect(text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))).toEqual([]);
    // Uncommented, every line parses as NAME=value and the defaults load.
    const env = Object.fromEntries(
      text.split('\n').filter((l) => /^#[A-Z0-9_]+=./.test(l) && !/_FILE=/.test(l)).map((l) => l.slice(1).split(/=(.*)/s).slice(0, 2) as [string, string]),
    );
    expect(Object.keys(env).length).toBeGreaterThan(40);
    expect(loadConfig(env).port).toBe(3000);
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
