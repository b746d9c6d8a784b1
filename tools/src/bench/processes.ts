/** Child processes of the bench (mock upstream, server): spawn, wait until ready, watch, stop. */

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

const TAIL_LINES = 60;
const PROBLEM_LINES_KEPT = 20;
const LINE_CHARS = 600;
/** Problem lines are parsed whole for grouping, so they may be this long before being cut. */
const PROBLEM_LINE_CHARS = 20_000;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProblemReport {
  count: number;
  first: string[];
  /** Count per kind of line (`warn: <msg>: <err.message>` for pino lines), most frequent first. */
  kinds: { kind: string; count: number }[];
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number | undefined;
  /** Resolves when the process has exited, however that happened. */
  readonly exited: Promise<ExitInfo>;
  /** Undefined while it runs. */
  exitInfo(): ExitInfo | undefined;
  /** The last lines of stdout and stderr, oldest first. */
  tail(): string[];
  /** Lines that look like warnings or errors (stderr, or pino level ≥ 40): the first ones, and counts by kind. */
  problems(): ProblemReport;
  /** Resolves with the first output line matching `pattern`; rejects on exit or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs: number): Promise<ExitInfo>;
  /** Sends a signal (SIGKILL for a crash); resolves once it has exited. */
  kill(signal: NodeJS.Signals): Promise<ExitInfo>;
}

const PINO_LEVELS: Record<number, string> = { 40: 'warn', 50: 'error', 60: 'fatal' };
const KINDS_KEPT = 50;

/** A short, stable description of a problem line, to group repeats of the same failure. */
export function problemKind(line: string): string {
  if (line.startsWith('{')) {
    try {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown; err?: { message?: unknown; type?: unknown } };
      const level = typeof entry.level === 'number' ? (PINO_LEVELS[entry.level] ?? String(entry.level)) : '?';
      const parts = [level];
      if (typeof entry.msg === 'string') parts.push(entry.msg);
      if (typeof entry.err?.message === 'string') parts.push(entry.err.message);
      return parts.join(': ').slice(0, 200);
    } catch {
      // A truncated JSON line: fall through to the plain text.
    }
    const msg = /"msg":"([^"]{0,160})"/.exec(line)?.[1];
    const err = /"message":"([^"]{0,160})"/.exec(line)?.[1];
    if (msg !== undefined || err !== undefined) return [msg, err].filter((v) => v !== undefined).join(': ');
  }
  return line.replace(/\d+/g, 'N').slice(0, 200);
}

/** Children not yet exited; killed as a last resort if the bench exits without stopping them. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** pino's numeric levels: 40 warn, 50 error, 60 fatal. */
function isProblemLine(line: string, stream: 'stdout' | 'stderr'): boolean {
  if (stream === 'stderr') return line.trim() !== '';
  return /"level":\s*(40|50|60)\b/.test(line) || /\b(error|fatal|exception)\b/i.test(line);
}

const FOLLOW_INTERVAL_MS = 200;

/** Calls `onLine` with each line appended to `file` after `offset`, until stopped (which reads what is left). */
function followFile(file: string, offset: number, onLine: (line: string) => void): () => void {
  const fd = openSync(file, 'r');
  const decoder = new StringDecoder('utf8');
  const buffer = Buffer.alloc(64 * 1024);
  let position = offset;
  let pending = '';
  const read = (): void => {
    for (let n = readSync(fd, buffer, 0, buffer.length, position); n > 0; n = readSync(fd, buffer, 0, buffer.length, position)) {
      position += n;
      pending += decoder.write(buffer.subarray(0, n));
    }
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  };
  const timer = setInterval(read, FOLLOW_INTERVAL_MS);
  timer.unref();
  return () => {
    clearInterval(timer);
    read();
    if (pending !== '') onLine(pending);
    closeSync(fd);
  };
}

