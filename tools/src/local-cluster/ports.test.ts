import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { canListen, portAllocator } from './ports.js';

describe('portAllocator', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('counts up from the base, skipping ports something listens on and ports it handed out', async () => {
    const base = 24900;
    const busy = createServer();
    servers.push(busy);
    await new Promise<void>((resolve) => busy.listen(base + 1, '127.0.0.1', resolve));
    expect(await canListen('127.0.0.1', base + 1)).toBe(false);
    const ports = portAllocator(base);
    const first = await ports.next();
    const second = await ports.next();
    expect(first).toBeGreaterThanOrEqual(base);
    expect([first, second]).not.toContain(base + 1);
    expect(second).toBeGreaterThan(first);
  });

  it('refuses a base among the ports the OS hands out for outgoing connections', () => {
    expect(() => portAllocator(40000)).toThrow(/below|from 1024 to 32767/);
    expect(() => portAllocator(80)).toThrow(/from 1024/);
  });
});
