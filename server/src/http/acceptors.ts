import type { Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';

/**
 * Extra listening sockets on the server's port, so a busy instance accepts
 * new connections as fast as they arrive.
 *
 * libuv accepts one connection per listening socket per event-loop turn
 * (libuv PR 3696, in every Node since 20). An instance carrying thousands
 * of live answers spends milliseconds per loop turn, so one listening
 * socket accepts a few hundred connections a second, and a crowd arriving
 * faster waits in the kernel's accept queue: seconds before its first
 * token, although the process has CPU to spare. With SO_REUSEPORT each
 * further socket on the same address has its own queue and accepts its own
 * connection per turn; the kernel spreads new connections over them. Each
 * accepted socket is handed to the one HTTP server, which treats it like its
 * own (timeouts, keep-alive, connection tracking, close).
 *
 * The server itself must listen with `reusePort: true` first. SO_REUSEPORT
 * would also let a second process of the same user bind the port and
 * silently take half the connections: `assertPortFree` first keeps a port
 * in use an error at start, as it is with a single listener.
 */
export async function addAcceptors(server: HttpServer, count: number, backlog: number): Promise<Server[]> {
  const address = server.address();
  if (count <= 0 || address === null || typeof address === 'string') return [];
  const extra: Server[] = [];
  for (let i = 0; i < count; i++) {
    const acceptor = createServer((socket) => server.emit('connection', socket));
    await new Promise<void>((resolve, reject) => {
      acceptor.once('error', reject);
      acceptor.listen({ host: address.address, port: address.port, backlog, reusePort: true }, () => {
        acceptor.off('error', reject);
        resolve();
      });
    });
    extra.push(acceptor);
  }
  // When the server stops listening, so do they (close() on the server stops new connections at once).
  const close = server.close.bind(server);
  server.close = (callback?: (err?: Error) => void) => {
    for (const acceptor of extra) acceptor.close();
    return close(callback);
  };
  return extra;
}

/** Fails with EADDRINUSE, as a plain listen would, when something already listens on the port. */
export async function assertPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    // A plain bind, without SO_REUSEPORT: refused while anything listens there.
    probe.listen({ host, port }, () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

/** Where Node's `reusePort` works (elsewhere, macOS and Windows among them, listen refuses it): one socket there. */
export function reusePortSupported(platform: NodeJS.Platform = process.platform): boolean {
  return platform === 'linux' || platform === 'freebsd' || platform === 'sunos' || platform === 'aix';
}
