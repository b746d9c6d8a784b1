import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import type { PressureSample } from '../../plugins/load-shedding.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { metricTypes, sampleSum } from '../../test/prometheus-text.js';
import { Metrics } from './metrics.js';
import { listenForMetrics } from './routes.js';

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

async function createAgent(t: TestApp, admin: string, body: Record<string, unknown>): Promise<void> {
  const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { description: 'test agent', capabilities: [], isActive: true, apiKey: 'test-key', ...body } });
  if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
}

async function scrape(t: TestApp): Promise<string> {
  const res = await t.app.inject({ method: 'GET', url: '/metrics' });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.headers['content-type']).toContain('text/plain; version=0.0.4');
  return res.body;
}

describe.each(await backendNames())('/metrics on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let admin: string;
  let alice: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', CHAT_RATE_LIMIT_PER_MINUTE: '3' });
    admin = await login(t.app);
    alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    await createAgent(t, admin, { id: 'gpt', name: 'GPT', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'mock-model' });
    await createAgent(t, admin, {
      id: 'failover',
      name: 'Failover',
      provider: 'openai',
      endpoint: `${mock.url}/fault/status=503/v1/chat/completions`,
      model: 'primary-model',
      fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'fallback-key', model: 'fallback-model' }],
    });
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  it('counts a streamed turn: GenAI times and tokens per agent, endpoint, provider and model, the turn by outcome, the attempt', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(alice), payload: { stream: true, agentId: 'gpt', messages: [{ role: 'user', content: 'What is 2+2?' }] } });
    expect(res.statusCode).toBe(200);
    const text = await scrape(t);
    const turn = { agent: 'gpt', endpoint: '0', gen_ai_provider_name: 'openai', gen_ai_request_model: 'mock-model', gen_ai_operation_name: 'chat' };
    expect(sampleSum(text, 'gen_ai_client_operation_time_to_first_chunk_seconds_count', turn)).toBe(1);
    expect(sampleSum(text, 'gen_ai_client_operation_duration_seconds_count', { ...turn, error_type: '' })).toBe(1);
    expect(sampleSum(text, 'gen_ai_client_operation_time_per_output_chunk_seconds_count', turn)).toBe(1);
    expect(sampleSum(text, 'llmchat_turn_overhead_seconds_count', turn)).toBe(1);
    expect(sampleSum(text, 'llmchat_turns_total', { ...turn, outcome: 'complete' })).toBe(1);
    expect(sampleSum(text, 'gen_ai_client_token_usage_sum', { ...turn, gen_ai_token_type: 'output' })).toBeGreaterThan(0);
    expect(sampleSum(text, 'gen_ai_client_token_usage_sum', { ...turn, gen_ai_token_type: 'input' })).toBeGreaterThan(0);
    expect(sampleSum(text, 'llmchat_upstream_attempts_total', { agent: 'gpt', endpoint: '0', provider: 'openai' })).toBe(1);
    expect(sampleSum(text, 'llmchat_http_request_duration_seconds_count', { route: '/api/chat/completions', method: 'POST', status_code: '200' })).toBe(1);
    // The overhead is part of the time to first token, which is part of the whole answer.
    const ttft = sampleSum(text, 'gen_ai_client_operation_time_to_first_chunk_seconds_sum', turn);
    expect(sampleSum(text, 'llmchat_turn_overhead_seconds_sum', turn)).toBeLessThanOrEqual(ttft);
    expect(ttft).toBeLessThanOrEqual(sampleSum(text, 'gen_ai_client_operation_duration_seconds_sum', turn));
  });

  it('counts the failed attempts by kind, the retry and the fallback of a turn whose primary answers 503', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(alice), payload: { stream: true, agentId: 'failover', messages: [{ role: 'user', content: 'Hello' }] } });
    expect(res.statusCode).toBe(200);
    const text = await scrape(t);
    const primary = { agent: 'failover', endpoint: '0', provider: 'openai' };
    expect(sampleSum(text, 'llmchat_upstream_attempts_total', primary)).toBe(2);
    expect(sampleSum(text, 'llmchat_upstream_failures_total', primary)).toBe(2);
    expect(sampleSum(text, 'llmchat_upstream_failures_total', { ...primary, kind: 'http' })).toBe(2);
    expect(sampleSum(text, 'llmchat_upstream_retries_total', primary)).toBe(1);
    expect(sampleSum(text, 'llmchat_upstream_fallbacks_total', primary)).toBe(1);
    expect(sampleSum(text, 'llmchat_turns_total', { agent: 'failover', endpoint: '1', gen_ai_request_model: 'fallback-model', outcome: 'complete' })).toBe(1);
  });

  it('counts a turn refused by the rate limit under its scope', async () => {
    const bob = (await createUserAndLogin(t.app, admin, 'bob')).token;
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(bob), payload: { agentId: 'gpt', messages: [{ role: 'user', content: `Hi ${i}` }] } });
      statuses.push(res.statusCode);
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(sampleSum(await scrape(t), 'llmchat_rate_limited_requests_total', { scope: 'requests-user-minute' })).toBe(1);
  });

  it('reads the gauges from the running app: breakers per endpoint, running answers, pools on PostgreSQL, the group writers, pressure', async () => {
    const text = await scrape(t);
    expect(sampleSum(text, 'llmchat_breaker_state', { agent: 'gpt', endpoint: '0', provider: 'openai' })).toBe(0);
    expect(parseInt(String(sampleSum(text, 'llmchat_running_generations')), 10)).toBe(0);
    expect(text).toMatch(/^llmchat_draining 0$/m);
    expect(text).toMatch(/^llmchat_ready 1$/m);
    if (backendName === 'postgres+redis') {
      expect(sampleSum(text, 'llmchat_db_pool_connections', { pool: 'writer', state: 'total' })).toBeGreaterThan(0);
      expect(sampleSum(text, 'llmchat_redis_command_latency_seconds')).toBeGreaterThan(0);
    }
    expect(sampleSum(text, 'llmchat_db_group_write_items_total', { writer: 'turns' })).toBeGreaterThanOrEqual(10);
    expect(sampleSum(text, 'llmchat_db_group_write_batches_total', { writer: 'turns' })).toBeGreaterThan(0);
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds /m);
    expect(text).toMatch(/^llmchat_heap_used_ratio /m);
  });

  it('is for the internal network or admins, like /health/detailed', async () => {
    const outside = { 'x-forwarded-for': '203.0.113.9' };
    expect((await t.app.inject({ method: 'GET', url: '/metrics', headers: outside })).json()).toMatchObject({ error: { code: 'FORBIDDEN' } });
    expect((await t.app.inject({ method: 'GET', url: '/metrics', headers: { ...outside, ...bearer(alice) } })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'GET', url: '/metrics', headers: { ...outside, ...bearer(admin) } })).statusCode).toBe(200);
  });
});

