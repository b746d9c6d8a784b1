import cluster from 'node:cluster';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { addAcceptors, assertPortFree, reusePortSupported } from './http/acceptors.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { applyHeapGrowingPercent } from './heap-growth.js';
import { createLifecycle, SHUTDOWN_HANDOVER_MS } from './lifecycle.js';
import { createLogger } from './logger.js';
import { reportTracingProblems, tracesUrl } from './tracing/tracing.js';
import { descriptorWarning, readDescriptors } from './modules/health/descriptors.js';
import { listenForMetrics } from './modules/metrics/routes.js';

/** Process entry: config, optional simulated upstream, listen, signals, graceful shutdown. */

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`llmchat: ${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
}

const config = readConfig();
applyHeapGrowingPercent(config.heapGrowingPercent);
const logger = createLogger(config);
// The OpenTelemetry SDK reports failed exports (a receiver down) through its diagnostic logger: to ours, warnings and up.
if (tracesUrl(config) !== undefined) reportTracingProblems(logger);

if (config.workers > 1 && cluster.isPrimary) {
  superviseWorkers(config.workers, logger);
} else {
  await serve(config, logger);
}

/**
 * WORKERS > 1: this process only forks the server processes, which share
 * the port, replaces one that dies, and passes SIGTERM/SIGINT on; it exits
 * when they all have (code 1 if any of them failed to stop cleanly).
 */
function superviseWorkers(count: number, log: Logger): void {
  // Every worker accepts from the shared socket itself. Node's default on Linux (round-robin) has this
  // process accept and hand each connection to a worker, waiting for the worker's reply before the next:
  // a connection handed to a worker that has just died is never answered nor closed (the client hangs),
  // and a busy worker takes its connections one reply at a time. The kernel's queue has neither problem:
  // a dead worker's share stays in the queue for the live ones, and a busier worker simply accepts less.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  let stopping = false;
  let failed = false;
  const recentDeaths: number[] = [];
  const listening = new Set<number>();
  const fork = (): void => {
    if (!stopping) cluster.fork();
  };
  cluster.on('listening', (worker) => listening.add(worker.id));
  cluster.on('exit', (worker, code, signal) => {
    const wasListening = listening.delete(worker.id);
    if (stopping) {
      // A worker still starting may end by the signal itself, before its handler is installed: not a failure.
      if (code !== 0 && !(code === null && !wasListening)) failed = true;
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? 1 : 0);
      return;
    }
    const now = Date.now();
    recentDeaths.push(now);
    while (recentDeaths.length > 0 && (recentDeaths[0] ?? now) < now - 60_000) recentDeaths.shift();
    // A worker that keeps dying at start (bad database URL, port taken) is not restarted in a tight loop.
    const delay = Math.min(30_000, 250 * 2 ** Math.max(0, recentDeaths.length - 1));
    log.error({ workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'a server worker exited; starting another');
    setTimeout(fork, delay).unref();
  });
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping the server workers');
    const workers = Object.values(cluster.workers ?? {});
    if (workers.length === 0) process.exit(0);
    for (const worker of workers) worker?.process.kill(signal);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  for (let i = 0; i < count; i++) fork();
  log.info({ workers: count }, 'started the server workers');
}

async function serve(config: Config, logger: Logger): Promise<void> {
  let mockClose: (() => Promise<void>) | undefined;
  let mockUrl: string | undefined;
  if (config.mockUpstream) {
    const { createMockUpstream } = await import('@llmchat/tools/mock-upstream');
    const mock = await createMockUpstream({ host: '127.0.0.1', port: config.mockUpstreamPort, defaultChunks: 24, defaultIntervalMs: 40 });
    mockClose = () => mock.close();
    mockUrl = mock.url;
    logger.info({ url: mock.url }, 'simulated upstream started (answers are generated locally, no network)');
  }

  // A stop asked for while starting is honoured once the app exists (a cluster worker can be told to stop mid-start).
  let stopAskedWhileStarting: string | undefined;
  const onSignalWhileStarting = (signal: string) => () => {
    stopAskedWhileStarting ??= signal;
  };
  const startingHandlers = { SIGTERM: onSignalWhileStarting('SIGTERM'), SIGINT: onSignalWhileStarting('SIGINT') };
  process.on('SIGTERM', startingHandlers.SIGTERM);
  process.on('SIGINT', startingHandlers.SIGINT);

  const lifecycle = createLifecycle();
  const app = await buildApp({ config, logger, lifecycle, simulatedUpstreamUrl: mockUrl });
  if (mockUrl) await app.deps.agents.seedDemoAgent(mockUrl);
  process.off('SIGTERM', startingHandlers.SIGTERM);
  process.off('SIGINT', startingHandlers.SIGINT);

  let metricsServer: Server | undefined;
  let shuttingDown = false;
  async function shutdown(signal: string): Promise<void> {
    if (shuttingDown) return;
    shuttingDown = true;
    // /health/ready answers 503 from here on, so the load balancer stops sending new work.
    lifecycle.draining = true;
    logger.info({ signal }, 'shutting down: draining running answers');
    const force = setTimeout(() => {
      logger.error('shutdown deadline passed; exiting');
      process.exit(1);
    }, config.drainTimeoutMs + SHUTDOWN_HANDOVER_MS);
    force.unref();
    try {
      metricsServer?.close();
      await app.close();
      await mockClose?.();
      logger.info('shut down cleanly');
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  if (stopAskedWhileStarting) {
    await shutdown(stopAskedWhileStarting);
    return;
  }

  try {
    // A deep accept queue: a burst of connections must wait, not be dropped into SYN retries.
    const backlog = 4096;
    // Several listening sockets, so a loaded instance accepts a crowd as fast as it arrives (http/acceptors.ts).
    // Cluster workers share the primary's socket instead.
    const sockets = cluster.isWorker || !reusePortSupported() ? 1 : config.listenSockets;
    if (sockets > 1) await assertPortFree(config.host, config.port);
    const address = await app.listen({ host: config.host, port: config.port, backlog, ...(sockets > 1 ? { reusePort: true } : {}) });
    await addAcceptors(app.server, sockets - 1, backlog);
    if (config.metricsPort !== undefined) {
      // Cluster workers share this port too: each scrape reaches one of them (label them apart with WORKERS=1 per instance).
      metricsServer = await listenForMetrics(app.deps.metrics, config.host, config.metricsPort);
      logger.info({ port: config.metricsPort }, 'metrics served on their own port');
    }
    logger.info({ address, database: app.deps.database.kind, sharedState: app.deps.state.kind }, 'LLMChat is listening');
    if (config.nodeEnv === 'production' && !config.cookieSecure) {
      logger.warn('COOKIE_SECURE=false was forced in production (COOKIE_INSECURE_FORCE=true): the refresh cookie travels over plain HTTP');
    }
    const short = descriptorWarning(readDescriptors(), config.upstreamConnections);
    if (short) {
      logger.warn(
        { ...short, upstreamConnections: config.upstreamConnections },
        'the open-file limit is below what UPSTREAM_CONNECTIONS answers at once need over HTTP/1.1 (a client and an upstream socket each); raise it (systemd LimitNOFILE=, ulimit -n, docker --ulimit nofile=) or lower UPSTREAM_CONNECTIONS',
      );
    }
  } catch (err) {
    // A stop that arrived while listening closes the server under the listen call: shutdown() ends the process.
    if (shuttingDown) return;
    logger.fatal({ err }, 'could not listen');
    process.exit(1);
  }
}
