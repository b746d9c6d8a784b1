import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdPath, startEtcdCluster, type EtcdMember } from './etcd.js';
import { checkHaproxyConfig, haproxyPath, renderHaproxyConfig } from './haproxy.js';
import { archiveSettings } from '../backup/archive-settings.js';
import { commandPath } from '../image/buildah.js';
import { patroniNode, patroniPath, validatePatroniConfig } from './patroni.js';
import { portAllocator } from './ports.js';
import { copyShippedPrometheusFiles, PROMETHEUS_OPS_DIR, promtool, promtoolPath } from './prometheus.js';
import { fieldsOf, redisCommand, redisSentinelPath, startRedisNode, startSentinel } from './redis-sentinel.js';
import { postgresBinDir, redisInline, redisServerPath } from './services.js';
import { OPS_DIR, renderTemplate } from './template.js';

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
    const tools = { haproxy: haproxyPath(), patroni: patroniPath(), etcd: etcdPath(), redis: redisServerPath(), sentinel: redisSentinelPath(), postgres: postgresBinDir(), dockerCompose: commandPath('docker-compose'), systemdAnalyze: commandPath('systemd-analyze'), promtool: promtoolPath() };
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

const exec = promisify(execFile);
const repoRoot = path.resolve(OPS_DIR, '..');
const composeDir = path.join(repoRoot, 'deploy', 'compose');

/** A YAML document as JSON, through the PyYAML that Debian's docker-compose itself runs on (no YAML parser in our dependencies). */
async function yamlToJson(text: string): Promise<unknown> {
  const python = exec('python3', ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], { maxBuffer: 16 * 1024 * 1024 });
  python.child.stdin?.end(text);
  return JSON.parse((await python).stdout) as unknown;
}

interface ComposeService {
  image?: string;
  build?: { context: string };
  environment?: Record<string, string | null>;
  secrets?: { source: string }[];
  volumes?: (string | { source: string; target: string; type: string })[];
  command?: string[];
  entrypoint?: string[];
  stop_grace_period?: string;
  user?: string;
  networks?: Record<string, { ipv4_address?: string } | null>;
}
interface ComposeConfig {
  services: Record<string, ComposeService>;
  secrets: Record<string, { file: string }>;
}

