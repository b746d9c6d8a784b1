import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { addAcceptors, assertPortFree, reusePortSupported } from './acceptors.js';

function listen(server: Server | ReturnType<typeof createTcpServer>, options: { port: number; reusePort?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', backlog: 511, ...options }, () => resolve());
  });
}

/** Listening sockets on the port, as the kernel lists them (`ss`), or undefined where ss is missing. */
function listeningSockets(port: number): number | undefined {
  try {
    const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
    return out.split('\n').filter((l) => l.trim() !== '').length;
  } catch {
    return undefined;
  }
}

async function get(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' } });
  return res.text();
}

describe('addAcceptors', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0)) await c();
  });

  it('opens more listening sockets on the port, each handing its connections to the one HTTP server', async () => {
    let served = 0;
    const server = createServer((_req, res) => {
      served++;
      res.end('ok');
    });
    await listen(server, { port: 0, reusePort: true });
    cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    const extra = await addAcceptors(server, 3, 511);
    expect(extra).toHaveLength(3);
    const sockets = listeningSockets(port);
    if (sockets !== undefined) expect(sockets).toBe(4);
    // New connections land on any of the four sockets; every one is answered by the same handler.
    const answers = await Promise.all(Array.from({ length: 60 }, () => get(port)));
    expect(answers.every((a) => a === 'ok')).toBe(true);
    expect(served).toBe(60);
  });

  it('stops them all when the server stops listening', async () => {
    const server = createServer((_req, res) => res.end('ok'));
    await listen(server, { port: 0, reusePort: true });
    const port = (server.address() as AddressInfo).port;
    const extra = await addAcceptors(server, 2, 511);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(extra.every((s) => !s.listening)).toBe(true);
    const refused = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });

  it('adds nothing for a count of 0', async () => {
    const server = createServer((_req, res) => res.end('ok'));
    await listen(server, { port: 0 });
    cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
    expect(await addAcceptors(server, 0, 511)).toEqual([]);
  });
});

describe('assertPortFree', () => {
  it('fails with EADDRINUSE when something listens on the port, even with SO_REUSEPORT', async () => {
    const other = createTcpServer();
    await listen(other, { port: 0, reusePort: true });
    const port = (other.address() as AddressInfo).port;
    try {
      await expect(assertPortFree('127.0.0.1', port)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
    // Free again: the check passes and leaves nothing listening.
    await assertPortFree('127.0.0.1', port);
    expect(listeningSockets(port) ?? 0).toBe(0);
  });
});

describe('reusePortSupported', () => {
  it('is on where Node supports reusePort and off on macOS and Windows', () => {
    expect(reusePortSupported('linux')).toBe(true);
    expect(reusePortSupported('darwin')).toBe(false);
    expect(reusePortSupported('win32')).toBe(false);
  });
});
