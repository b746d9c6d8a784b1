import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamHttp } from './http.js';
import { FORBIDDEN_UPSTREAM_BLOCKS, OutboundPolicy, type ResolveAll } from './outbound-policy.js';
import { UpstreamError } from './upstream-error.js';

/** A resolver that answers from a table, as a hostile DNS server would; unknown names fail like NXDOMAIN. */
function fakeDns(table: Record<string, string[] | (() => string[])>): ResolveAll {
  return (hostname, _options, callback) => {
    const entry = table[hostname];
    const addresses = typeof entry === 'function' ? entry() : entry;
    if (!addresses) {
      callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []);
      return;
    }
    callback(
      null,
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  };
}

describe('the outbound policy', () => {
  const policy = new OutboundPolicy();

  it.each([
    '127.0.0.1', '127.255.255.254', '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.0.1', '169.254.169.254', '100.64.0.1', '100.127.255.255', '0.0.0.0',
    '::1', '::', 'fc00::1', 'fdff::1', 'fe80::1', 'febf::1',
    // IPv4-mapped, -translated, -compatible and NAT64 forms of refused IPv4 addresses.
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:a9fe:a9fe', '::ffff:0:127.0.0.1', '::127.0.0.1', '64:ff9b::127.0.0.1', '::ffff:0.0.0.0',
  ])('refuses %s', (address) => {
    expect(policy.allows(address, 80)).toBe(false);
  });

  it.each(['93.184.215.14', '8.8.8.8', '172.32.0.1', '100.128.0.1', '169.255.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])('allows the public address %s', (address) => {
    expect(policy.allows(address, 443)).toBe(true);
  });

  it('lists exactly the blocks the README names', () => {
    expect([...FORBIDDEN_UPSTREAM_BLOCKS].sort()).toEqual(['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16', '::/128', '::1/128', 'fc00::/7', 'fe80::/10'].sort());
  });

  it('allows what UPSTREAM_ALLOWED_CIDRS lists, in its mapped forms too, and nothing more', () => {
    const onPrem = new OutboundPolicy({ allowedCidrs: ['10.20.0.0/16'] });
    expect(onPrem.allows('10.20.3.4', 80)).toBe(true);
    expect(onPrem.allows('::ffff:10.20.3.4', 80)).toBe(true);
    expect(onPrem.allows('10.21.0.1', 80)).toBe(false);
    expect(onPrem.allows('127.0.0.1', 80)).toBe(false);
  });

  it('trusts the simulated upstream on exactly its address and port', () => {
    const demo = new OutboundPolicy({ trustedOrigins: ['http://127.0.0.1:3099'] });
    expect(demo.allows('127.0.0.1', 3099)).toBe(true);
    expect(demo.allows('::ffff:127.0.0.1', 3099)).toBe(true);
    expect(demo.allows('127.0.0.1', 3100)).toBe(false);
    expect(demo.allows('127.0.0.2', 3099)).toBe(false);
    expect(demo.literalRefusal('http://127.0.0.1:3099/v1/chat/completions')).toBeUndefined();
    expect(demo.literalRefusal('http://127.0.0.1:3100/v1')?.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
  });

  it('leaves names to connect time and refuses literal addresses at once', () => {
    expect(policy.literalRefusal('http://localhost:8080/v1')).toBeUndefined();
    expect(policy.literalRefusal('http://metadata.google.internal/')).toBeUndefined();
    expect(policy.literalRefusal('http://[::ffff:169.254.169.254]/')?.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
    expect(policy.literalRefusal('http://0x7f000001/')).toBeDefined();
  });
});

describe('the outbound policy on real connections (loopback listeners only)', () => {
  let server: Server;
  let port: number;
  let connections = 0;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"internal":"data"}');
    });
    server.on('connection', () => (connections += 1));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function get(http: UpstreamHttp, url: string): Promise<unknown> {
    try {
      return await http.json({ method: 'GET', url, headers: {}, timeouts: { connectMs: 5_000, totalMs: 10_000 }, signal: new AbortController().signal, mode: 'blocking' }, 'test');
    } finally {
      await http.close();
    }
  }

  async function refusal(http: UpstreamHttp, url: string): Promise<UpstreamError> {
    const err = await get(http, url).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof UpstreamError)) throw new Error(`expected an UpstreamError, got ${String(err)}`);
    return err;
  }

  it('refuses a name whose DNS answer is an IPv4-mapped loopback address, before connecting', async () => {
    const before = connections;
    const http = new UpstreamHttp({ connections: 2, outbound: new OutboundPolicy({ resolve: fakeDns({ 'mapped.test': ['::ffff:127.0.0.1'] }) }) });
    const err = await refusal(http, `http://mapped.test:${port}/`);
    expect(err.kind).toBe('forbidden');
    expect(err.category).toBe('forbidden');
    expect(err.message).toContain('mapped.test');
    expect(connections).toBe(before);
  });

  it('checks every new connection of a rebinding name: allowed on one lookup, refused on the next', async () => {
    // Everything stays on loopback: the policy trusts 127.0.0.1 on the listener's port only (as it does the
    // simulated upstream); the name's second answer, 127.0.0.3, is loopback the policy refuses.
    let lookups = 0;
    const policy = new OutboundPolicy({ trustedOrigins: [`http://127.0.0.1:${port}`], resolve: fakeDns({ 'rebind.test': () => (++lookups === 1 ? ['127.0.0.1'] : ['127.0.0.3']) }) });
    expect(await get(new UpstreamHttp({ connections: 2, outbound: policy }), `http://rebind.test:${port}/`)).toEqual({ internal: 'data' });
    const before = connections;
    const err = await refusal(new UpstreamHttp({ connections: 2, outbound: policy }), `http://rebind.test:${port}/`);
    expect(err.kind).toBe('forbidden');
    expect(lookups).toBe(2);
    expect(connections).toBe(before);
  });

  it('keeps only the allowed addresses of a name that resolves to several', async () => {
    const before = connections;
    const http = new UpstreamHttp({
      connections: 2,
      outbound: new OutboundPolicy({ allowedCidrs: ['127.0.0.2/32'], resolve: fakeDns({ 'mixed.test': ['127.0.0.1', '127.0.0.2'] }) }),
    });
    // 127.0.0.2 is allowed but nothing listens there: the call fails to connect, and the listener on 127.0.0.1 is never dialled.
    const err = await refusal(http, `http://mixed.test:${port}/`);
    expect(err.kind).toBe('network');
    expect(connections).toBe(before);
  });

  it('connects where the policy allows, by name and by literal', async () => {
    const allowed = new OutboundPolicy({ allowedCidrs: ['127.0.0.0/8'], resolve: fakeDns({ 'internal.test': ['127.0.0.1'] }) });
    expect(await get(new UpstreamHttp({ connections: 2, outbound: allowed }), `http://internal.test:${port}/`)).toEqual({ internal: 'data' });
    const trusted = new OutboundPolicy({ trustedOrigins: [`http://127.0.0.1:${port}`] });
    expect(await get(new UpstreamHttp({ connections: 2, outbound: trusted }), `http://127.0.0.1:${port}/`)).toEqual({ internal: 'data' });
  });

  it('refuses a literal loopback address at connect time as well (an agent stored before the guard existed)', async () => {
    const before = connections;
    const err = await refusal(new UpstreamHttp({ connections: 2, outbound: new OutboundPolicy() }), `http://127.0.0.1:${port}/`);
    expect(err.kind).toBe('forbidden');
    expect(connections).toBe(before);
  });
});