describe.skipIf(commandPath('docker-compose') === undefined)('deploy/compose/*.yml', () => {
  const secretsDir = path.join(dir, 'compose-secrets');
  beforeAll(async () => {
    await exec(path.join(composeDir, 'make-secrets.sh'), [secretsDir]);
  });
  const config = async (file: string, cwd = composeDir): Promise<ComposeConfig> => {
    const { stdout } = await exec('docker-compose', ['-f', file, 'config'], { cwd, env: { PATH: process.env.PATH, LLMCHAT_SECRETS_DIR: secretsDir } });
    return (await yamlToJson(stdout)) as ComposeConfig;
  };
  const envOf = (service: ComposeService | undefined) => service?.environment ?? {};
  /** Host paths a service mounts (bind mounts), resolved by docker-compose. */
  const bindSources = (service: ComposeService | undefined) =>
    (service?.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':')[0] ?? '' : v.type === 'bind' ? v.source : '')).filter((s) => s.startsWith('/'));

  it('make-secrets.sh writes every secret file both compose files name, hex values, and keeps existing ones on a rerun', async () => {
    const before = readFileSync(path.join(secretsDir, 'jwt_secret'), 'utf8');
    expect(before).toMatch(/^[0-9a-f]{64}$/);
    await exec(path.join(composeDir, 'make-secrets.sh'), [secretsDir]);
    expect(readFileSync(path.join(secretsDir, 'jwt_secret'), 'utf8')).toBe(before);
    const pg = readFileSync(path.join(secretsDir, 'postgres_password'), 'utf8');
    expect(readFileSync(path.join(secretsDir, 'database_url'), 'utf8')).toBe(`postgres://llmchat:${pg}@postgres-primary:5432/llmchat\n`);
    for (const file of ['quickstart.yml', 'production.yml']) {
      for (const [name, secret] of Object.entries((await config(file)).secrets)) expect(readdirSync(secretsDir), `${file}: ${name}`).toContain(path.basename(secret.file));
    }
  });

  it('quickstart.yml passes `docker-compose config`: the app built from the root Dockerfile, PostgreSQL and Redis, secrets as files', async () => {
    const { services } = await config('quickstart.yml');
    expect(Object.keys(services).sort()).toEqual(['llmchat', 'postgres', 'redis']);
    expect(services.llmchat?.build?.context).toBe(repoRoot);
    expect(envOf(services.llmchat)).toMatchObject({ DATABASE_URL_FILE: '/run/secrets/quickstart_database_url', JWT_SECRET_FILE: '/run/secrets/jwt_secret', SECRETS_KEY_FILE: '/run/secrets/secrets_key', REDIS_URL: 'redis://redis:6379/0' });
    expect(envOf(services.postgres).POSTGRES_PASSWORD_FILE).toBe('/run/secrets/postgres_password');
    // No secret value in any environment: only *_FILE paths.
    for (const service of Object.values(services)) for (const [name, value] of Object.entries(envOf(service))) expect(`${name}=${value}`).not.toMatch(/PASSWORD=|SECRET=|KEY=|DATABASE_URL=/);
  });

  it('production.yml passes `docker-compose config`: three app instances behind nginx with the shipped config, a PostgreSQL primary and replica, Redis with three Sentinels', async () => {
    const { services } = await config('production.yml');
    expect(Object.keys(services).sort()).toEqual(['app-1', 'app-2', 'app-3', 'nginx', 'postgres-primary', 'postgres-replica', 'redis-master', 'redis-replica', 'sentinel-1', 'sentinel-2', 'sentinel-3']);
    for (const app of ['app-1', 'app-2', 'app-3']) {
      expect(envOf(services[app])).toMatchObject({ DATABASE_URL_FILE: '/run/secrets/database_url', DATABASE_READ_URL_FILE: '/run/secrets/database_read_url', REDIS_URL_FILE: '/run/secrets/redis_url', JWT_SECRET_FILE: '/run/secrets/jwt_secret', SECRETS_KEY_FILE: '/run/secrets/secrets_key' });
      // Longer than DRAIN_TIMEOUT_MS (15 s) plus main.ts's 15 s force-exit margin.
      expect(services[app]?.stop_grace_period).toBe('40s');
    }
    for (const service of Object.values(services)) for (const [name, value] of Object.entries(envOf(service))) expect(`${name}=${value}`).not.toMatch(/PASSWORD=|SECRET=|KEY=|_URL=/);
    // nginx renders the shipped template (the official image's envsubst on /etc/nginx/templates) over a file naming the three instances.
    expect(bindSources(services.nginx)).toEqual(expect.arrayContaining([path.join(OPS_DIR, 'nginx', 'llmchat.conf.template'), path.join(composeDir, 'nginx', 'upstreams.conf')]));
    expect(envOf(services.nginx)).toMatchObject({ LLMCHAT_UPSTREAMS: '/etc/nginx/llmchat-upstreams.conf', NGINX_ENVSUBST_FILTER: '^LLMCHAT_' });
    const upstreams = readFileSync(path.join(composeDir, 'nginx', 'upstreams.conf'), 'utf8');
    expect(upstreams.match(/^server app-\d:3000 max_fails=0;$/gm)).toEqual(['server app-1:3000 max_fails=0;', 'server app-2:3000 max_fails=0;', 'server app-3:3000 max_fails=0;']);
    // The Sentinels watch the master at its fixed address; the replica follows it.
    expect(services['redis-master']?.networks?.backend?.ipv4_address).toBe('172.28.10.11');
    expect(services['redis-replica']?.command?.join(' ')).toContain("replicaof 172.28.10.11 6379");
    for (const s of ['sentinel-1', 'sentinel-2', 'sentinel-3']) expect(services[s]?.command?.join(' ')).toMatch(/render-template\.sh \/llmchat\/sentinel\.conf\.template .*LLMCHAT_MASTER_HOST=172\.28\.10\.11 .*exec redis-sentinel/);
    expect(services['postgres-replica']?.entrypoint).toEqual(['/llmchat/replica-entrypoint.sh']);
    // Every file a service mounts from the repository exists.
    for (const [name, service] of Object.entries(services)) for (const source of bindSources(service)) expect(readdirSync(path.dirname(source)), `${name}: ${source}`).toContain(path.basename(source));
  });

  it('is refused by `docker-compose config` when a key is wrong (the check can fail)', async () => {
    const broken = path.join(dir, 'compose-broken');
    mkdirSync(broken, { recursive: true });
    writeFileSync(path.join(broken, 'production.yml'), readFileSync(path.join(composeDir, 'production.yml'), 'utf8').replace('stop_grace_period: 40s', 'stop_grace_periods: 40s'));
    await expect(config('production.yml', broken)).rejects.toThrow(/stop_grace_periods/);
  });

  it('render-template.sh renders the Redis and Sentinel templates exactly as the tested renderer does, the password read from its secret file', async () => {
    const password = readFileSync(path.join(secretsDir, 'redis_password'), 'utf8');
    const cases: { template: string; values: Record<string, string> }[] = [
      { template: 'redis/redis.conf.template', values: { BIND: '0.0.0.0', PORT: '6379', DIR: '/data' } },
      { template: 'redis/sentinel.conf.template', values: { BIND: '0.0.0.0', PORT: '26379', DIR: '/data', MASTER_NAME: 'llmchat', MASTER_HOST: '172.28.10.11', MASTER_PORT: '6379' } },
    ];
    for (const { template, values } of cases) {
      const output = path.join(dir, path.basename(template, '.template'));
      const pairs = Object.entries(values).map(([k, v]) => `LLMCHAT_${k}=${v}`);
      await exec(path.join(composeDir, 'render-template.sh'), [path.join(OPS_DIR, template), output, ...pairs, `LLMCHAT_PASSWORD=@${path.join(secretsDir, 'redis_password')}`]);
      expect(readFileSync(output, 'utf8')).toBe(renderTemplate(readFileSync(path.join(OPS_DIR, template), 'utf8'), { ...values, PASSWORD: password }));
    }
    // A placeholder left without a value stops the container instead of starting it on a broken file.
    await expect(exec(path.join(composeDir, 'render-template.sh'), [path.join(OPS_DIR, 'redis/redis.conf.template'), path.join(dir, 'partial.conf'), 'LLMCHAT_PORT=6379'])).rejects.toThrow(/placeholders left/);
  });

  it('ships shell scripts that parse (sh -n)', async () => {
    for (const script of ['make-secrets.sh', 'render-template.sh', 'postgres/primary-init.sh', 'postgres/replica-entrypoint.sh']) {
      await expect(exec('sh', ['-n', path.join(composeDir, script)]), script).resolves.toBeDefined();
    }
  });
});

