/**
 * Buildah on this machine, for the container image test: no registry is
 * reachable, so the base image is made locally from Debian packages
 * (mmdebstrap) plus the pinned Node 24 binary of package.json, and cached
 * outside the clone with its own container storage (vfs: works unprivileged
 * and inside the sandbox, no overlay mounts).
 */

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where `.ci/run` caches downloads too: outside the clone, kept between CI runs. */
export function cacheDir(): string {
  return process.env.LLMCHAT_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'llmchat');
}

export function commandPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    const candidate = path.join(dir, name);
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

export interface Buildah {
  /** Runs `buildah <args>` on the test's storage; resolves with stdout. */
  (args: string[], options?: { timeoutMs?: number; cwd?: string }): Promise<string>;
  /** The global options, for a caller that spawns buildah itself. */
  readonly globalArgs: string[];
}

export function buildah(): Buildah {
  const root = path.join(cacheDir(), 'containers');
  const globalArgs = ['--root', path.join(root, 'storage'), '--runroot', path.join(root, 'run'), '--storage-driver', 'vfs'];
  const call = async (args: string[], options: { timeoutMs?: number; cwd?: string } = {}): Promise<string> => {
    try {
      const { stdout } = await run('buildah', [...globalArgs, ...args], { maxBuffer: 256 * 1024 * 1024, timeout: options.timeoutMs ?? 600_000, cwd: options.cwd });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string; stdout?: string };
      throw new Error(`buildah ${args.join(' ')} failed: ${e.message}\n${(e.stdout ?? '').slice(-4000)}\n${(e.stderr ?? '').slice(-4000)}`, { cause: err });
    }
  };
  return Object.assign(call, { globalArgs });
}

async function imageExists(b: Buildah, name: string): Promise<boolean> {
  try {
    await b(['inspect', '--type', 'image', name]);
    return true;
  } catch {
    return false;
  }
}

/**
 * The local stand-in for `node:24-bookworm-slim`: Debian bookworm minbase
 * (mmdebstrap), the pinned Node 24 binary, the npm that runs this test, and
 * this host's CA bundle (the build's `npm ci` reaches the registry through
 * whatever TLS the host trusts). Built once per Node version and CA bundle.
 */
export async function ensureBaseImage(b: Buildah, repoRoot: string): Promise<string> {
  const nodePackage = path.join(repoRoot, 'node_modules', `node-linux-${process.arch}`);
  const nodeBinary = path.join(nodePackage, 'bin', 'node');
  if (!existsSync(nodeBinary)) throw new Error(`no pinned Node binary at ${nodeBinary} (npm ci installs it)`);
  const nodeVersion = (JSON.parse(readFileSync(path.join(nodePackage, 'package.json'), 'utf8')) as { version: string }).version;
  // The npm on PATH (the pinned Node package ships none): .../npm/bin/npm-cli.js, two levels up.
  const npmCommand = commandPath('npm');
  const npmDir = npmCommand === undefined ? '' : path.resolve(path.dirname(realpathSync(npmCommand)), '..');
  if (!existsSync(path.join(npmDir, 'bin', 'npm-cli.js'))) throw new Error(`no npm package found from ${npmCommand ?? 'PATH'}`);
  const caFile = [process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt'].find((f): f is string => f !== undefined && existsSync(f));
  const caHash = caFile === undefined ? 'none' : createHash('sha256').update(readFileSync(caFile)).digest('hex').slice(0, 12);
  const name = `localhost/llmchat-test-base:node-${nodeVersion}-ca-${caHash}`;
  if (await imageExists(b, name)) return name;

  const tarball = path.join(cacheDir(), 'image', `debian-bookworm-minbase-${process.arch}.tar`);
  if (!existsSync(tarball)) {
    mkdirSync(path.dirname(tarball), { recursive: true });
    const partial = `${tarball}.partial`;
    rmSync(partial, { force: true });
    await run('mmdebstrap', ['--variant=minbase', '--quiet', 'bookworm', partial, 'http://deb.debian.org/debian'], { timeout: 900_000, maxBuffer: 64 * 1024 * 1024 });
    renameSync(partial, tarball);
  }
  const container = (await b(['from', '--name', `llmchat-test-base-${process.pid}`, 'scratch'])).trim();
  try {
    await b(['add', container, tarball, '/']);
    await b(['copy', container, nodeBinary, '/usr/local/bin/node']);
    await b(['copy', container, npmDir, '/usr/local/lib/node_modules/npm']);
    await b(['run', '--isolation', 'chroot', container, '--', 'sh', '-c', 'ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node -v && npm -v']);
    const config = ['--env', `NODE_VERSION=${nodeVersion}`, '--cmd', 'node'];
    if (caFile !== undefined) {
      await b(['copy', container, caFile, '/usr/local/share/ca-certificates/llmchat-host-bundle.crt']);
      config.push('--env', 'NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/llmchat-host-bundle.crt');
    }
    await b(['config', ...config, container]);
    await b(['commit', '--format', 'docker', container, name]);
  } finally {
    await b(['rm', container]).catch(() => undefined);
  }
  return name;
}

/** The image's size as buildah reports it (e.g. "376 MB"). */
export async function imageSize(b: Buildah, name: string): Promise<string> {
  const images = JSON.parse(await b(['images', '--json', name])) as { size: string }[];
  return images[0]?.size ?? 'unknown';
}

/** The uid owning a listening TCP socket on `port`, and its inode (Linux /proc/net). */
export function listeningSocket(port: number): { uid: number; inode: string } | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (fields[1]?.endsWith(`:${hexPort}`) && fields[3] === '0A') return { uid: Number(fields[7]), inode: fields[9] ?? '' };
    }
  }
  return undefined;
}
