/**
 * One LLMChat server process (the built `server/dist/main.js`) on a fixed
 * loopback port, so it can be stopped, crashed and started again where a
 * proxy in front of it expects it.
 */

import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, waitForReady, type ExitInfo, type ManagedProcess, type ProblemReport } from '../bench/processes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '../../..');
/** The built server; LLMCHAT_SERVER_MAIN names another build (to measure one against another). */
export const SERVER_MAIN = process.env.LLMCHAT_SERVER_MAIN ?? path.join(REPO_ROOT, 'server/dist/main.js');
const READY_TIMEOUT_MS = 60_000;

/**
 * The environment of a deployment's instances: production's defaults, but
 * for rate limits (a drill's load comes from one address and one user, so
 * limits would measure themselves), a day-long access token and quiet logs.
 * `extra` wins.
 */
export function serverEnvironment(spec: {
  dataDir: string;
  databaseUrl: string;
  databaseReadUrl?: string;
  redisUrl: string;
  adminPassword: string;
  extra?: NodeJS.ProcessEnv | undefined;
}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    DATA_DIR: spec.dataDir,
    DATABASE_URL: spec.databaseUrl,
    ...(spec.databaseReadUrl === undefined ? {} : { DATABASE_READ_URL: spec.databaseReadUrl }),
    REDIS_URL: spec.redisUrl,
    JWT_SECRET: randomBytes(32).toString('base64url'),
    SECRETS_KEY: randomBytes(32).toString('base64url'),
    ADMIN_USERNAME: 'admin',
    ADMIN_PASSWORD: spec.adminPassword,
    MOCK_UPSTREAM: 'false',
    LOG_LEVEL: 'warn',
    ACCESS_TOKEN_TTL: '86400',
    CHAT_RATE_LIMIT_PER_MINUTE: '0',
    LOGIN_RATE_LIMIT_PER_MINUTE: '0',
    // Behind nginx on the same host.
    TRUST_PROXY: '1',
    // The cluster's mock upstreams listen on loopback, which the outbound policy refuses unless allowed.
    UPSTREAM_ALLOWED_CIDRS: '127.0.0.0/8',
    ...spec.extra,
  };
}

export interface LlmchatInstance {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly running: boolean;
  /** The running process's id. */
  readonly pid: number | undefined;
  /** Starts it (again, same port and environment) and waits for /health/ready. */
  start(): Promise<void>;
  /** SIGTERM: the graceful shutdown (drain, hand over); resolves at exit. */
  terminate(): Promise<ExitInfo | undefined>;
  /** kill -9. */
  crash(): Promise<ExitInfo | undefined>;
  /** Output of the current (or last) process. */
  tail(): string[];
  /** Warnings and errors over every process this instance has run. */
  problems(): ProblemReport[];
}

/** With `logFile`, its output is appended there (else kept in memory). */
export function llmchatInstance(spec: { name: string; port: number; env: NodeJS.ProcessEnv; logFile?: string }): LlmchatInstance {
  const processes: ManagedProcess[] = [];
  const current = (): ManagedProcess | undefined => processes.at(-1);
  const url = `http://127.0.0.1:${spec.port}`;
  const instance: LlmchatInstance = {
    name: spec.name,
    port: spec.port,
    url,
    get running() {
      const child = current();
      return child !== undefined && child.exitInfo() === undefined;
    },
    get pid() {
      return instance.running ? current()?.pid : undefined;
    },
    async start() {
      if (instance.running) return;
      const child = startProcess(spec.name, process.execPath, [SERVER_MAIN], {
        env: { ...spec.env, PORT: String(spec.port), HOST: '127.0.0.1' },
        cwd: REPO_ROOT,
        logFile: spec.logFile,
      });
      processes.push(child);
      try {
        await waitForReady(`${url}/health/ready`, READY_TIMEOUT_MS, child);
        // Another process may have taken the port between choosing it and listening on it: make sure the answer was ours.
        const detailed = (await (await fetch(`${url}/health/detailed`)).json()) as { pid?: unknown };
        if (detailed.pid !== child.pid) throw new Error(`${spec.name}: port ${spec.port} is answered by another process (pid ${String(detailed.pid)})`);
      } catch (err) {
        await child.kill('SIGKILL');
        throw new Error(`${(err as Error).message}\n${child.tail().join('\n')}`, { cause: err });
      }
    },
    terminate: async () => (instance.running ? current()?.kill('SIGTERM') : current()?.exitInfo()),
    crash: async () => (instance.running ? current()?.kill('SIGKILL') : current()?.exitInfo()),
    tail: () => current()?.tail() ?? [],
    problems: () => processes.map((p) => p.problems()),
  };
  return instance;
}
