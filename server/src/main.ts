import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLifecycle } from './lifecycle.js';
import { createLogger } from './logger.js';

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
const logger = createLogger(config);

let mockClose: (() => Promise<void>) | undefined;
let mockUrl: string | undefined;
if (config.mockUpstream) {
  const { createMockUpstream } = await import('@llmchat/tools/mock-upstream');
  const mock = await createMockUpstream({ host: '127.0.0.1', port: config.mockUpstreamPort, defaultChunks: 24, defaultIntervalMs: 40 });
  mockClose = () => mock.close();
  mockUrl = mock.url;
  logger.info({ url: mock.url }, 'simulated upstream started (answers are generated locally, no network)');
}

const lifecycle = createLifecycle();
const app = await buildApp({ config, logger, lifecycle });
if (mockUrl) await app.deps.agents.seedDemoAgent(mockUrl);

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
  }, 30_000);
  force.unref();
  try {
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

try {
  // A deep accept queue: a burst of connections must wait, not be dropped into SYN retries.
  const address = await app.listen({ host: config.host, port: config.port, backlog: 4096 });
  logger.info({ address, database: app.deps.database.kind, sharedState: app.deps.state.kind }, 'LLMChat is listening');
} catch (err) {
  logger.fatal({ err }, 'could not listen');
  process.exit(1);
}