/**
 * Starts a child in its own process group. Its output goes to pipes, or with
 * `logFile` straight into that file (appended): then a grandchild that
 * inherits the output (PostgreSQL started by Patroni) writes there too and
 * does not keep this process waiting for the pipes to close, and the log
 * survives this process.
 */
export function startProcess(
  name: string,
  command: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; cwd: string; uid?: number | undefined; gid?: number | undefined; logFile?: string | undefined },
): ManagedProcess {
  const logFd = options.logFile === undefined ? undefined : openSync(options.logFile, 'a');
  const logStart = logFd === undefined ? 0 : fstatSync(logFd).size;
  // Own process group: a Ctrl-C in the terminal reaches only the bench, which then stops the children in order.
  const child: ChildProcess = spawn(command, args, {
    env: options.env,
    cwd: options.cwd,
    stdio: logFd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd],
    detached: true,
    ...(options.uid === undefined ? {} : { uid: options.uid }),
    ...(options.gid === undefined ? {} : { gid: options.gid }),
  });
  if (logFd !== undefined) closeSync(logFd);
  if (child.pid !== undefined) live.add(child);
  const lines: string[] = [];
  const problemLines: string[] = [];
  let problemCount = 0;
  const kinds = new Map<string, number>();
  const lineWaiters = new Set<(line: string) => void>();
  let exit: ExitInfo | undefined;

  let stopFollowing: (() => void) | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    // 'close' rather than 'exit': by then all output has been read.
    child.once('close', (code, signal) => {
      live.delete(child);
      stopFollowing?.();
      stopFollowing = undefined;
      exit = { code, signal };
      resolve(exit);
    });
    child.once('error', (error) => {
      stopFollowing?.();
      stopFollowing = undefined;
      lines.push(`[${name}] spawn failed: ${error.message}`);
      exit = { code: null, signal: null };
      resolve(exit);
    });
  });

  const onLine = (raw: string, kind: 'stdout' | 'stderr'): void => {
    const line = raw.length > LINE_CHARS ? `${raw.slice(0, LINE_CHARS)}…` : raw;
    lines.push(line);
    if (lines.length > TAIL_LINES) lines.shift();
    if (isProblemLine(raw, kind)) {
      problemCount++;
      if (problemLines.length < PROBLEM_LINES_KEPT) problemLines.push(line);
      const problem = problemKind(raw.length > PROBLEM_LINE_CHARS ? raw.slice(0, PROBLEM_LINE_CHARS) : raw);
      const seen = kinds.get(problem);
      if (seen !== undefined) kinds.set(problem, seen + 1);
      else if (kinds.size < KINDS_KEPT) kinds.set(problem, 1);
    }
    for (const waiter of lineWaiters) waiter(line);
  };
  const watch = (stream: NodeJS.ReadableStream | null, kind: 'stdout' | 'stderr'): void => {
    if (stream === null) return;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (raw: string) => onLine(raw, kind));
  };
  watch(child.stdout, 'stdout');
  watch(child.stderr, 'stderr');
  // A log file mixes both streams: its lines are judged as stdout's are (by their content).
  if (options.logFile !== undefined) stopFollowing = followFile(options.logFile, logStart, (raw) => onLine(raw, 'stdout'));

  return {
    name,
    pid: child.pid,
    exited,
    exitInfo: () => exit,
    tail: () => [...lines],
    problems: () => ({
      count: problemCount,
      first: [...problemLines],
      kinds: [...kinds].map(([kind, count]) => ({ kind, count })).sort((a, b) => b.count - a.count),
    }),
    waitForLine(pattern, timeoutMs) {
      const seen = lines.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${name}: no line matching ${String(pattern)} within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = (line: string): void => {
          if (!pattern.test(line)) return;
          cleanup();
          resolve(line);
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          lineWaiters.delete(waiter);
        };
        lineWaiters.add(waiter);
        void exited.then((info) => {
          cleanup();
          reject(new Error(`${name} exited (${describeExit(info)}) before printing a line matching ${String(pattern)}`));
        });
      });
    },
    async stop(graceMs) {
      if (exit !== undefined) return exit;
      child.kill('SIGTERM');
      const done = await Promise.race([exited, sleep(graceMs).then(() => undefined)]);
      if (done !== undefined) return done;
      child.kill('SIGKILL');
      return exited;
    },
    kill(signal) {
      if (exit === undefined) child.kill(signal);
      return exited;
    },
  };
}

