/**
 * A deployment's state file: its directory, the process that owns it and
 * every process it started, so that a later command (`cluster stop`) can
 * end exactly those, even when the owner is gone, and nothing else.
 */

import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { alive, commandLineMentions, killTree, processesWithEnvironment, signal, startTime, waitForExit } from './process-table.js';

/**
 * Every process a deployment spawns has `LLMCHAT_DEPLOYMENT_DIR=<its
 * directory>` in its environment. Only some keep it readable: Redis, nginx
 * and PostgreSQL write their process titles over it.
 */
export const DEPLOYMENT_MARK = 'LLMCHAT_DEPLOYMENT_DIR';
const OWNER_STOP_MS = 60_000;
const KILL_WAIT_MS = 15_000;

/** A process by id and start time: the pair names it for good (ids alone are reused). */
export interface RecordedProcess {
  name: string;
  pid: number;
  startTime: number;
}

export interface DeploymentState {
  version: 1;
  dataDir: string;
  /** The process that started the deployment and stops it on SIGTERM. */
  owner: RecordedProcess;
  startedAt: string;
  /** Processes started directly (each leads a process group of its own), as of the last write. */
  processes: RecordedProcess[];
  /** What `--json` printed, once the deployment was ready. */
  endpoints?: unknown;
}

/** Where `npm run cluster` keeps what is not a deployment's own: the pointer to the current one, a detached start's log. */
export const CLUSTER_HOME = path.join(tmpdir(), 'llmchat-cluster');
/** Names the state file of the deployment `npm run cluster` started last (while it runs). */
export const CURRENT_POINTER = path.join(CLUSTER_HOME, 'current.json');

export function pointedStateFile(): string | undefined {
  try {
    return (JSON.parse(readFileSync(CURRENT_POINTER, 'utf8')) as { stateFile?: string }).stateFile;
  } catch {
    return undefined;
  }
}

/** The current deployment's state, if the pointer names one whose state file is still there. */
export function readPointer(): DeploymentState | undefined {
  const stateFile = pointedStateFile();
  return stateFile !== undefined && existsSync(stateFile) ? readState(stateFile) : undefined;
}

export function stateFileOf(dataDir: string): string {
  return path.join(dataDir, 'state.json');
}

/** A process as the state file records it; undefined when it is not running. */
export function recorded(name: string, pid: number | undefined): RecordedProcess | undefined {
  const started = pid === undefined ? undefined : startTime(pid);
  return pid === undefined || started === undefined ? undefined : { name, pid, startTime: started };
}

/** Whether the recorded process still runs (and not some other one with its id). */
export function stillRunning(process: RecordedProcess): boolean {
  return alive(process.pid) && startTime(process.pid) === process.startTime;
}

/** Written readable by the owner only: the endpoints carry passwords. */
export function writeState(state: DeploymentState): void {
  writeFileSync(stateFileOf(state.dataDir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

export function readState(stateFile: string): DeploymentState {
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as Partial<DeploymentState>;
  if (state.version !== 1 || typeof state.dataDir !== 'string' || typeof state.owner?.pid !== 'number' || !Array.isArray(state.processes)) {
    throw new Error(`${stateFile} is not a deployment state file`);
  }
  return state as DeploymentState;
}

/**
 * Postmasters of the deployment's PostgreSQL nodes (Patroni starts them, so
 * no state file has them): their data directory's postmaster.pid names
 * them, their command line proves it.
 */
function postmasters(dataDir: string): number[] {
  const root = path.join(dataDir, 'patroni');
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((node) => {
    const dir = path.join(root, node, 'data');
    try {
      const pid = Number(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n', 1)[0]);
      return Number.isInteger(pid) && pid > 0 && alive(pid) && commandLineMentions(pid, dir) ? [pid] : [];
    } catch {
      return [];
    }
  });
}

/**
 * Ends a deployment: asks its owner to stop it (SIGTERM), then kill -9 every
 * process left that is provably the deployment's, with its process group,
 * and deletes the directory. Resolves with the ids it had to kill.
 */
export async function stopDeployment(state: DeploymentState): Promise<number[]> {
  const { dataDir } = state;
  // The owner itself may call this (stopped while still starting): it must not wait for or kill itself.
  const owner = state.owner.pid === process.pid ? [] : [state.owner];
  if (owner.some(stillRunning)) {
    signal(state.owner.pid, 'SIGTERM');
    await waitForExit([state.owner.pid], OWNER_STOP_MS);
  }
  const running = [...owner, ...state.processes].filter(stillRunning).map((p) => p.pid);
  // A group outlives its leader (nginx's workers, PostgreSQL's backends), and Linux gives no new
  // process the id of a group that still exists: a group with a dead leader's id is still the deployment's.
  const orphanGroups = state.processes.filter((p) => !alive(p.pid)).map((p) => p.pid);
  const ours = [...new Set([...running, ...postmasters(dataDir), ...processesWithEnvironment(DEPLOYMENT_MARK, dataDir)])];
  for (const pid of orphanGroups) signal(-pid, 'SIGKILL');
  await Promise.all(ours.map((pid) => killTree(pid, KILL_WAIT_MS)));
  rmSync(dataDir, { recursive: true, force: true });
  return ours;
}
