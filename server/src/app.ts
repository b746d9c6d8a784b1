import cookie from '@fastify/cookie';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import pino, { type Logger } from 'pino';
import { upstreamTimeouts, type Config } from './config.js';
import { createDatabase, type DatabaseHandle } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import type { ErrorBody } from './errors.js';
import { clientErrorHandler } from './http/client-errors.js';
import { headerLines, registerSecurityHeaders, responseHeaders } from './http/security-headers.js';
import { createLogger, requestLogger } from './logger.js';
import { requestIdFrom } from './http/request-id.js';
import { registerRequestTracing } from './plugins/request-tracing.js';
import { createTracing, type Tracing } from './tracing/tracing.js';
import { createAgentsService, type AgentsService } from './modules/agents/agents-service.js';
import { agentRoutes } from './modules/agents/routes.js';
import { analyticsRoutes } from './modules/analytics/routes.js';
import { createAuditLog, type AuditLog } from './modules/audit/audit-log.js';
import { auditRoutes } from './modules/audit/routes.js';
import { createApiKeysService, type ApiKeysService } from './modules/auth/api-keys-service.js';
import { createAuthService, type AuthService } from './modules/auth/auth-service.js';
import { authRoutes } from './modules/auth/routes.js';
import { signInDelayRoutes } from './modules/auth/sign-in-delay-routes.js';
import { createSignInDelayAdmin, createSignInThrottle, type SignInDelayAdmin } from './modules/auth/sign-in-throttle.js';
import { createChatService, type ChatService } from './modules/chat/chat-service.js';
import { createUserBudgetDirectory, type UserBudgetDirectory } from './modules/quotas/user-budgets.js';
import { createIdempotencyStore } from './modules/chat/idempotency.js';
import { chatRoutes } from './modules/chat/routes.js';
import { openaiCompatRoutes } from './modules/chat/openai-compat-routes.js';
import { anthropicCompatRoutes } from './modules/chat/anthropic-compat-routes.js';
import { sessionRoutes } from './modules/chat/session-routes.js';
import { conversationSharingRoutes, sharedViewRoutes } from './modules/sharing/routes.js';
import { createSharingService, type SharingService } from './modules/sharing/sharing-service.js';
import { createAttachmentsService, type AttachmentsService } from './modules/attachments/attachments-service.js';
import { attachmentLinkRoutes, attachmentRoutes } from './modules/attachments/routes.js';
import { healthRoutes, packageVersion } from './modules/health/routes.js';
import { Metrics } from './modules/metrics/metrics.js';
import { metricsRoutes } from './modules/metrics/routes.js';
import { appMetricSources } from './modules/metrics/sources.js';
import { RetentionSweep, retentionTasks } from './modules/maintenance/retention-sweep.js';
import { OutboundPolicy } from './modules/providers/outbound-policy.js';
import { createProviderRegistry, type ProviderRegistry } from './modules/providers/registry.js';
import { createBreakerService, type BreakerService } from './modules/resilience/breakers.js';
import { createFailureLog, type FailureLog } from './modules/resilience/failure-log.js';
import { createUsersService, type UsersService } from './modules/users/users-service.js';
import { userAdminRoutes } from './modules/users/routes.js';
import { registerAuthentication, type Guards } from './plugins/authenticate.js';
import { registerErrorHandler, type PageFallback } from './plugins/error-handler.js';
import { registerOpenApi } from './plugins/openapi.js';
import { PressureMonitor, processPressure, registerLoadShedding, type PressureSource } from './plugins/load-shedding.js';
import { createLifecycle, type Lifecycle } from './lifecycle.js';
import { validatorCompiler } from './plugins/validation.js';
import { registerWebApp } from './plugins/web-app.js';
import { resolveSecrets, type Secrets } from './secrets.js';
import { createSharedState, type SharedState } from './shared-state/index.js';

