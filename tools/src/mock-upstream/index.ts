/**
 * Mock upstream: a real HTTP server speaking the OpenAI, FastGPT, Anthropic
 * and Dify wire protocols, with per-request fault injection. See
 * docs/mock-upstream.md for routes and fault keys.
 */

import type { AddressInfo } from 'node:net';
import type { MockUpstreamStats, RecordedRequest } from './server.js';
import { createMockServer } from './server.js';

export type { FaultSpec } from './faults.js';
export type { ProviderName } from './protocol.js';
export type { MockUpstreamStats, RecordedRequest } from './server.js';

export interface MockUpstreamOptions {
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** Text chunks per answer when no `chunks` fault is given; default 12. */
  defaultChunks?: number;
  /** Milliseconds between chunks when no `interval` fault is given; default 30. */
  defaultIntervalMs?: number;
  /** How many recent requests `requests` keeps; default 200, 0 records nothing. */
  maxRecordedRequests?: number;
  /** Serve HTTPS with this key and certificate (PEM), offering HTTP/2 and HTTP/1.1; the URL is then `https://`. */
  tls?: { key: string; cert: string };
}

export interface MockUpstream {
  /** Base URL, e.g. `http://127.0.0.1:3099`. */
  readonly url: string;
  readonly port: number;
  /** Recent requests, newest last, capped (a copy on each read). */
  readonly requests: RecordedRequest[];
  clearRequests(): void;
  /** Counters, the same as `GET /_mock/stats`. */
  stats(): MockUpstreamStats;
  /** Ends open streams, closes every connection and stops listening. */
  close(): Promise<void>;
}

function nonNegativeInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`mock upstream: ${name} must be a non-negative integer`);
  return value;
}

export async function createMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const host = options.host ?? '127.0.0.1';
  const port = nonNegativeInteger('port', options.port, 0);
  const mock = createMockServer({
    chunks: nonNegativeInteger('defaultChunks', options.defaultChunks, 12),
    intervalMs: nonNegativeInteger('defaultIntervalMs', options.defaultIntervalMs, 30),
    maxRecordedRequests: nonNegativeInteger('maxRecordedRequests', options.maxRecordedRequests, 200),
    tls: options.tls,
  });
  const { server } = mock;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A deep accept queue: the benchmark opens a thousand connections at once.
    server.listen({ port, host, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `${options.tls ? 'https' : 'http'}://${urlHost}:${address.port}`,
    port: address.port,
    get requests() {
      return mock.requests();
    },
    clearRequests: () => mock.clearRequests(),
    stats: () => mock.stats(),
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        mock.dropAll();
        mock.closeConnections();
      });
      return closing;
    },
  };
}
