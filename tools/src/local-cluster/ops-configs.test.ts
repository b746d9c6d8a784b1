import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdPath, startEtcdCluster, type EtcdMember } from './etcd.js';
import { checkHaproxyConfig, haproxyPath, renderHaproxyConfig } from './haproxy.js';
import { archiveSettings } from '../backup/archive-settings.js';
import { patroniNode, patroniPath, validatePatroniConfig } from './patroni.js';
import { portAllocator } from './ports.js';
import { fieldsOf, redisCommand, redisSentinelPath, startRedisNode, startSentinel } from './redis-sentinel.js';
import { postgresBinDir, redisInline, redisServerPath } from './services.js';

/**
 * The configs shipped under ops/ (what `npm run cluster` runs and an
 * operator copies), each checked by its own engine. Ports from 24000 up:
 * apart from the topology test's and a developer's `npm run cluster`.
 */
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';
const ports = portAllocator(24000);
const nodes = [
  { name: 'pg1', host: '127.0.0.11', pgPort: 5432, restPort: 8008 },
  { name: 'pg2', host: '127.0.0.12', pgPort: 5432, restPort: 8008 },
  { name: 'pg3', host: '127.0.0.13', pgPort: 5432, restPort: 8008 },
];
const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-ops-configs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the shipped configs', () => {
  it.runIf(required)('have their checking tools here (LLMCHAT_REQUIRE_SERVICES=1)', () => {
    const tools = { haproxy: haproxyPath(), patroni: patroniPath(), etcd: etcdPath(), redis: redisServerPath(), sentinel: redisSentinelPath(), postgres: postgresBinDir() };
    expect(Object.entries(tools).flatMap(([name, found]) => (found === undefined ? [name] : []))).toEqual([]);
  });
});

describe.skipIf(haproxyPath() === undefined)('ops/haproxy/haproxy.cfg.template', () => {
  const rendered = renderHaproxyConfig({ write: 5000, read: 5001, stats: 7000 }, nodes);

  it('passes `haproxy -c` once rendered', async () => {
    const file = path.join(dir, 'haproxy.cfg');
    writeFileSync(file, rendered);
    expect(await checkHaproxyConfig(file)).toMatch(/Configuration file is valid/);
  });

  it('is refused by `haproxy -c` when a setting is wrong (the check can fail)', async () => {
    const file = path.join(dir, 'haproxy-broken.cfg');
    writeFileSync(file, rendered.replace('fall 3', 'fall three'));
    await expect(checkHaproxyConfig(file)).rejects.toThrow(/fall/);
  });

  it('sends writes to the Patroni primary only, drops the sessions of a node taken out and retries a refused connection on another node', () => {
    expect(rendered).toMatch(/listen postgres_write[\s\S]*?http-check send meth OPTIONS uri \/primary/);
    expect(rendered).toMatch(/backend postgres_replicas[\s\S]*?http-check send meth OPTIONS uri \/replica\?lag=16MB/);
    expect(rendered).toMatch(/^\s*default-server inter 1s fastinter 250ms downinter 500ms fall 3 rise 1 on-marked-down shutdown-sessions$/m);
    expect(rendered).toMatch(/^\s*option redispatch 1$/m);
    expect(rendered).toContain('server pg2 127.0.0.12:5432 check port 8008');
  });
});