/** Everything the modules are built from. Services take what they need from here as arguments. */
export interface AppDeps {
  config: Config;
  secrets: Secrets;
  database: DatabaseHandle;
  state: SharedState;
  logger: Logger;
  providers: ProviderRegistry;
  audit: AuditLog;
  users: UsersService;
  auth: AuthService;
  signInDelays: SignInDelayAdmin;
  apiKeys: ApiKeysService;
  agents: AgentsService;
  chat: ChatService;
  /** Export and share links of conversations. */
  sharing: SharingService;
  /** Images and files attached to questions. */
  attachments: AttachmentsService;
  /** Users' own token budgets, held in memory on each instance. */
  budgets: UserBudgetDirectory;
  breakers: BreakerService;
  failures: FailureLog;
  lifecycle: Lifecycle;
  pressure: PressureMonitor;
  retention: RetentionSweep;
  /** Prometheus metrics (always on). */
  metrics: Metrics;
  /** Spans to the OTLP endpoint; undefined when tracing is off. */
  tracing: Tracing | undefined;
}

export interface RouteOptions {
  deps: AppDeps;
  guards: Guards;
}

export interface BuildOptions {
  config: Config;
  /** Tests hand in their own database and shared state; otherwise built from config. */
  database?: DatabaseHandle;
  state?: SharedState;
  logger?: Logger;
  /** Set false to keep the logger quiet (tests). */
  logRequests?: boolean;
  /** Where load shedding reads pressure from (tests hand in their own); default: this process. */
  pressureSource?: PressureSource;
  /** main.ts passes its own, to mark the instance draining on SIGTERM. */
  lifecycle?: Lifecycle;
  /** This instance's name as the owner of the answers it runs; random per process unless a test fixes it. */
  instanceId?: string;
  /** The embedded demo's simulated upstream (main.ts starts it on loopback): upstream calls may reach exactly its origin. */
  simulatedUpstreamUrl?: string | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    deps: AppDeps;
  }
}

/**
 * Builds the whole app from a config without listening: infrastructure
 * first (database, migrations, shared state, providers), then services,
 * then routes. main.ts listens; tests call inject().
 */
