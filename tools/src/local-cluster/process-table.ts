/**
 * Processes by id, from /proc: whether one runs, what it runs, and killing
 * it with its process group. The deployment uses these for processes it did
 * not spawn itself (PostgreSQL, started by Patroni) and for ones a previous
 * command started (`cluster stop`).
 */

import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { withChildren } from '../bench/processes.js';

/**
 * The fields of /proc/<pid>/stat after the command name (which may hold
 * spaces): index 0 is field 3 (state), 2 the process group, 19 the start
 * time. Undefined when there is no such process.
 */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function integerField(pid: number, index: number): number | undefined {
  const value = Number(statFields(pid)?.[index]);
  return Number.isInteger(value) ? value : undefined;
}

/** Whether a process with this id exists (a zombie counts as gone). */
export function alive(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

/**
 * When the process started (clock ticks after boot). With its id it names
 * one process for good: ids are reused, this pair never is.
 */
export function startTime(pid: number): number | undefined {
  return integerField(pid, 19);
}

/** The id of the process's group, or undefined when it is gone. */
export function processGroup(pid: number): number | undefined {
  return integerField(pid, 2);
}

/** Its command line or environment as NUL-separated words, as /proc has them ('' when unreadable). */
function procWords(pid: number, file: 'cmdline' | 'environ'): string[] {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Whether a word of the process's command line contains `text` (PostgreSQL's carries its data directory). */
export function commandLineMentions(pid: number, text: string): boolean {
  return procWords(pid, 'cmdline').some((word) => word.includes(text));
}

/**
 * Whether the process's environment has `name=value`: every process of a
 * deployment carries its mark, which no other process has (a command that
 * merely names the deployment's directory, like `cluster stop`, does not).
 */
export function hasEnvironment(pid: number, name: string, value: string): boolean {
  return procWords(pid, 'environ').includes(`${name}=${value}`);
}

/** Every process id in /proc. */
function allPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((e) => /^\d+$/.test(e))
      .map(Number);
  } catch {
    return [];
  }
}

/** Ids of the running processes (but this one) whose environment has `name=value`. */
export function processesWithEnvironment(name: string, value: string): number[] {
  return allPids().filter((pid) => pid !== process.pid && alive(pid) && hasEnvironment(pid, name, value));
}

/** Sends a signal to a process or (negative id) a group; false when there is none. */
export function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

/** Resolves true once none of `pids` runs, false if some still do after `timeoutMs`. */
export async function waitForExit(pids: readonly number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

/**
 * kill -9 a process, every process of its group and its children, then
 * waits for them. Each process here leads a group of its own (which holds
 * nginx's workers, Patroni's helpers), but PostgreSQL: Patroni starts the
 * postmaster in a new session through a helper that exits, and every
 * backend starts a session of its own, so they are found as its children.
 */
export async function killTree(pid: number, timeoutMs = 10_000): Promise<void> {
  const group = processGroup(pid);
  const targets = [...new Set([...withChildren(pid), ...(group === undefined ? [] : groupMembers(group))])];
  // Never this process's own group (a child that was not given one of its own).
  if (group !== undefined && group !== processGroup(process.pid)) signal(-group, 'SIGKILL');
  for (const target of targets) signal(target, 'SIGKILL');
  if (!(await waitForExit(targets, timeoutMs))) throw new Error(`process ${pid}, its group or its children still run ${timeoutMs} ms after kill -9`);
}

/** Ids of the running processes in group `group`. */
function groupMembers(group: number): number[] {
  return allPids().filter((pid) => processGroup(pid) === group && alive(pid));
}
