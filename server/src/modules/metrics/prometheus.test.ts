import fs from 'node:fs';
import type { Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { portAllocator } from '../../../../tools/src/local-cluster/ports.js';
import { prometheusPath, startPrometheus, type RunningPrometheus } from '../../../../tools/src/local-cluster/prometheus.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { metricTypes, parseSamples } from '../../test/prometheus-text.js';
import { eventually } from '../../test/sse.js';
import { listenForMetrics } from './routes.js';

/**
 * A running instance (real sockets, PostgreSQL and Redis when reachable)
 * with its metrics on METRICS_PORT, as main.ts serves them: the shipped
 * Grafana dashboard's metrics are all in its /metrics, and a real
 * Prometheus (Debian's) running the shipped scrape config sees a chat turn.
 * Ports from 26100 up (below the range for outgoing connections).
 */
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';
const ports = portAllocator(26100);
const backend = (await backendNames()).at(-1) ?? 'pglite+memory';
const DASHBOARD = new URL('../../../../ops/grafana/llmchat.json', import.meta.url);

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

interface Ctx {
  t: TestApp;
  mock: Mock;
  base: string;
  metricsServer: Server;
  metricsPort: number;
  alice: string;
}

async function startInstance(): Promise<Ctx> {
  const mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 2 });
  const t = await buildTestApp(backend);
  const appPort = await ports.next();
  await t.app.listen({ port: appPort, host: '127.0.0.1' });
  const metricsPort = await ports.next();
  const metricsServer = await listenForMetrics(t.app.deps.metrics, '127.0.0.1', metricsPort);
  const admin = await login(t.app);
  const alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
  for (const agent of [
    { id: 'gpt', name: 'GPT', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'mock-model' },
    { id: 'failover', name: 'Failover', provider: 'openai', endpoint: `${mock.url}/fault/status=503/v1/chat/completions`, model: 'primary-model', fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'fallback-model' }] },
  ]) {
    const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { description: 'test agent', capabilities: [], isActive: true, apiKey: 'test-key', ...agent } });
    if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
  }
  return { t, mock, base: `http://127.0.0.1:${appPort}`, metricsServer, metricsPort, alice };
}

/** A streamed chat turn over the instance's socket, read to its end. */
async function chatTurn(c: Ctx, agentId: string): Promise<string> {
  const res = await fetch(`${c.base}/api/chat/completions`, {
    method: 'POST',
    headers: { ...bearer(c.alice), 'content-type': 'application/json' },
    body: JSON.stringify({ stream: true, agentId, messages: [{ role: 'user', content: 'What is 2+2?' }] }),
  });
  expect(res.status).toBe(200);
  const body = await res.text();
  expect(body).toContain('event: end');
  return body;
}

async function stopInstance(c: Ctx | undefined): Promise<void> {
  if (!c) return;
  await new Promise<void>((resolve) => c.metricsServer.close(() => resolve()));
  await c.t.close();
  await c.mock.close();
}

/** Metric names a PromQL expression reads: what is left once functions, label matchers, ranges, groupings, strings and numbers are gone. */
function metricNamesOf(expr: string): string[] {
  const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset']);
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const [, name, call] = m;
    if (call !== undefined || name === undefined || KEYWORDS.has(name)) continue;
    names.add(name);
  }
  return [...names];
}

function dashboardExpressions(): string[] {
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}

describe(`a running instance on ${backend}`, () => {
  let c: Ctx | undefined;
  beforeAll(async () => {
    c = await startInstance();
  }, 60_000);
  afterAll(async () => {
    await stopInstance(c);
  });

  it('reads the metric names out of PromQL (the dashboard check below relies on it)', () => {
    expect(metricNamesOf('histogram_quantile(0.95, sum by (agent, le) (rate(foo_bucket{a="b", c=~"5.."}[$__rate_interval])))').sort()).toEqual(['foo_bucket']);
    expect(metricNamesOf('sum(rate(a_total{outcome="error"}[5m])) / sum(rate(b_total[5m])) * 1000').sort()).toEqual(['a_total', 'b_total']);
    expect(metricNamesOf('max by (instance) (llmchat_draining) or on (instance) up').sort()).toEqual(['llmchat_draining', 'up']);
  });

  it('serves every metric the Grafana dashboard queries in /metrics, after a turn and a fallback', async () => {
    if (!c) throw new Error('no instance');
    await chatTurn(c, 'gpt');
    await chatTurn(c, 'failover');
    const res = await fetch(`${c.base}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const families = metricTypes(text);
    const samples = new Set(parseSamples(text).map((s) => s.name));
    const names = new Set(dashboardExpressions().flatMap(metricNamesOf));
    expect(names.size).toBeGreaterThan(25);
    const missing = [...names].filter((name) => {
      const family = name.replace(/_(bucket|sum|count)$/, '');
      // Declared in /metrics: a family of that name, or a histogram whose series it is.
      return !(families.has(name) || (families.get(family) === 'histogram' && name !== family));
    });
    expect(missing).toEqual([]);
    // What the turns moved has samples, not only a declaration.
    for (const name of ['gen_ai_client_operation_time_to_first_chunk_seconds_bucket', 'llmchat_turn_overhead_seconds_bucket', 'gen_ai_client_token_usage_sum', 'llmchat_turns_total', 'llmchat_upstream_fallbacks_total', 'llmchat_upstream_failures_total', 'llmchat_breaker_state', 'llmchat_db_group_write_items_total', 'nodejs_eventloop_lag_p99_seconds']) {
      expect(samples.has(name), name).toBe(true);
    }
    if (backend === 'postgres+redis') {
      for (const name of ['llmchat_db_pool_connections', 'llmchat_redis_command_latency_seconds']) expect(samples.has(name), name).toBe(true);
    }
  });
});

describe.runIf(prometheusPath() !== undefined || required)(`Debian's Prometheus scraping a running instance on ${backend}`, () => {
  let c: Ctx | undefined;
  let prometheus: RunningPrometheus | undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-prometheus-'));
  beforeAll(async () => {
    c = await startInstance();
    prometheus = await startPrometheus({ port: await ports.next(), dir, targets: [`127.0.0.1:${c.metricsPort}`], intervalSeconds: 1 });
  }, 90_000);
  afterAll(async () => {
    await prometheus?.stop();
    await stopInstance(c);
    rmSync(dir, { recursive: true, force: true });
  });

  it('scrapes the shipped scrape config, then sees the chat turn it is queried for', async () => {
    if (!c || !prometheus) throw new Error('not started');
    const p = prometheus;
    const turns = 'sum(llmchat_turns_total{agent="gpt", outcome="complete"})';
    // Scraped, before any turn: the instance is up and the turn counter has no gpt turn yet.
    await eventually(async () => (await p.query('up{job="llmchat"}'))[0]?.value[1] === '1', 'Prometheus scraped the instance', 30_000);
    expect(await p.query(turns)).toEqual([]);
    await chatTurn(c, 'gpt');
    const moved = await eventually(async () => (await p.query(turns))[0], 'Prometheus saw the turn', 30_000);
    expect(Number(moved.value[1])).toBe(1);
    const ttft = await eventually(async () => (await p.query('sum(gen_ai_client_operation_time_to_first_chunk_seconds_count{agent="gpt", gen_ai_provider_name="openai", gen_ai_request_model="mock-model"})'))[0], 'the time to first token', 30_000);
    expect(Number(ttft.value[1])).toBe(1);
  }, 90_000);
});
