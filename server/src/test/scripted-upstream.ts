import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A pass-through proxy in front of the mock upstream that injects a
 * different fault into each request it forwards: request n goes to
 * `/fault/<faults[n]>/…` (no fault once the list runs out). It lets a test
 * fail the first call to an endpoint and let the retry through (tests only).
 */
export interface ScriptedUpstream {
  url: string;
  /** Requests forwarded so far. */
  readonly count: number;
  close(): Promise<void>;
}

export async function createScriptedUpstream(targetBase: string, faults: string[]): Promise<ScriptedUpstream> {
  const target = new URL(targetBase);
  let count = 0;
  const server = http.createServer((req, res) => {
    const fault = faults[count++];
    const path = fault ? `/fault/${fault}${req.url ?? '/'}` : (req.url ?? '/');
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path, headers: req.headers }, (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      upstreamRes.pipe(res);
      // A cut upstream socket is passed on as a cut socket.
      upstreamRes.on('error', () => res.destroy());
      upstreamRes.on('aborted', () => res.destroy());
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
    res.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get count() {
      return count;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
