/**
 * Ports for a long-lived deployment, counted up from a base. The OS hands
 * out ports from 32768 up for outgoing connections (ip_local_port_range),
 * so a server listening there can find its port taken by some client's
 * connection after a restart; below it, a port stays ours once chosen.
 */

import { createServer } from 'node:net';

/** The first port the OS may hand out for an outgoing connection (Linux's default ip_local_port_range). */
export const EPHEMERAL_PORTS_FROM = 32768;

/** Whether something could listen on host:port right now. */
export function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export interface PortAllocator {
  /** The next port from the base up that is free on `host` (default 127.0.0.1) and not handed out before. */
  next(host?: string): Promise<number>;
}

export function portAllocator(base: number): PortAllocator {
  if (!Number.isInteger(base) || base < 1024 || base >= EPHEMERAL_PORTS_FROM) {
    throw new Error(`the base port must be an integer from 1024 to ${EPHEMERAL_PORTS_FROM - 1}, got ${base}`);
  }
  let candidate = base;
  return {
    async next(host = '127.0.0.1') {
      while (candidate < EPHEMERAL_PORTS_FROM) {
        const port = candidate++;
        if (await canListen(host, port)) return port;
      }
      throw new Error(`no free port left between ${base} and ${EPHEMERAL_PORTS_FROM - 1}`);
    },
  };
}
