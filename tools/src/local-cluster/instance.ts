/**
 * One LLMChat server process (the built `server/dist/main.js`) on a fixed
 * loopback port, so it can be stopped, crashed and started again where a
 * proxy in front of it expects it.
 */

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, waitForReady, type ExitInfo, type ManagedProcess, type ProblemReport } from '../bench/processes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '../../..');
export const SERVER_MAIN = path.join(REPO_ROOT, 'server/dist/main.js');
const READY_TIMEOUT_MS = 60_000;

export interface LlmchatInstance {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly running: boolean;
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

export function llmchatInstance(spec: { name: string; port: number; env: NodeJS.ProcessEnv }): LlmchatInstance {
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
    async start() {
      if (instance.running) return;
      const child = startProcess(spec.name, process.execPath, [SERVER_MAIN], {
        env: { ...spec.env, PORT: String(spec.port), HOST: '127.0.0.1' },
        cwd: REPO_ROOT,
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