export function describeExit(info: ExitInfo): string {
  return info.signal !== null ? `signal ${info.signal}` : `code ${String(info.code)}`;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not find a free port'))));
    });
  });
}

/**
 * Polls `url` until it answers 200, at most until `timeoutMs`; gives up at
 * once if `process` exits. Each poll has its own short timeouts.
 */
export async function waitForReady(url: string, timeoutMs: number, process: ManagedProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const exit = process.exitInfo();
    if (exit !== undefined) throw new Error(`${process.name} exited (${describeExit(exit)}) while starting`);
    try {
      const response = await request(url, { headersTimeout: 2_000, bodyTimeout: 2_000 });
      const body = await response.body.text();
      if (response.statusCode === 200) return;
      last = `HTTP ${response.statusCode} ${body.slice(0, 200)}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await sleep(250);
  }
  throw new Error(`${process.name} not ready at ${url} within ${timeoutMs} ms (last: ${last})`);
}

/** CPU seconds (user + system) a process has used so far, from /proc; undefined where that is not available. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}

/** A process and its direct children (a server's cluster workers), from /proc; just the process where /proc is missing. */
export function withChildren(pid: number): number[] {
  const pids = [pid];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) pids.push(Number(entry));
    } catch {
      // The process ended between listing and reading.
    }
  }
  return pids;
}

/** Sum of a per-process figure over a process and its children; undefined when the process itself has none. */
export function sumOverChildren(pid: number | undefined, figure: (pid: number) => number | undefined): number | undefined {
  if (pid === undefined || figure(pid) === undefined) return undefined;
  return withChildren(pid).reduce((total, p) => total + (figure(p) ?? 0), 0);
}

/**
 * CPU seconds used so far by every process whose command name is one of `names`
 * (e.g. all PostgreSQL backends), from /proc; undefined where /proc is missing.
 * The time of children already reaped counts too (`cutime`/`cstime`): a
 * PostgreSQL backend that exits between two readings lands in the
 * postmaster's, so the sum only grows and a difference is never negative.
 */
export function cpuSecondsByCommand(names: readonly string[]): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  let total = 0;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!names.includes(name)) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime (fields 14-17 of stat).
      const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      if (Number.isFinite(ticks)) total += ticks / 100;
    } catch {
      // The process ended between listing and reading.
    }
  }
  return total;
}

/** Resident memory of a process in MiB, from /proc; undefined where that is not available. */
export function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match?.[1] === undefined ? undefined : Number(match[1]) / 1024;
  } catch {
    return undefined;
  }
}

/** Busy and total CPU time of the whole machine so far (all cores, clock ticks), from /proc/stat. */
export function machineCpuTicks(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    if (fields.length < 4 || fields.some((v) => !Number.isFinite(v))) return undefined;
    const total = fields.reduce((a, b) => a + b, 0);
    // idle + iowait are not busy.
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** Open file descriptors of a process (entries of /proc/<pid>/fd); undefined where that is not readable. */
export function openFiles(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** The soft and hard open-files limits of a process, from /proc/<pid>/limits; `Infinity` for unlimited. */
export function openFilesLimit(pid: number | 'self'): { soft: number; hard: number } | undefined {
  try {
    const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (line === null) return undefined;
    const value = (v: string | undefined): number => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v));
    return { soft: value(line[1]), hard: value(line[2]) };
  } catch {
    return undefined;
  }
}
