import fs from 'node:fs';
import path from 'node:path';
import { parseCidr } from './http/cidr.js';
import { fileURLToPath } from 'node:url';
import { parseRedisUrl } from './shared-state/redis-url.js';
import { passwordPolicyProblem } from './modules/auth/password-policy.js';

/**
 * The environment schema. Every variable the server reads is declared here
 * once, validated at start, and listed in the README (`npm run config:table`
 * prints the table from these declarations).
 */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** OTEL_TRACES_SAMPLER values the server understands (the SDK specification's built-in samplers). */
export const TRACES_SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;
export type TracesSampler = (typeof TRACES_SAMPLERS)[number];

export interface Config {
  nodeEnv: 'development' | 'production' | 'test';
  host: string;
  port: number;
  /** Listening sockets on PORT (SO_REUSEPORT); each accepts one connection per event-loop turn. */
  listenSockets: number;
  logLevel: LogLevel;
  /** `json`: pino's own lines; `ecs`: Elastic Common Schema (logger.ts). */
  logFormat: 'json' | 'ecs';
  /** OTEL_SDK_DISABLED: no tracing whatever the endpoint says. */
  otelSdkDisabled: boolean;
  /** Base URL of the OTLP/HTTP receiver (`/v1/traces` is added); tracing is on when this or otlpTracesEndpoint is set. */
  otlpEndpoint: string | undefined;
  /** Full URL spans are posted to; wins over otlpEndpoint. */
  otlpTracesEndpoint: string | undefined;
  otlpProtocol: 'http/json';
  tracesSampler: TracesSampler;
  /** The sampler's ratio (traceidratio samplers), 0 to 1. */
  tracesSamplerArg: number;
  otelServiceName: string;
  trustProxy: boolean | number;
  dataDir: string;
  databaseUrl: string | undefined;
  databaseReadUrl: string | undefined;
  /** Replica lag beyond which reads go to the writer. */
  databaseReadMaxLagMs: number;
  databasePoolMax: number;
  redisUrl: string | undefined;
  redisKeyPrefix: string;
  jwtSecret: string | undefined;
  /** The JWT secret before the last rotation; its tokens are accepted until jwtSecretPreviousUntil. */
  jwtSecretPrevious: string | undefined;
  jwtSecretPreviousUntil: Date | undefined;
  secretsKey: string | undefined;
  /** The secrets key before the last rotation: stored values sealed with it stay readable until re-encrypted. */
  secretsKeyPrevious: string | undefined;
  accessTokenTtlSeconds: number;
  /** Age (from iat) past which an access token is refused whatever its exp says. */
  accessTokenMaxAgeSeconds: number;
  /** How long an instance trusts its cached account status and token "valid after" time without hearing of a change. */
  authCacheTtlMs: number;
  /** Days a new personal API key lasts when the request names none; 0 = no expiry. */
  apiKeyDefaultExpiryDays: number;
  refreshTokenTtlSeconds: number;
  cookieSecure: boolean;
  /** COOKIE_SECURE=false was forced in production. */
  cookieInsecureForced: boolean;
  adminUsername: string | undefined;
  adminPassword: string | undefined;
  agentsConfigPath: string | undefined;
  openRegistration: boolean;
  shareLinksPublic: boolean;
  mockUpstream: boolean;
  mockUpstreamPort: number;
  bodyLimitBytes: number;
  /** Largest attachment (one uploaded file), in bytes. */
  attachmentMaxBytes: number;
  /** Attachments one user may keep in all, in bytes. */
  attachmentUserQuotaBytes: number;
  /** Where providers reach this server, for signed links to attachments (FastGPT files); unset: no links. */
  attachmentLinkBaseUrl: string | undefined;
  attachmentLinkTtlSeconds: number;
  chatRateLimitPerMinute: number;
  loginRateLimitPerMinute: number;
  loginFailuresPerAccountPerHour: number;
  loginBackoffMaxSeconds: number;
  dailyTokenQuota: number;
  monthlyTokenQuota: number;
  quotaReserveOutputTokens: number;
  checkpointIntervalMs: number;
  eventBufferTtlSeconds: number;
  upstreamConnections: number;
  upstreamQueueTimeoutMs: number;
  upstreamHttp2: boolean;
  /** PEM text of UPSTREAM_CA_FILE. */
  upstreamExtraCa: string | undefined;
  /** Address blocks upstream calls may reach besides public addresses (outbound-policy.ts). */
  upstreamAllowedCidrs: string[];
  /** Seconds after its last beat an instance is taken for dead and its answers are taken over (its lease). */
  instanceHeartbeatTtlSeconds: number;
  /** How often each instance looks for answers left by dead ones. */
  takeoverScanIntervalMs: number;
  /** On SIGTERM, how long running answers may finish before they are handed over. */
  drainTimeoutMs: number;
  /** Whether rate limits and quotas let requests through (`open`) or refuse them (`closed`) while Redis is unreachable. */
  rateLimitsWithoutRedis: 'open' | 'closed';
  /** Server processes on this host sharing the port (node:cluster); 1 = this process serves. */
  workers: number;
  /** V8's old-generation growth past the live heap before it collects (heap-growth.ts); 0 = V8's own. */
  heapGrowingPercent: number;
  upstreamConnectTimeoutMs: number;
  upstreamFirstTokenTimeoutMs: number;
  upstreamIdleTimeoutMs: number;
  upstreamTotalTimeoutMs: number;
  upstreamMaxAttempts: number;
  upstreamRetryBaseMs: number;
  upstreamRetryMaxMs: number;
  upstreamRetryAfterMaxMs: number;
  breakerFailureThreshold: number;
  breakerWindowMs: number;
  breakerCooldownMs: number;
  shedEventLoopDelayMs: number;
  shedHeapUsedPercent: number;
  shedRetryAfterSeconds: number;
  healthDetailedAllow: string[];
  /** A port of its own for `/metrics` (no sign-in there); undefined: only on PORT, like /health/detailed. */
  metricsPort: number | undefined;
  idempotencyKeyTtlSeconds: number;
  v1StreamHoldMs: number;
  upstreamMalformedEventsMax: number;
  /** Days failed upstream attempts are kept; 0 keeps them for ever. */
  upstreamFailuresRetentionDays: number;
  /** How often each instance deletes rows past retention. */
  retentionSweepIntervalMs: number;
  /** Rows one retention DELETE removes at most. */
  retentionSweepBatchSize: number;
  webDistDir: string | undefined;
}

interface VariableSpec<K extends keyof Config> {
  name: string;
  key: K;
  description: string;
  /** Shown in the README; `undefined` means "unset". */
  defaultText: string;
  parse: (raw: string | undefined, env: Record<string, string | undefined>) => Config[K];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

class BadValue extends Error {}

function integer(min: number, max: number, fallback: number) {
  return (raw: string | undefined): number => {
    if (raw === undefined || raw === '') return fallback;
    if (!/^-?\d+$/.test(raw.trim())) throw new BadValue(`must be an integer, got "${raw}"`);
    const n = Number(raw);
    if (n < min || n > max) throw new BadValue(`must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

/** A number with up to three decimals (seconds given to the millisecond). */
function decimal(min: number, max: number, fallback: number) {
  return (raw: string | undefined): number => {
    if (raw === undefined || raw === '') return fallback;
    if (!/^\d+(\.\d{1,3})?$/.test(raw.trim())) throw new BadValue(`must be a number like 1.5, got "${raw}"`);
    const n = Number(raw);
    if (n < min || n > max) throw new BadValue(`must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function boolean(fallback: boolean) {
  return (raw: string | undefined): boolean => {
    if (raw === undefined || raw === '') return fallback;
    const v = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    throw new BadValue(`must be true or false, got "${raw}"`);
  };
}

/** A boolean variable's value where it is valid; its own entry reports a bad one. */
function isTrue(raw: string | undefined): boolean {
  try {
    return boolean(false)(optionalString(raw));
  } catch {
    return false;
  }
}

function optionalString(raw: string | undefined): string | undefined {
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
}

function postgresUrl(raw: string | undefined): string | undefined {
  const value = optionalString(raw);
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BadValue('must be a URL like postgres://user:pass@host:5432/db');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new BadValue(`must use the postgres:// scheme, got "${url.protocol}"`);
  }
  return value;
}

function httpUrl(raw: string | undefined): string | undefined {
  const value = optionalString(raw);
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BadValue(`must be an http:// or https:// URL, got "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BadValue(`must use http:// or https://, got "${url.protocol}"`);
  return value;
}

function redisUrl(raw: string | undefined): string | undefined {
  const value = optionalString(raw);
  if (value === undefined) return undefined;
  try {
    parseRedisUrl(value);
  } catch (err) {
    throw new BadValue(`must be redis://host:port[/db], rediss://… or redis-sentinel://host:port[,host:port…]/masterName (${(err as Error).message})`);
  }
  return value;
}

function cidrList(raw: string): string[] {
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    try {
      parseCidr(item);
    } catch (err) {
      throw new BadValue(`must be a comma-separated list of addresses or CIDR blocks (${(err as Error).message})`);
    }
  }
  return items;
}

function secret(raw: string | undefined, env: Record<string, string | undefined>): string | undefined {
  const value = optionalString(raw);
  if (value === undefined) {
    if (optionalString(env.DATABASE_URL) !== undefined) {
      throw new BadValue('is required when DATABASE_URL is set (at least 32 characters; e.g. `openssl rand -base64 48`)');
    }
    return undefined;
  }
  if (value.length < 32) throw new BadValue('must be at least 32 characters long');
  return value;
}

const specs: { [K in keyof Config]: VariableSpec<K> }[keyof Config][] = [
  {
    name: 'NODE_ENV', key: 'nodeEnv', defaultText: 'development',
    description: '`development`, `production` or `test`. `production` makes the refresh cookie `Secure` by default (see COOKIE_SECURE) and sends HSTS.',
    parse: (raw) => {
      const v = optionalString(raw) ?? 'development';
      if (v !== 'development' && v !== 'production' && v !== 'test') throw new BadValue(`must be development, production or test, got "${v}"`);
      return v;
    },
  },
  {
    name: 'HOST', key: 'host', defaultText: '0.0.0.0',
    description: 'Address to listen on.',
    parse: (raw) => optionalString(raw) ?? '0.0.0.0',
  },
  { name: 'PORT', key: 'port', defaultText: '3000', description: 'HTTP port.', parse: integer(0, 65535, 3000) },
  {
    name: 'LISTEN_SOCKETS', key: 'listenSockets', defaultText: '8',
    description:
      'Listening sockets this process opens on `PORT` (SO_REUSEPORT; the kernel spreads new connections over them). Node accepts one connection per listening socket per event-loop turn, and a turn of an instance carrying thousands of streams takes milliseconds: with one socket, a crowd arriving at once waits in the accept queue for seconds. 1 = a plain single listener. Cluster workers (`WORKERS` > 1) share one socket instead, and so does a platform without SO_REUSEPORT in Node (macOS, Windows).',
    parse: integer(1, 64, 8),
  },
  {
    name: 'LOG_LEVEL', key: 'logLevel', defaultText: 'info',
    description: 'pino log level: fatal, error, warn, info, debug, trace or silent.',
    parse: (raw) => {
      const v = optionalString(raw) ?? 'info';
      const levels: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
      if (!levels.includes(v as LogLevel)) throw new BadValue(`must be one of ${levels.join(', ')}, got "${v}"`);
      return v as LogLevel;
    },
  },
  {
    name: 'LOG_FORMAT', key: 'logFormat', defaultText: 'json',
    description: '`json`: one pino JSON object per line. `ecs`: Elastic Common Schema JSON (`@elastic/ecs-pino-format`; `@timestamp`, `log.level`, `message`, with the request id, trace id and user id as `http.request.id`, `trace.id` and `user.id`), which Filebeat or Elastic Agent ingest without parsing rules.',
    parse: (raw) => {
      const v = (optionalString(raw) ?? 'json').toLowerCase();
      if (v !== 'json' && v !== 'ecs') throw new BadValue(`must be json or ecs, got "${v}"`);
      return v;
    },
  },
  { name: 'OTEL_SDK_DISABLED', key: 'otelSdkDisabled', defaultText: 'false', description: '`true` turns tracing off whatever the OTLP endpoint variables say.', parse: boolean(false) },
  {
    name: 'OTEL_EXPORTER_OTLP_ENDPOINT', key: 'otlpEndpoint', defaultText: '(unset: no tracing)',
    description: 'Base URL of an OTLP/HTTP receiver (an OpenTelemetry Collector, Jaeger, Tempo: e.g. `http://otel-collector:4318`); spans go to `<url>/v1/traces`. Setting it (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns tracing on. `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_EXPORTER_OTLP_TRACES_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT` are read by the exporter itself.',
    parse: (raw) => httpUrl(raw),
  },
  {
    name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', key: 'otlpTracesEndpoint', defaultText: '(unset)',
    description: 'Full URL spans are posted to (OTLP/HTTP JSON); wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.',
    parse: (raw) => httpUrl(raw),
  },
  {
    name: 'OTEL_EXPORTER_OTLP_PROTOCOL', key: 'otlpProtocol', defaultText: 'http/json',
    description: 'The exporter speaks OTLP over HTTP with JSON bodies only (every OTLP/HTTP receiver accepts them); any other value stops the start rather than being ignored. `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` is not read.',
    parse: (raw): 'http/json' => {
      const v = optionalString(raw) ?? 'http/json';
      if (v !== 'http/json') throw new BadValue(`must be http/json (the only OTLP protocol this server's exporter speaks), got "${v}"`);
      return v;
    },
  },
  {
    name: 'OTEL_TRACES_SAMPLER', key: 'tracesSampler', defaultText: 'parentbased_always_on',
    description: `Which turns are traced: ${TRACES_SAMPLERS.map((s) => `\`${s}\``).join(', ')}. The \`parentbased_\` ones follow the sampled flag of an incoming \`traceparent\`; \`traceidratio\` keeps the share \`OTEL_TRACES_SAMPLER_ARG\` of traces.`,
    parse: (raw) => {
      const v = (optionalString(raw) ?? 'parentbased_always_on').toLowerCase();
      if (!(TRACES_SAMPLERS as readonly string[]).includes(v)) throw new BadValue(`must be one of ${TRACES_SAMPLERS.join(', ')}, got "${v}"`);
      return v as TracesSampler;
    },
  },
  {
    name: 'OTEL_TRACES_SAMPLER_ARG', key: 'tracesSamplerArg', defaultText: '1.0',
    description: 'The ratio of the `traceidratio` samplers, from 0 to 1 (`0.1`: one trace in ten).',
    parse: (raw) => {
      const v = optionalString(raw);
      if (v === undefined) return 1;
      const n = Number(v);
      if (!/^\d*\.?\d+$/.test(v) || !(n >= 0 && n <= 1)) throw new BadValue(`must be a number from 0 to 1, got "${v}"`);
      return n;
    },
  },
  {
    name: 'OTEL_SERVICE_NAME', key: 'otelServiceName', defaultText: 'llmchat',
    description: 'The `service.name` of spans (and of ECS log lines). `OTEL_RESOURCE_ATTRIBUTES` adds resource attributes (`key=value,…`).',
    parse: (raw) => optionalString(raw) ?? 'llmchat',
  },
  {
    name: 'TRUST_PROXY', key: 'trustProxy', defaultText: 'false',
    description: 'Trust `X-Forwarded-*` headers: `true`, `false`, or the number of proxy hops (set it behind nginx).',
    parse: (raw) => {
      const v = optionalString(raw);
      if (v === undefined) return false;
      if (/^\d+$/.test(v)) return Number(v);
      return boolean(false)(v);
    },
  },
  {
    name: 'DATA_DIR', key: 'dataDir', defaultText: './.data',
    description: 'Directory for embedded state: the PGlite database, generated secrets and the generated first admin password.',
    parse: (raw) => path.resolve(optionalString(raw) ?? '.data'),
  },
  {
    name: 'DATABASE_URL', key: 'databaseUrl', defaultText: '(unset: embedded PGlite in DATA_DIR)',
    description: 'PostgreSQL writer URL (in production, the HAProxy/Patroni primary address).',
    parse: postgresUrl,
  },
  {
    name: 'DATABASE_READ_URL', key: 'databaseReadUrl', defaultText: '(unset: reads go to DATABASE_URL)',
    description: 'Optional read-replica URL (in production, HAProxy\'s read port over the Patroni replicas) for reads that tolerate lag: search and usage figures. Everything a user just wrote is read from the writer.',
    parse: (raw, env) => {
      const v = postgresUrl(raw);
      if (v !== undefined && optionalString(env.DATABASE_URL) === undefined) throw new BadValue('needs DATABASE_URL to be set as well');
      return v;
    },
  },
  {
    name: 'DATABASE_READ_MAX_LAG_MS', key: 'databaseReadMaxLagMs', defaultText: '5000',
    description: 'Replay lag of the read replica, checked every second, beyond which reads go to the writer; an unreachable replica is skipped the same way (`/health/detailed` shows where reads go and the lag).',
    parse: integer(0, 3_600_000, 5_000),
  },
  { name: 'DATABASE_POOL_MAX', key: 'databasePoolMax', defaultText: '20', description: 'Connections per pool (writer and reader each).', parse: integer(1, 500, 20) },
  {
    name: 'REDIS_URL', key: 'redisUrl', defaultText: '(unset: in-process state, single instance only)',
    description: 'Redis for shared short-lived state. `redis://host:6379/0`, `rediss://…`, or Sentinel: `redis-sentinel://[:password@]host:26379,host2:26379/masterName`.',
    parse: redisUrl,
  },
  { name: 'REDIS_KEY_PREFIX', key: 'redisKeyPrefix', defaultText: 'llmchat:', description: 'Prefix for every Redis key and channel.', parse: (raw) => optionalString(raw) ?? 'llmchat:' },
  {
    name: 'JWT_SECRET', key: 'jwtSecret', defaultText: '(unset: generated into DATA_DIR; required with DATABASE_URL)',
    description: 'HMAC secret for access tokens, at least 32 characters. Must be the same on every instance.',
    parse: secret,
  },
  {
    name: 'SECRETS_KEY', key: 'secretsKey', defaultText: '(unset: generated into DATA_DIR; required with DATABASE_URL)',
    description: 'Key that encrypts upstream API keys at rest (AES-256-GCM), at least 32 characters. Same on every instance.',
    parse: secret,
  },
  {
    name: 'JWT_SECRET_PREVIOUS', key: 'jwtSecretPrevious', defaultText: '(unset)',
    description: 'The `JWT_SECRET` before a rotation. Access tokens it signed (recognised by their `kid`) are still accepted until `JWT_SECRET_PREVIOUS_UNTIL`, so a rotation signs nobody out; new tokens are signed with `JWT_SECRET`.',
    parse: (raw) => {
      const v = optionalString(raw);
      if (v !== undefined && v.length < 32) throw new BadValue('must be at least 32 characters long');
      return v;
    },
  },
  {
    name: 'JWT_SECRET_PREVIOUS_UNTIL', key: 'jwtSecretPreviousUntil', defaultText: '(unset)',
    description: 'End of the grace period of `JWT_SECRET_PREVIOUS` (ISO 8601, e.g. `2026-12-06T12:00:00Z`); required with it. After it, tokens signed with the previous secret are refused. `ACCESS_TOKEN_MAX_AGE` after the rotation is enough.',
    parse: (raw, env) => {
      const v = optionalString(raw);
      const hasPrevious = optionalString(env.JWT_SECRET_PREVIOUS) !== undefined;
      if (v === undefined) {
        if (hasPrevious) throw new BadValue('is required when JWT_SECRET_PREVIOUS is set: when its grace period ends (ISO 8601)');
        return undefined;
      }
      if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(v) || Number.isNaN(Date.parse(v))) {
        throw new BadValue(`must be an ISO 8601 date-time with a zone, like 2026-12-06T12:00:00Z, got "${v}"`);
      }
      if (!hasPrevious) throw new BadValue('needs JWT_SECRET_PREVIOUS to be set as well');
      return new Date(v);
    },
  },
  {
    name: 'SECRETS_KEY_PREVIOUS', key: 'secretsKeyPrevious', defaultText: '(unset)',
    description: 'The `SECRETS_KEY` before a rotation: stored upstream keys sealed with it stay readable. `npm run rotate-secrets-key` re-encrypts them with `SECRETS_KEY`; then unset this.',
    parse: (raw) => {
      const v = optionalString(raw);
      if (v !== undefined && v.length < 32) throw new BadValue('must be at least 32 characters long');
      return v;
    },
  },
  { name: 'ACCESS_TOKEN_TTL', key: 'accessTokenTtlSeconds', defaultText: '900', description: 'Access-token lifetime in seconds.', parse: integer(30, 86_400, 900) },
  {
    name: 'ACCESS_TOKEN_MAX_AGE', key: 'accessTokenMaxAgeSeconds', defaultText: 'ACCESS_TOKEN_TTL',
    description: 'Seconds after its `iat` an access token is refused whatever its `exp` says (a token minted with a far `exp`, or issued before `ACCESS_TOKEN_TTL` was lowered). At least `ACCESS_TOKEN_TTL`.',
    parse: (raw, env) => {
      let ttl: number;
      try {
        ttl = integer(30, 86_400, 900)(env.ACCESS_TOKEN_TTL);
      } catch {
        ttl = 900; // ACCESS_TOKEN_TTL's own entry reports it.
      }
      const v = integer(30, 86_400, ttl)(raw);
      if (v < ttl) throw new BadValue(`must be at least ACCESS_TOKEN_TTL (${ttl}), got ${v}`);
      return v;
    },
  },
  {
    name: 'AUTH_CACHE_TTL_MS', key: 'authCacheTtlMs', defaultText: '5000',
    description: 'How long an instance trusts its in-memory copy of an account\'s status, role and token "valid after" time. Changes (a password change, reset, disable) evict it on every instance at once through shared state; this bounds how stale it can be when that notice is missed (Redis down).',
    parse: integer(100, 600_000, 5_000),
  },
  {
    name: 'API_KEY_DEFAULT_EXPIRY_DAYS', key: 'apiKeyDefaultExpiryDays', defaultText: '90',
    description: 'Days a new personal API key lasts when its creator names no `expiresInDays`; 0 = keys without a stated expiry never expire.',
    parse: integer(0, 3650, 90),
  },
  { name: 'REFRESH_TOKEN_TTL', key: 'refreshTokenTtlSeconds', defaultText: '2592000', description: 'Refresh-token lifetime in seconds (30 days).', parse: integer(300, 31_536_000, 2_592_000) },
  {
    name: 'COOKIE_SECURE', key: 'cookieSecure', defaultText: 'true in production, else false',
    description: 'Mark the refresh cookie `Secure` (HTTPS only). `false` with `NODE_ENV=production` stops the server at start unless `COOKIE_INSECURE_FORCE=true`.',
    parse: (raw, env) => {
      const production = optionalString(env.NODE_ENV) === 'production';
      const secure = boolean(production)(raw);
      if (production && !secure && !isTrue(env.COOKIE_INSECURE_FORCE)) {
        throw new BadValue('is false with NODE_ENV=production: the refresh cookie would travel over plain HTTP. Serve HTTPS, or set COOKIE_INSECURE_FORCE=true if this deployment must run without it');
      }
      return secure;
    },
  },
  {
    name: 'COOKIE_INSECURE_FORCE', key: 'cookieInsecureForced', defaultText: 'false',
    description: 'Allow `COOKIE_SECURE=false` with `NODE_ENV=production` (a plain-HTTP deployment; the refresh cookie can then be read on the network). Logged as a warning at start.',
    parse: (raw) => boolean(false)(raw),
  },
  {
    name: 'ADMIN_USERNAME', key: 'adminUsername', defaultText: 'admin',
    description: 'Username of the first admin, created at start when no admin exists.',
    parse: (raw) => {
      const v = optionalString(raw) ?? 'admin';
      if (!/^[A-Za-z0-9_.@-]{3,64}$/.test(v)) throw new BadValue('must be 3-64 characters of letters, digits, _ . @ -');
      return v;
    },
  },
  {
    name: 'ADMIN_PASSWORD', key: 'adminPassword', defaultText: '(unset: a random one is written to DATA_DIR/initial-admin-password)',
    description: 'Password of the first admin, held to the admin password policy (at least 12 characters, not the username or a variant of it, not among the 100,000 most common passwords): a weak one stops the start. Never a default: unset means a random password, stored only in a file readable by the owner.',
    parse: (raw, env) => {
      const v = raw === undefined || raw === '' ? undefined : raw;
      if (v === undefined) return v;
      const problem = passwordPolicyProblem(v, { username: optionalString(env.ADMIN_USERNAME) ?? 'admin', role: 'admin' });
      if (problem !== undefined) throw new BadValue(`is too weak: ${problem.replace(/^The password/, 'it')}`);
      return v;
    },
  },
  {
    name: 'AGENTS_CONFIG_PATH', key: 'agentsConfigPath', defaultText: '(unset)',
    description: 'An `agents.json` imported (upserted) at start and by the admin reload API. Values may be `${ENV}` placeholders, filled from the environment or from the file `ENV_FILE` names (for upstream keys kept as secrets).',
    parse: (raw) => {
      const v = optionalString(raw);
      return v === undefined ? undefined : path.resolve(v);
    },
  },
  { name: 'OPEN_REGISTRATION', key: 'openRegistration', defaultText: 'false', description: 'Let anyone create an account at `POST /api/auth/register`.', parse: boolean(false) },
  {
    name: 'SHARE_LINKS_PUBLIC', key: 'shareLinksPublic', defaultText: 'false',
    description: 'Let a conversation\'s share link (`/s/<token>`, `GET /api/shared/:token`) open without signing in. Off, the viewer signs in with any account first.',
    parse: boolean(false),
  },
  {
    name: 'MOCK_UPSTREAM', key: 'mockUpstream', defaultText: 'true without DATABASE_URL, else false',
    description: 'Start the simulated upstream in-process and seed the `demo` agent on it (first start only).',
    parse: (raw, env) => boolean(optionalString(env.DATABASE_URL) === undefined)(raw),
  },
  { name: 'MOCK_UPSTREAM_PORT', key: 'mockUpstreamPort', defaultText: '3099', description: 'Port of the in-process simulated upstream (loopback only).', parse: integer(0, 65535, 3099) },
  { name: 'BODY_LIMIT_BYTES', key: 'bodyLimitBytes', defaultText: '1048576', description: 'Largest accepted request body.', parse: integer(1024, 64 * 1024 * 1024, 1_048_576) },
  {
    name: 'ATTACHMENT_MAX_BYTES', key: 'attachmentMaxBytes', defaultText: '10485760',
    description: 'Largest attachment (an image or file attached to a question, `POST /api/attachments`), in bytes; a larger one is refused with 413 `ATTACHMENT_TOO_LARGE`. Attachments are stored in PostgreSQL and sent to providers inline (base64), so keep it within what your providers take (OpenAI and Anthropic images: 20 MB and 5 MB).',
    parse: integer(1024, 64 * 1024 * 1024, 10 * 1024 * 1024),
  },
  {
    name: 'ATTACHMENT_USER_QUOTA_BYTES', key: 'attachmentUserQuotaBytes', defaultText: '209715200',
    description: 'Attachments one user may keep in all, in bytes (0 = no uploads); past it an upload is refused with 413 `ATTACHMENT_QUOTA_EXCEEDED` until the user removes some (deleting a conversation keeps its attachments: they belong to the user).',
    parse: integer(0, Number.MAX_SAFE_INTEGER, 200 * 1024 * 1024),
  },
  {
    name: 'ATTACHMENT_LINK_BASE_URL', key: 'attachmentLinkBaseUrl', defaultText: '(unset: no links; FastGPT gets a file\'s text)',
    description: 'The address model providers reach this server at (`https://chat.example.com`). Set, FastGPT agents get attached files as `file_url` links to `/api/attachment-links/:id`, signed and expiring (FastGPT reads files only from a URL); unset, FastGPT gets a file\'s extracted text instead. Other providers get attachments inline or uploaded, and need no link.',
    parse: (raw) => httpUrl(raw)?.replace(/\/+$/, ''),
  },
  {
    name: 'ATTACHMENT_LINK_TTL_SECONDS', key: 'attachmentLinkTtlSeconds', defaultText: '600',
    description: 'How long a signed attachment link (`ATTACHMENT_LINK_BASE_URL`) works after the turn that made it started.',
    parse: integer(30, 86_400, 600),
  },
  { name: 'CHAT_RATE_LIMIT_PER_MINUTE', key: 'chatRateLimitPerMinute', defaultText: '60', description: 'Chat turns per user per minute across all instances (0 = unlimited). An agent\'s own `rateLimit` applies too.', parse: integer(0, 10_000_000, 60) },
  { name: 'LOGIN_RATE_LIMIT_PER_MINUTE', key: 'loginRateLimitPerMinute', defaultText: '10', description: 'Login and registration attempts per client address per minute, across instances (0 = unlimited); more get 429 before any password is checked. Not per username, so nobody can block another person\'s sign-in with it.', parse: integer(0, 1_000_000, 10) },
  {
    name: 'LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR', key: 'loginFailuresPerAccountPerHour', defaultText: '100',
    description: 'Failed sign-ins an account name may take from all addresses together in any 60 minutes (1-100, ASVS 2.2.1); past it, sign-in to that name is refused until the hour passes or an admin clears the delay.',
    parse: integer(1, 100, 100),
  },
  {
    name: 'LOGIN_BACKOFF_MAX_SECONDS', key: 'loginBackoffMaxSeconds', defaultText: '900',
    description: 'Longest wait the progressive sign-in delays impose on one client address (after 3 failures for one name, or 20 within an hour for any names, each failure doubles the wait from 1 s).',
    parse: integer(1, 86_400, 900),
  },
  {
    name: 'RATE_LIMITS_WITHOUT_REDIS', key: 'rateLimitsWithoutRedis', defaultText: 'open',
    description: 'While Redis is unreachable, rate limits and quotas cannot be counted: `open` lets chat turns through, `closed` refuses them with 503 `SHARED_STATE_UNAVAILABLE`.',
    parse: (raw) => {
      const v = (optionalString(raw) ?? 'open').toLowerCase();
      if (v !== 'open' && v !== 'closed') throw new BadValue(`must be open or closed, got "${v}"`);
      return v;
    },
  },
  { name: 'DAILY_TOKEN_QUOTA', key: 'dailyTokenQuota', defaultText: '0', description: 'Tokens per user per UTC day for users without a daily quota of their own (0 = unlimited). Enforced across instances: a turn is refused with 429 `QUOTA_EXCEEDED` once the day\'s tokens (answers so far plus the reservations of answers still running) reach it. See "Quotas and token budgets".', parse: integer(0, 2_000_000_000, 0) },
  { name: 'MONTHLY_TOKEN_QUOTA', key: 'monthlyTokenQuota', defaultText: '0', description: 'Tokens per user per UTC calendar month for users without a monthly quota of their own (0 = unlimited); enforced like `DAILY_TOKEN_QUOTA`.', parse: integer(0, 2_000_000_000, 0) },
  { name: 'QUOTA_RESERVE_OUTPUT_TOKENS', key: 'quotaReserveOutputTokens', defaultText: '1024', description: 'Answer tokens reserved against a budget when neither the request nor the agent sets a maximum (the reservation is the question\'s estimated tokens plus the maximum answer; it is settled to the real usage when the answer ends).', parse: integer(1, 1_000_000, 1024) },
  { name: 'CHECKPOINT_INTERVAL_MS', key: 'checkpointIntervalMs', defaultText: '5000', description: 'How often partial answer text is saved to PostgreSQL while it streams (each save sends the text added since the last one that landed; a save still queued or being written skips the next).', parse: integer(100, 60_000, 5000) },
  { name: 'EVENT_BUFFER_TTL_SECONDS', key: 'eventBufferTtlSeconds', defaultText: '900', description: 'How long a turn\'s events stay in the shared buffer for reconnecting clients.', parse: integer(10, 86_400, 900) },
  {
    name: 'UPSTREAM_CONNECTIONS', key: 'upstreamConnections', defaultText: '10000',
    description: 'Requests in flight at once from this instance to one upstream origin: over HTTP/1.1 one connection each, over HTTP/2 multiplexed on few. Size it by the answers one instance carries at once (each also holds a client connection: see "File descriptors"). Beyond it calls wait in a local queue.',
    parse: integer(1, 100_000, 10_000),
  },
  { name: 'UPSTREAM_MALFORMED_EVENTS_MAX', key: 'upstreamMalformedEventsMax', defaultText: '3', description: 'Unreadable events (not JSON, not an object) skipped in one upstream stream before the attempt fails as a protocol error. Each one skipped is logged; a provider\'s error event inside the stream is never skipped. 0 fails on the first.', parse: integer(0, 1000, 3) },
  {
    name: 'UPSTREAM_QUEUE_TIMEOUT_MS', key: 'upstreamQueueTimeoutMs', defaultText: '5000',
    description: 'Longest wait in the local queue for a slot to an upstream origin. A new turn that waits longer is refused, before anything is written, with 503 `UPSTREAM_BUSY` and `Retry-After`. The wait counts against none of the upstream\'s deadlines and is never an upstream failure.',
    parse: integer(0, 600_000, 5_000),
  },
  { name: 'UPSTREAM_HTTP2', key: 'upstreamHttp2', defaultText: 'true', description: 'Speak HTTP/2 to upstreams that offer it over TLS (ALPN); many streams then share a few connections. `false` keeps HTTP/1.1.', parse: boolean(true) },
  {
    name: 'UPSTREAM_CA_FILE', key: 'upstreamExtraCa', defaultText: '(unset)',
    description: 'A PEM file of certificates trusted for upstream TLS besides the built-in roots (an on-premises FastGPT or Dify behind an internal CA).',
    parse: (raw) => {
      const file = optionalString(raw);
      if (file === undefined) return undefined;
      let pem: string;
      try {
        pem = fs.readFileSync(file, 'utf8');
      } catch (err) {
        throw new BadValue(`cannot read ${file}: ${(err as Error).message}`);
      }
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new BadValue(`${file} holds no PEM certificate`);
      return pem;
    },
  },
  {
    name: 'UPSTREAM_ALLOWED_CIDRS', key: 'upstreamAllowedCidrs', defaultText: '(unset: public addresses only)',
    description:
      'Address blocks (comma-separated CIDR list) agent endpoints may reach besides public addresses. By default every upstream connection to loopback, private (10/8, 172.16/12, 192.168/16), link-local (169.254/16, the cloud metadata service), carrier-grade NAT (100.64/10), 0/8, `::1`, `fc00::/7`, `fe80::/10` or an IPv4-mapped form of these is refused at connect time, after our own DNS lookup. List an on-premises FastGPT or Dify here, e.g. `10.20.0.0/16`. The built-in simulated upstream (`MOCK_UPSTREAM`) is always allowed, on its own address and port only.',
    parse: (raw) => cidrList(raw ?? ''),
  },
  {
    name: 'INSTANCE_HEARTBEAT_TTL_SECONDS', key: 'instanceHeartbeatTtlSeconds', defaultText: '1.2',
    description:
      "An instance's lease in shared state (seconds, to the millisecond). Each instance renews it every quarter of this with one Redis script call (four cheap commands inside), which also tells it which instances let theirs run out; the running answers of an instance that missed its lease are then claimed at once. So the answers of a killed instance continue elsewhere this long after the kill, give or take a quarter of it. The price: an instance whose event loop or Redis connection stalls for three quarters of this or more may be taken for dead; its answers then restart on another instance, and it leaves them at its next beat (nothing is stored twice). Raise it where such stalls are expected; lower it and each instance sends more commands.",
    parse: decimal(0.5, 300, 1.2),
  },
  {
    name: 'TAKEOVER_SCAN_INTERVAL_MS', key: 'takeoverScanIntervalMs', defaultText: '5000',
    description: 'How often each instance looks in PostgreSQL (one query) for running answers whose owner holds no lease at all (the safety net behind the lease, for an owner missing from shared state, e.g. after Redis restarted empty).',
    parse: integer(100, 60_000, 5000),
  },
  {
    name: 'DRAIN_TIMEOUT_MS', key: 'drainTimeoutMs', defaultText: '15000',
    description: 'On SIGTERM, how long running answers may finish here; the rest are handed over to other instances (or resumed at the next start on a single node).',
    parse: integer(0, 600_000, 15_000),
  },
  {
    name: 'HEAP_GROWING_PERCENT', key: 'heapGrowingPercent', defaultText: '50',
    description:
      "How far (percent) V8's heap may grow past what its last full collection kept before it collects again. V8's own choice (0) goes up to 300% for a large heap, so an instance holding thousands of long answers kept twice its live memory as garbage: 50 measured 40% less RSS at 10,000 streams (67 KiB per stream) and 130 MiB less at 1000 short ones, at no measurable CPU cost; lower saves more memory for more CPU (20: 59 KiB per stream, 30% more CPU).",
    parse: integer(0, 400, 50),
  },
  {
    name: 'WORKERS', key: 'workers', defaultText: '1',
    description: 'Server processes on this host, sharing `PORT` (node:cluster; one per core is the usual choice). Each is an instance like any other; more than 1 needs `DATABASE_URL` and `REDIS_URL`.',
    parse: (raw, env) => {
      const n = integer(1, 256, 1)(raw);
      if (n === 1) return n;
      if (optionalString(env.DATABASE_URL) === undefined || optionalString(env.REDIS_URL) === undefined) {
        throw new BadValue('above 1 needs DATABASE_URL and REDIS_URL: embedded PGlite and in-process state belong to one process');
      }
      if (isTrue(env.MOCK_UPSTREAM)) throw new BadValue('above 1 cannot run with MOCK_UPSTREAM=true (each process would start the simulated upstream on one port)');
      return n;
    },
  },
  { name: 'UPSTREAM_CONNECT_TIMEOUT_MS', key: 'upstreamConnectTimeoutMs', defaultText: '10000', description: 'Default deadline for an upstream to send response headers (connect included). An agent\'s or endpoint\'s `timeouts.connectMs` overrides it.', parse: integer(100, 3_600_000, 10_000) },
  { name: 'UPSTREAM_FIRST_TOKEN_TIMEOUT_MS', key: 'upstreamFirstTokenTimeoutMs', defaultText: '60000', description: 'Default deadline from the headers to the first text or reasoning chunk (`timeouts.firstTokenMs`).', parse: integer(100, 3_600_000, 60_000) },
  { name: 'UPSTREAM_IDLE_TIMEOUT_MS', key: 'upstreamIdleTimeoutMs', defaultText: '30000', description: 'Default longest gap between two chunks once the answer streams; longer is a stall (`timeouts.idleMs`).', parse: integer(100, 3_600_000, 30_000) },
  { name: 'UPSTREAM_TOTAL_TIMEOUT_MS', key: 'upstreamTotalTimeoutMs', defaultText: '600000', description: 'Default deadline for one whole upstream call (`timeouts.totalMs`).', parse: integer(100, 3_600_000, 600_000) },
  { name: 'UPSTREAM_MAX_ATTEMPTS', key: 'upstreamMaxAttempts', defaultText: '2', description: 'Calls to one endpoint per turn, first try included, for retryable failures (an agent\'s `retry.maxAttempts` overrides it). Then the next endpoint takes over.', parse: integer(1, 10, 2) },
  { name: 'UPSTREAM_RETRY_BASE_MS', key: 'upstreamRetryBaseMs', defaultText: '200', description: 'Base of the exponential backoff between retries of one endpoint (full jitter: a random wait up to base × 2^retry, capped by UPSTREAM_RETRY_MAX_MS).', parse: integer(0, 60_000, 200) },
  { name: 'UPSTREAM_RETRY_MAX_MS', key: 'upstreamRetryMaxMs', defaultText: '5000', description: 'Longest backoff between retries of one endpoint.', parse: integer(0, 300_000, 5_000) },
  { name: 'UPSTREAM_RETRY_AFTER_MAX_MS', key: 'upstreamRetryAfterMaxMs', defaultText: '10000', description: 'Longest `Retry-After` honoured before retrying the same endpoint; a provider asking for longer is not retried in this turn (the next endpoint takes over).', parse: integer(0, 600_000, 10_000) },
  { name: 'BREAKER_FAILURE_THRESHOLD', key: 'breakerFailureThreshold', defaultText: '5', description: 'Failed calls to one endpoint within BREAKER_WINDOW_MS that open its circuit breaker (shared by all instances).', parse: integer(1, 10_000, 5) },
  { name: 'BREAKER_WINDOW_MS', key: 'breakerWindowMs', defaultText: '30000', description: 'Window in which breaker failures are counted.', parse: integer(100, 3_600_000, 30_000) },
  { name: 'BREAKER_COOLDOWN_MS', key: 'breakerCooldownMs', defaultText: '15000', description: 'How long an open breaker sends traffic to the fallbacks before one probe call (across all instances) may test the endpoint.', parse: integer(100, 3_600_000, 15_000) },
  { name: 'SHED_EVENT_LOOP_DELAY_MS', key: 'shedEventLoopDelayMs', defaultText: '1000', description: 'Event-loop delay (p99 over the last second) above which new requests get 503 `OVERLOADED` (0 = off). Health endpoints are exempt.', parse: integer(0, 60_000, 1_000) },
  { name: 'SHED_HEAP_USED_PERCENT', key: 'shedHeapUsedPercent', defaultText: '95', description: 'Heap used, in percent of the heap limit, above which new requests get 503 `OVERLOADED` (0 = off).', parse: integer(0, 100, 95) },
  { name: 'SHED_RETRY_AFTER_SECONDS', key: 'shedRetryAfterSeconds', defaultText: '2', description: '`Retry-After` sent with a shed request.', parse: integer(1, 3_600, 2) },
  {
    name: 'HEALTH_DETAILED_ALLOW', key: 'healthDetailedAllow', defaultText: '127.0.0.1/32,::1/128',
    description: 'Addresses (CIDR list) that may read `/health/detailed` without signing in; admins may read it from anywhere. Empty: admins only.',
    parse: (raw) => cidrList(raw === undefined ? '127.0.0.1/32,::1/128' : raw),
  },
  {
    name: 'METRICS_PORT', key: 'metricsPort', defaultText: '(unset)',
    description: 'Also serve the Prometheus metrics (`GET /metrics`) on this port of `HOST`, without sign-in: keep it on the internal network. Unset: `/metrics` is served on `PORT` only, to `HEALTH_DETAILED_ALLOW` addresses and admins. Metrics are always collected.',
    parse: (raw, env) => {
      if (optionalString(raw) === undefined) return undefined;
      const port = integer(1, 65535, 0)(raw);
      if (port === integer(0, 65535, 3000)(env.PORT)) throw new BadValue(`must differ from PORT (${port})`);
      return port;
    },
  },
  { name: 'IDEMPOTENCY_KEY_TTL_SECONDS', key: 'idempotencyKeyTtlSeconds', defaultText: '86400', description: 'How long an `Idempotency-Key` names its turn; a key reused after that starts a new turn. Expired keys are deleted by the retention sweep.', parse: integer(60, 30 * 86_400, 86_400) },
  { name: 'V1_STREAM_HOLD_MS', key: 'v1StreamHoldMs', defaultText: '10000', description: 'A streaming `/v1/chat/completions` or `/v1/messages` call gets its response headers with the first token, or after this long: an answer that fails before its first token gets its HTTP status and OpenAI or Anthropic error body (429, 400, 5xx), as SDKs expect, instead of a 200 and an error in the stream. 0 sends the headers at once.', parse: integer(0, 120_000, 10_000) },
  { name: 'UPSTREAM_FAILURES_RETENTION_DAYS', key: 'upstreamFailuresRetentionDays', defaultText: '30', description: 'Days failed upstream attempts (`upstream_failures`) are kept before the retention sweep deletes them (0 = keep for ever).', parse: integer(0, 3_650, 30) },
  { name: 'RETENTION_SWEEP_INTERVAL_MS', key: 'retentionSweepIntervalMs', defaultText: '600000', description: 'How often each instance deletes expired idempotency keys and old failed upstream attempts (also once at start). Instances sweeping at once split the work.', parse: integer(1_000, 86_400_000, 600_000) },
  { name: 'RETENTION_SWEEP_BATCH_SIZE', key: 'retentionSweepBatchSize', defaultText: '1000', description: 'Rows one retention DELETE removes at most; a sweep runs at most 10 such batches per table, so a backlog drains over several sweeps.', parse: integer(1, 100_000, 1_000) },
  {
    name: 'WEB_DIST_DIR', key: 'webDistDir', defaultText: '(unset: the built `web/dist` of this checkout, when it exists)',
    description: 'Directory of the built web app, served at `/` with an SPA fallback. `off` serves no web app (API only).',
    parse: webDistDir,
  },
];

/** The default upstream deadlines, as the provider layer takes them. */
export function upstreamTimeouts(config: Config): { connectMs: number; firstTokenMs: number; idleMs: number; totalMs: number } {
  return { connectMs: config.upstreamConnectTimeoutMs, firstTokenMs: config.upstreamFirstTokenTimeoutMs, idleMs: config.upstreamIdleTimeoutMs, totalMs: config.upstreamTotalTimeoutMs };
}

/** The built web app beside this server's build (server/dist -> web/dist), when there is one. */
function defaultWebDistDir(): string | undefined {
  const candidate = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web/dist');
  return fs.existsSync(path.join(candidate, 'index.html')) ? candidate : undefined;
}

function webDistDir(raw: string | undefined): string | undefined {
  const v = optionalString(raw);
  if (v === undefined) return defaultWebDistDir();
  if (v.toLowerCase() === 'off') return undefined;
  const dir = path.resolve(v);
  if (!fs.existsSync(path.join(dir, 'index.html'))) throw new BadValue(`must be a directory holding index.html (a built web app), got "${v}"`);
  return dir;
}

/**
 * Variables that carry a secret (a password inside a URL counts). Each may be
 * given instead as `NAME_FILE`, the path of a file holding the value: the
 * Docker and Kubernetes secrets convention, which keeps it out of the process
 * environment and `docker inspect`.
 */
export const SECRET_VARIABLES: readonly string[] = ['DATABASE_URL', 'DATABASE_READ_URL', 'REDIS_URL', 'JWT_SECRET', 'JWT_SECRET_PREVIOUS', 'SECRETS_KEY', 'SECRETS_KEY_PREVIOUS', 'ADMIN_PASSWORD'];

/**
 * The environment with every `NAME_FILE` replaced by NAME = the file's content
 * (trailing line breaks trimmed). Problems name the variable and the path,
 * never the content.
 */
export function resolveSecretFiles(env: Record<string, string | undefined>): { env: Record<string, string | undefined>; problems: string[] } {
  const resolved = { ...env };
  const problems: string[] = [];
  for (const name of SECRET_VARIABLES) {
    const file = optionalString(env[`${name}_FILE`]);
    if (file === undefined) continue;
    if (optionalString(env[name]) !== undefined) {
      problems.push(`${name} and ${name}_FILE are both set: give the value one way only`);
      continue;
    }
    let content: string;
    try {
      content = fs.readFileSync(file, 'utf8');
    } catch (err) {
      problems.push(`${name}_FILE cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      continue;
    }
    const value = content.replace(/[\r\n]+$/, '');
    if (value.trim() === '') {
      problems.push(`${name}_FILE names an empty file: ${file}`);
      continue;
    }
    resolved[name] = value;
  }
  return { env: resolved, problems };
}

export function loadConfig(rawEnv: Record<string, string | undefined> = process.env): Config {
  const { env, problems } = resolveSecretFiles(rawEnv);
  const out: Partial<Record<keyof Config, unknown>> = {};
  for (const spec of specs) {
    try {
      out[spec.key] = spec.parse(env[spec.name], env);
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      problems.push(`${spec.name} ${err.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as Config;
}

/** The README's configuration table, generated from the declarations above. */
export function configTable(): string {
  const rows = specs.map((s) => `| \`${s.name}\` | ${s.defaultText} | ${describe(s.name, s.description).replace(/\|/g, '\\|')} |`);
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

function describe(name: string, description: string): string {
  return SECRET_VARIABLES.includes(name) ? `${description} Or \`${name}_FILE\`: a file holding it.` : description;
}

/**
 * `.env.example` at the root, generated from the declarations above like the
 * README table (a test keeps the two equal): every variable commented out at
 * its default, so a copy changes nothing until a line is uncommented. The
 * format is the common subset of compose `env_file`, systemd
 * `EnvironmentFile` and shell `set -a; . ./.env`.
 */
export function envExample(): string {
  const lines = [
    '# LLMChat configuration: every variable the server reads, generated from',
    '# server/src/config.ts (`npm run config:env-example -w server`; a test checks it).',
    '# Nothing is required: with no variables at all the server starts on embedded',
    '# PGlite, in-process state and the simulated upstream. Uncomment what you set.',
    '# Secrets may be given as NAME_FILE (a file holding the value) instead of NAME.',
  ];
  for (const spec of specs) {
    lines.push('');
    for (const line of wrap(describe(spec.name, spec.description).replace(/`/g, ''), 78)) lines.push(`# ${line}`);
    // A default that is prose or another variable's name is shown as a comment, not as a value.
    const unset = spec.defaultText.startsWith('(') || /\s/.test(spec.defaultText) || /^[A-Z][A-Z0-9_]+$/.test(spec.defaultText);
    lines.push(unset ? `# Default: ${spec.defaultText.replace(/`/g, '')}` : `#${spec.name}=${spec.defaultText}`);
    if (unset) lines.push(`#${spec.name}=`);
    if (SECRET_VARIABLES.includes(spec.name)) lines.push(`#${spec.name}_FILE=/run/secrets/${spec.name.toLowerCase()}`);
  }
  return `${lines.join('\n')}\n`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}