describe.skipIf(commandPath('systemd-analyze') === undefined)('ops/systemd/llmchat@.service', () => {
  const unit = readFileSync(path.join(OPS_DIR, 'systemd', 'llmchat@.service'), 'utf8');
  /**
   * `systemd-analyze verify` needs an instance name for a template and an
   * executable ExecStart: the test verifies a copy as llmchat@3001.service with
   * /usr/bin/node replaced by the node running the test (the only change).
   */
  const verify = async (text: string): Promise<string> => {
    const unitDir = mkdtempSync(path.join(dir, 'systemd-'));
    const file = path.join(unitDir, 'llmchat@3001.service');
    writeFileSync(file, text.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
    const { stdout, stderr } = await exec('systemd-analyze', ['verify', file]);
    return `${stdout}${stderr}`;
  };

  it('passes `systemd-analyze verify` without a warning', async () => {
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/llmchat\/server\/dist\/main\.js$/m);
    expect(await verify(unit)).toBe('');
  });

  it('is refused by `systemd-analyze verify` when a setting is wrong (the check can fail)', async () => {
    expect(await verify(unit.replace('ProtectSystem=strict', 'ProtectSystem=strictest'))).toMatch(/Failed to parse protect system value/);
  });

  it('waits longer to stop than the drain plus the hand-over, restarts on failure but not on a bad configuration, and is hardened', () => {
    const settings = Object.fromEntries(unit.split('\n').filter((l) => /^[A-Z]\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const stopSeconds = Number(/^(\d+)s$/.exec(settings.TimeoutStopSec ?? '')?.[1]);
    // DRAIN_TIMEOUT_MS's default (15 s) plus main.ts's forced exit 15 s after it.
    expect(stopSeconds).toBeGreaterThan(15 + 15);
    expect(settings).toMatchObject({
      Restart: 'on-failure',
      RestartPreventExitStatus: '78',
      KillMode: 'mixed',
      EnvironmentFile: '-/etc/llmchat/llmchat-%i.env',
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      CapabilityBoundingSet: '',
      User: 'llmchat',
    });
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/llmchat\/llmchat\.env$/m);
    expect(unit).toMatch(/^Environment=NODE_ENV=production PORT=%i DATA_DIR=\/var\/lib\/llmchat\/%i$/m);
    expect(Number(settings.LimitNOFILE)).toBeGreaterThanOrEqual(65536);
  });
});

describe.skipIf(promtoolPath() === undefined)('ops/prometheus/', () => {
  const shipped = (file: string) => readFileSync(path.join(PROMETHEUS_OPS_DIR, file), 'utf8');

  it('passes `promtool check config` (the scrape config, and the rule files it loads)', async () => {
    const out = await promtool(['check', 'config', 'prometheus.yml']);
    expect(out).toMatch(/SUCCESS: prometheus.yml is valid prometheus config file syntax/);
    expect(out).toMatch(/recording-rules.yml\n\s+SUCCESS: \d+ rules found/);
    expect(out).toMatch(/alerts.yml\n\s+SUCCESS: \d+ rules found/);
  });

  it('passes `promtool check rules` and `promtool test rules`', async () => {
    expect(await promtool(['check', 'rules', 'recording-rules.yml', 'alerts.yml'])).not.toMatch(/FAILED/);
    expect(await promtool(['test', 'rules', 'alerts.test.yml'])).toMatch(/SUCCESS/);
  });

  it('is refused by promtool when a rule is broken or an alert no longer fires as its test expects (the checks can fail)', async () => {
    const broken = path.join(dir, 'prometheus-broken');
    copyShippedPrometheusFiles(broken);
    writeFileSync(path.join(broken, 'alerts.yml'), shipped('alerts.yml').replace('expr: llmchat_ready == 0', 'expr: llmchat_ready == = 0'));
    await expect(promtool(['check', 'rules', 'alerts.yml'], broken)).rejects.toThrow(/alerts.yml/);
    const loosened = path.join(dir, 'prometheus-loosened');
    copyShippedPrometheusFiles(loosened);
    writeFileSync(path.join(loosened, 'alerts.yml'), shipped('alerts.yml').replace('max by (agent, endpoint, provider) (llmchat_breaker_state) == 2', 'max by (agent, endpoint, provider) (llmchat_breaker_state) >= 1'));
    await expect(promtool(['test', 'rules', 'alerts.test.yml'], loosened)).rejects.toThrow(/LLMChatBreakerOpen/);
  });

  it('gives every alert a severity, a summary, a runbook section and a unit test in which it fires', () => {
    const alerts = shipped('alerts.yml');
    const names = [...alerts.matchAll(/^\s+- alert: (\w+)$/gm)].map((m) => m[1] as string);
    expect(names.length).toBeGreaterThanOrEqual(13);
    const runbook = readFileSync(path.join(PROMETHEUS_OPS_DIR, '../../docs/runbook.md'), 'utf8');
    const tests = shipped('alerts.test.yml');
    for (const [i, name] of names.entries()) {
      const rule = alerts.slice(alerts.indexOf(`- alert: ${name}\n`), i + 1 < names.length ? alerts.indexOf(`- alert: ${names[i + 1] ?? ''}\n`) : undefined);
      expect(rule, name).toMatch(/severity: (critical|warning)/);
      expect(rule, name).toMatch(/summary: /);
      expect(rule, name).toContain(`runbook_url: docs/runbook.md#${name.toLowerCase()}`);
      expect(runbook, name).toContain(`\n## ${name}\n`);
      // A case that expects the alert to fire, not only ones where it stays quiet.
      expect(tests, name).toMatch(new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels:`));
    }
  });
});

describe.skipIf(promtoolPath() === undefined)('ops/grafana/llmchat.json', () => {
  const dashboard = JSON.parse(readFileSync(path.join(PROMETHEUS_OPS_DIR, '../grafana/llmchat.json'), 'utf8')) as {
    uid: string;
    panels: { id: number; type: string; title: string; datasource?: { uid: string }; targets?: { expr: string; refId: string }[] }[];
  };
  const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
  /** Every query as a recording rule, Grafana's $__rate_interval as 5m: promtool parses each. */
  const asRules = (exprs: readonly string[]) =>
    `groups:\n  - name: dashboard\n    rules:\n${exprs.map((e, i) => `      - record: dashboard:query:${i}\n        expr: ${JSON.stringify(e.replaceAll('$__rate_interval', '5m'))}\n`).join('')}`;

  it('has panels with unique ids, a Prometheus datasource input and queries', () => {
    expect(dashboard.uid).toBe('llmchat-overview');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of dashboard.panels.filter((p) => p.type === 'timeseries')) {
      expect(panel.datasource?.uid, panel.title).toBe('${DS_PROMETHEUS}');
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
    expect(queries.length).toBeGreaterThan(25);
  });

  it('has only queries that promtool parses as PromQL (and promtool refuses a broken one)', async () => {
    const file = path.join(dir, 'dashboard-queries.yml');
    writeFileSync(file, asRules(queries.map((q) => q.expr)));
    expect(await promtool(['check', 'rules', file], dir)).toMatch(new RegExp(`SUCCESS: ${queries.length} rules found`));
    writeFileSync(file, asRules(['sum(rate(llmchat_turns_total[5m])']));
    await expect(promtool(['check', 'rules', file], dir)).rejects.toThrow(/dashboard-queries.yml/);
  });
});
