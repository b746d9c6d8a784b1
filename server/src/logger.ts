import { ecsFormat } from '@elastic/ecs-pino-format';
import pino, { type Bindings, type ChildLoggerOptions, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { Config } from './config.js';

/** Paths whose values never reach a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.oldPassword',
  '*.currentPassword',
  '*.apiKey',
  '*.api_key',
  '*.token',
  '*.refreshToken',
  '*.accessToken',
  '*.secret',
];

/** Our correlation fields under their ECS names. */
const ECS_FIELD_NAMES: Record<string, string> = {
  reqId: 'http.request.id',
  traceId: 'trace.id',
  userId: 'user.id',
  turnId: 'llmchat.turn.id',
};

function ecsNames(bindings: Bindings): Bindings {
  const renamed: Bindings = {};
  for (const [key, value] of Object.entries(bindings) as [string, unknown][]) renamed[ECS_FIELD_NAMES[key] ?? key] = value;
  return renamed;
}

/**
 * Options for a child of an ECS logger. pino gives children an identity
 * bindings formatter; this one renames the correlation fields, which are
 * bound once per request or turn (child creation, bindIds), so the
 * rename runs once per binding, never per line.
 */
export const ECS_CHILD_OPTIONS: ChildLoggerOptions = { formatters: { bindings: ecsNames } };

const { chindingsSym, formattersSym } = pino.symbols;

/** pino's per-logger state, by its exported symbols. */
type PinoInternals = Record<symbol, unknown>;

/**
 * Adds id fields to every later line of this logger, in place: what pino's
 * `setBindings` writes, through the logger's own bindings formatter (ECS
 * names included), without running each value through the redaction
 * stringifier. That costs ~3 µs a call with our wildcard paths, three calls
 * a turn (issue 15's cost point), for plain strings no redaction path can
 * match: every path names a property of an object.
 */
export function bindIds(log: Logger, ids: Record<string, string>): void {
  const internals = log as unknown as PinoInternals;
  const formatted = (internals[formattersSym] as { bindings: (bindings: Bindings) => Bindings }).bindings(ids);
  let data = internals[chindingsSym] as string;
  for (const key in formatted) {
    const value: unknown = formatted[key];
    if (value !== undefined) data += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
  }
  internals[chindingsSym] = data;
}

/**
 * A child logger with id fields, with ECS field names when the format is
 * `ecs`. Made empty and given its ids by `bindIds`: pino's own `child(bindings)`
 * runs each value through the redaction stringifier, ~3 µs and ~1 KiB of
 * garbage a binding, and this runs for every request and every turn.
 */
export function childLogger(parent: Logger, ids: Record<string, string>, format: Config['logFormat'], options?: ChildLoggerOptions): Logger {
  const child = format === 'ecs' ? parent.child({}, { ...options, ...ECS_CHILD_OPTIONS }) : options === undefined ? parent.child({}) : parent.child({}, options);
  bindIds(child, ids);
  return child;
}

/**
 * Fastify's factory of each request's logger: its request id bound the
 * cheap way (childLogger). Fastify passes options only when a route sets a
 * log level or serializers.
 */
export function requestLogger(parent: Logger, bindings: Bindings, options: ChildLoggerOptions, format: Config['logFormat']): Logger {
  const ids: Record<string, string> = {};
  for (const key in bindings) ids[key] = String(bindings[key]);
  const routeOptions = options.level !== undefined || options.serializers !== undefined ? options : undefined;
  return childLogger(parent, ids, format, routeOptions);
}

function ecsOptions(config: Pick<Config, 'otelServiceName'>): LoggerOptions {
  // No Elastic APM agent here: trace ids come from our own tracing (traceId above).
  const ecs = ecsFormat({ apmIntegration: false, serviceName: config.otelServiceName, convertReqRes: true });
  const ecsBindings = ecs.formatters?.bindings;
  return {
    ...ecs,
    formatters: {
      ...ecs.formatters,
      bindings: (bindings) => (ecsBindings ? ecsBindings(ecsNames(bindings)) : ecsNames(bindings)),
    },
  };
}

export function loggerOptions(config: Pick<Config, 'logLevel' | 'nodeEnv' | 'logFormat' | 'otelServiceName'>): LoggerOptions {
  const common: LoggerOptions = {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (config.logFormat === 'ecs') return { ...common, ...ecsOptions(config), base: { pid: process.pid } };
  return { ...common, base: { service: 'llmchat', pid: process.pid } };
}

/** The process logger; `destination` is for tests that read the lines. */
export function createLogger(config: Pick<Config, 'logLevel' | 'nodeEnv' | 'logFormat' | 'otelServiceName'>, destination?: DestinationStream): Logger {
  return destination ? pino(loggerOptions(config), destination) : pino(loggerOptions(config));
}