export async function buildApp(options: BuildOptions): Promise<FastifyInstance> {
  const { config } = options;
  const logger = options.logger ?? createLogger(config);
  const secrets = resolveSecrets(config);

  // Infrastructure.
  const database =
    options.database ??
    (await createDatabase({
      url: config.databaseUrl,
      readUrl: config.databaseReadUrl,
      readMaxLagMs: config.databaseReadMaxLagMs,
      poolMax: config.databasePoolMax,
      pgliteDir: config.databaseUrl ? undefined : `${config.dataDir}/pglite`,
      logger,
    }));
  const lifecycle = options.lifecycle ?? createLifecycle();
  await migrateToLatest(database.db);
  lifecycle.migrated = true;
  const state = options.state ?? createSharedState({ url: config.redisUrl, prefix: config.redisKeyPrefix, logger });
  const outbound = new OutboundPolicy({
    allowedCidrs: config.upstreamAllowedCidrs,
    trustedOrigins: options.simulatedUpstreamUrl === undefined ? [] : [options.simulatedUpstreamUrl],
  });
  const providers = createProviderRegistry({
    connections: config.upstreamConnections,
    defaultTimeouts: upstreamTimeouts(config),
    queueTimeoutMs: config.upstreamQueueTimeoutMs,
    http2: config.upstreamHttp2,
    extraCa: config.upstreamExtraCa,
    outbound,
    malformedEvents: {
      max: config.upstreamMalformedEventsMax,
      // The message names the provider and what was wrong; never the event's text or the URL (either may hold a secret).
      onSkipped: (err) => logger.warn({ err: err.message }, 'skipped an unreadable upstream stream event'),
    },
  });

  // Services.
  const audit = createAuditLog({ db: database.db, logger });
  const users = createUsersService({ db: database.db, state, audit, config, logger });
  const apiKeys = createApiKeysService({ db: database.db, audit, defaultExpiryDays: config.apiKeyDefaultExpiryDays });
  const signInThrottle = createSignInThrottle({ state, config, logger });
  const signInDelays = createSignInDelayAdmin({ users, throttle: signInThrottle, audit });
  const auth = createAuthService({ db: database.db, state, audit, users, config, secrets, logger, apiKeys, signInThrottle });
  const agents = createAgentsService({ database, state, providers, outbound, audit, config, secrets, logger });
  const breakers = createBreakerService({
    state,
    settings: { threshold: config.breakerFailureThreshold, windowMs: config.breakerWindowMs, cooldownMs: config.breakerCooldownMs },
    logger,
  });
  const failures = createFailureLog(database.db, logger);
  const metrics = new Metrics();
  const instanceId = options.instanceId ?? crypto.randomUUID();
  const tracing = createTracing(config, instanceId);
  const budgets = createUserBudgetDirectory({ db: database.db, state, logger, onLocalChange: (listener) => users.onChanged(listener) });
  const attachments = createAttachmentsService({
    database,
    maxBytes: config.attachmentMaxBytes,
    userQuotaBytes: config.attachmentUserQuotaBytes,
    links: config.attachmentLinkBaseUrl === undefined ? undefined : { baseUrl: config.attachmentLinkBaseUrl, ttlSeconds: config.attachmentLinkTtlSeconds, secret: secrets.secretsKey },
  });
  const chat = createChatService({ database, state, providers, agents, config, logger, breakers, failures, instanceId, budgets, attachments, metrics, tracing });
  const pressure = new PressureMonitor(options.pressureSource ?? processPressure(), {
    maxEventLoopDelayMs: config.shedEventLoopDelayMs,
    maxHeapUsedPercent: config.shedHeapUsedPercent,
  }, (because, sample) => {
    if (because) logger.warn({ pressure: sample }, `overloaded: shedding new requests (${because})`);
    else logger.info({ pressure: sample }, 'no longer overloaded: taking new requests');
  });
  const retention = new RetentionSweep({
    tasks: retentionTasks({
      idempotencyKeys: createIdempotencyStore(database.db, config.idempotencyKeyTtlSeconds),
      failures,
      upstreamFailuresRetentionDays: config.upstreamFailuresRetentionDays,
    }),
    logger,
    intervalMs: config.retentionSweepIntervalMs,
    batchSize: config.retentionSweepBatchSize,
  });
  metrics.bindSources(appMetricSources({ database, state, chat, agents, breakers, pressure, lifecycle }));
  const sharing = createSharingService({ database, agents, audit, publicLinks: config.shareLinksPublic });
  const deps: AppDeps = { config, secrets, database, state, logger, providers, audit, users, auth, signInDelays, apiKeys, agents, chat, sharing, attachments, budgets, breakers, failures, lifecycle, pressure, retention, metrics, tracing };

  await users.ensureFirstAdmin();
  await agents.start();
  await budgets.start();
  await breakers.start();
  await chat.start();
  retention.start();

  // HTTP.
  // Quiet request logging keeps warnings, never more than the logger itself lets through (a silent test logger stays silent).
  const httpLogger: FastifyBaseLogger = options.logRequests === false ? logger.child({}, { level: logger.levelVal > pino.levels.values.warn! ? logger.level : 'warn' }) : logger;
  const headers = responseHeaders({ production: config.nodeEnv === 'production' });
  const app: FastifyInstance = Fastify({
    loggerInstance: httpLogger,
    bodyLimit: config.bodyLimitBytes,
    // Fastify accepts a hop count at run time; its types only list booleans and addresses.
    trustProxy: config.trustProxy as boolean,
    // A client's X-Request-Id is kept only when short and well-formed (http/request-id.ts); else a new one.
    requestIdHeader: false,
    genReqId: (request) => requestIdFrom(request.headers['x-request-id']),
    // Each request's logger binds its id without pino's redaction pass, and names it the ECS way under `ecs` (logger.ts).
    childLoggerFactory: (parent, bindings, options) => requestLogger(parent as Logger, bindings, options, config.logFormat),
    forceCloseConnections: 'idle',
    // What Node's HTTP parser refuses (a byte over 0x7f in the request line, …) gets our envelope and `Connection: close` too.
    clientErrorHandler: clientErrorHandler(headerLines(headers)),
    // A malformed URL or a path parameter longer than the router takes (maxParamLength, 100) is refused by
    // the router before any route runs; answer it in our envelope too, not Fastify's.
    frameworkErrors: (error, request, reply) => {
      const message = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is longer than 100 characters' : 'The URL is malformed';
      void (reply as unknown as FastifyReply).status(400).send({ error: { code: 'VALIDATION_FAILED', message, requestId: String(request.id) } } satisfies ErrorBody);
    },
  });

  app.decorate('deps', deps);
  app.setValidatorCompiler(validatorCompiler);
  // The web app's fallback is known once its files are registered, after the API routes.
  let pageFallback: PageFallback | undefined;
  registerErrorHandler(app, { pageFallback: (request, reply) => pageFallback?.(request, reply) });
  registerLoadShedding(app, pressure, config.shedRetryAfterSeconds, (reason) => metrics.shedRequest(reason));
  // Request duration by route template (never the URL: bounded labels); one observation per request.
  app.addHook('onResponse', (request, reply, done) => {
    metrics.httpRequest(request.routeOptions.url ?? 'unmatched', request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  // Boot (migrations, schema compilation, JIT warm-up) is not load: the first window starts once the server listens.
  // A window begun in buildApp counted the boot's own second-long stall and shed the first second of work.
  if (!options.pressureSource) {
    app.addHook('onListen', (done) => {
      pressure.start();
      done();
    });
  }
  registerSecurityHeaders(app, headers);
  await app.register(cookie);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  registerRequestTracing(app, tracing);
  const guards = registerAuthentication(app, auth, tracing?.tracer);
  const routeOptions: RouteOptions = { deps, guards };

  // Before the routes: the OpenAPI document is collected as they are added.
  await registerOpenApi(app, { version: packageVersion() });
  await app.register(healthRoutes, routeOptions);
  await app.register(metricsRoutes, routeOptions);
  await app.register(authRoutes, { ...routeOptions, prefix: '/api/auth' });
  await app.register(userAdminRoutes, { ...routeOptions, prefix: '/api/admin/users' });
  await app.register(signInDelayRoutes, { ...routeOptions, prefix: '/api/admin/users' });
  await app.register(auditRoutes, { ...routeOptions, prefix: '/api/admin/audit' });
  await app.register(analyticsRoutes, { ...routeOptions, prefix: '/api/admin' });
  await app.register(agentRoutes, { ...routeOptions, prefix: '/api/agents' });
  await app.register(chatRoutes, { ...routeOptions, prefix: '/api/chat' });
  await app.register(sessionRoutes, { ...routeOptions, prefix: '/api/chat-sessions' });
  await app.register(conversationSharingRoutes, { ...routeOptions, prefix: '/api/chat-sessions' });
  await app.register(sharedViewRoutes, { ...routeOptions, prefix: '/api/shared' });
  await app.register(attachmentRoutes, { ...routeOptions, prefix: '/api/attachments' });
  await app.register(attachmentLinkRoutes, { ...routeOptions, prefix: '/api/attachment-links' });
  await app.register(openaiCompatRoutes, { ...routeOptions, prefix: '/v1' });
  await app.register(anthropicCompatRoutes, { ...routeOptions, prefix: '/v1' });
  if (config.webDistDir) pageFallback = await registerWebApp(app, config.webDistDir);

  // Before the server waits for open connections: running answers (long-lived streams) are drained or handed over first.
  app.addHook('preClose', async () => {
    lifecycle.draining = true;
    await chat.close();
  });
  app.addHook('onClose', async () => {
    pressure.stop();
    await retention.stop();
    await agents.stop();
    await budgets.close();
    await breakers.stop();
    await failures.settled();
    await providers.close();
    if (!options.state) await state.close();
    if (!options.database) await database.close();
    await tracing?.shutdown();
  });
  return app;
}