describe.skipIf(patroniPath() === undefined || etcdPath() === undefined || postgresBinDir() === undefined)('ops/patroni/patroni.yml.template', () => {
  let etcd: EtcdMember[] = [];
  beforeAll(async () => {
    const logDir = path.join(dir, 'etcd-logs');
    mkdirSync(logDir, { recursive: true });
    etcd = await startEtcdCluster({ members: [{ name: 'etcd1', clientPort: await ports.next(), peerPort: await ports.next() }], token: 'ops-configs', dir: path.join(dir, 'etcd'), logDir, env: { PATH: process.env.PATH } });
  }, 60_000);
  afterAll(async () => {
    await Promise.all(etcd.map((m) => m.dispose()));
  });

  const node = async (name: string, host: string) =>
    patroniNode({
      name,
      host,
      pgPort: await ports.next(host),
      restPort: await ports.next(host),
      scope: 'llmchat',
      nodeDir: path.join(dir, 'patroni', name),
      logFile: path.join(dir, `${name}.log`),
      etcdHosts: etcd.map((m) => m.url.replace('http://', '')),
      pgBinDir: postgresBinDir() ?? '',
      syncStrict: false,
      secrets: { rest: 'r', superuser: 's', replication: 'p', rewind: 'w' },
      archive: () => ({ archiveCommand: archiveSettings().archive_command }),
      env: {},
    });

  it('passes `patroni --validate-config` once rendered (etcd reachable, ports free)', async () => {
    const rendered = await node('pg1', '127.0.0.11');
    await expect(validatePatroniConfig(rendered.configFile)).resolves.toBeUndefined();
    const text = readFileSync(rendered.configFile, 'utf8');
    expect(text).toMatch(/^ {4}ttl: 6$/m);
    expect(text).toMatch(/^ {4}loop_wait: 1$/m);
    expect(text).toMatch(/^ {4}retry_timeout: 2$/m);
    expect(text).toMatch(/^ {4}synchronous_mode: true$/m);
    expect(text).toMatch(/^ {4}synchronous_mode_strict: false$/m);
    expect(text).toMatch(/^ {4}archive_command: 'pgbackrest --stanza=llmchat archive-push %p'$/m);
    expect(text).toMatch(/^ {8}lc_messages: C$/m);
  });

  it('is refused by `patroni --validate-config` with 127.0.0.1 as the connect address (why each node has an address of its own)', async () => {
    const rendered = await node('pg9', '127.0.0.1');
    await expect(validatePatroniConfig(rendered.configFile)).rejects.toThrow(/connect_address.*must not contain "127\.0\.0\.1"/);
  });
});

describe.skipIf(redisSentinelPath() === undefined)('ops/redis/sentinel.conf.template', () => {
  it('runs under redis-sentinel, which then watches the master with quorum 2, a 1 s down-after and a 5 s failover timeout', async () => {
    // No master needs to run: Sentinel reports what it was told to watch either way.
    const sentinel = await startSentinel({
      name: 'sentinel',
      port: await ports.next(),
      dir: path.join(dir, 'sentinel'),
      logFile: path.join(dir, 'sentinel.log'),
      masterName: 'llmchat',
      masterPort: await ports.next(),
      password: 'secret',
      env: { PATH: process.env.PATH },
    });
    try {
      const master = fieldsOf(await redisCommand(sentinel.port, ['SENTINEL', 'MASTER', 'llmchat']));
      expect({ name: master.name, ip: master.ip, quorum: master.quorum, downAfter: master['down-after-milliseconds'], failoverTimeout: master['failover-timeout'], parallelSyncs: master['parallel-syncs'] }).toEqual({
        name: 'llmchat',
        ip: '127.0.0.1',
        quorum: '2',
        downAfter: '1000',
        failoverTimeout: '5000',
        parallelSyncs: '1',
      });
    } finally {
      await sentinel.dispose();
    }
  });
});

describe.skipIf(redisServerPath() === undefined)('ops/redis/redis.conf.template', () => {
  it('runs under redis-server: clients must authenticate, and nothing is persisted', async () => {
    const redis = await startRedisNode({ name: 'redis', port: await ports.next(), dir: path.join(dir, 'redis'), logFile: path.join(dir, 'redis.log'), password: 'secret', env: { PATH: process.env.PATH } });
    try {
      expect(await redisInline(redis.port, 'PING')).toMatch(/^-NOAUTH/);
      expect(await redisCommand(redis.port, ['PING'], { password: 'secret' })).toBe('PONG');
      expect(await redisCommand(redis.port, ['CONFIG', 'GET', 'save'], { password: 'secret' })).toEqual(['save', '']);
      expect(await redisCommand(redis.port, ['CONFIG', 'GET', 'appendonly'], { password: 'secret' })).toEqual(['appendonly', 'no']);
    } finally {
      await redis.dispose();
    }
  });
});