describe('/metrics under load shedding', () => {
  let t: TestApp;
  const pressure: PressureSample = { eventLoopDelayMs: 0, heapUsedPercent: 0 };
  beforeAll(async () => {
    t = await buildTestApp('pglite+memory', { SHED_EVENT_LOOP_DELAY_MS: '100' }, { pressureSource: { sample: () => pressure, close: () => undefined } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('is still served while requests are shed, and counts each shed request by reason', async () => {
    pressure.eventLoopDelayMs = 500;
    t.app.deps.pressure.check();
    expect((await t.app.inject({ method: 'GET', url: '/api/agents' })).statusCode).toBe(503);
    const text = await scrape(t);
    expect(sampleSum(text, 'llmchat_shed_requests_total', { reason: 'event_loop' })).toBe(1);
    expect(sampleSum(text, 'llmchat_event_loop_delay_seconds')).toBe(0.5);
  });
});

describe('METRICS_PORT', () => {
  it('serves GET /metrics alone on its own port, without sign-in', async () => {
    const metrics = new Metrics();
    metrics.takeover();
    const server = await listenForMetrics(metrics, '127.0.0.1', 0);
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(sampleSum(await res.text(), 'llmchat_takeovers_total')).toBe(1);
      expect((await fetch(`${base}/api/agents`)).status).toBe(404);
    } finally {
      server.close();
    }
  });
});

/** The README's "Metrics" table: | `name` | type | labels | meaning |. */
function readmeMetrics(): Map<string, { type: string; labels: string[] }> {
  const readme = fs.readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8');
  const section = /\n## Metrics\n([\s\S]*?)(?=\n## )/.exec(readme)?.[1] ?? '';
  const rows = new Map<string, { type: string; labels: string[] }>();
  for (const m of section.matchAll(/^\| `([a-z_:]+)` \| (\w+) \| ([^|]*) \|/gm)) {
    const labels = [...(m[3] as string).matchAll(/`([a-z_]+)`/g)].map((l) => l[1] as string).sort();
    rows.set(m[1] as string, { type: m[2] as string, labels });
  }
  return rows;
}

describe('the README', () => {
  it('lists every LLMChat metric of the registry with its type and labels, and no other', async () => {
    const metrics = new Metrics();
    metrics.bindSources({});
    const registered = new Map<string, { type: string; labels: string[] }>();
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      if (m.name.startsWith('process_') || m.name.startsWith('nodejs_')) continue;
      const metric = metrics.registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] };
      registered.set(m.name, { type: String(m.type), labels: [...(metric.labelNames ?? [])].sort() });
    }
    const listed = readmeMetrics();
    expect(registered.size).toBeGreaterThan(30);
    expect([...listed.keys()].sort()).toEqual([...registered.keys()].sort());
    for (const [name, row] of registered) expect(listed.get(name), name).toEqual(row);
  });

  it("names prom-client's default process and Node.js metrics as a family", async () => {
    const text = await new Metrics().text();
    const types = metricTypes(text);
    expect(types.get('process_cpu_seconds_total')).toBe('counter');
    expect(types.get('nodejs_heap_size_used_bytes')).toBe('gauge');
    expect(fs.readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8')).toContain('`process_*`, `nodejs_*`');
  });
});
