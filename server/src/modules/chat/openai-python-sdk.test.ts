import { execFile } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';

/**
 * `/v1` through OpenAI's official Python SDK, against a listening server.
 * The interpreter is LLMCHAT_PYTHON (CI installs the SDK into a venv, see
 * .ci/run), else python3. Where neither has the `openai` package the suite
 * is skipped, and says so; with LLMCHAT_REQUIRE_SERVICES=1 (CI) it fails.
 */

const run = promisify(execFile);
const python = process.env.LLMCHAT_PYTHON ?? 'python3';
const sdkVersion = await run(python, ['-c', 'import openai; print(openai.__version__)']).then(
  (r) => r.stdout.trim(),
  () => undefined,
);
if (sdkVersion === undefined && process.env.LLMCHAT_REQUIRE_SERVICES === '1') throw new Error(`${python} cannot import openai: install it (pip install openai) or set LLMCHAT_PYTHON`);

/** What the script does with the SDK; it prints one JSON line of what it saw. */
const SCRIPT = `
import json, sys, openai
client = openai.OpenAI(api_key=sys.argv[1], base_url=sys.argv[2], max_retries=0)
out = {}
r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "python blocking"}])
out["blocking"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason, "model": r.model, "total": r.usage.total_tokens}
text, finishes, usage = "", [], None
for chunk in client.chat.completions.create(model="gpt", stream=True, stream_options={"include_usage": True}, messages=[{"role": "user", "content": "python streaming"}]):
    for c in chunk.choices:
        text += c.delta.content or ""
        if c.finish_reason: finishes.append(c.finish_reason)
    if chunk.usage: usage = chunk.usage.total_tokens
out["stream"] = {"text": text, "finishes": finishes, "total": usage}
out["models"] = [m.id for m in client.models.list()]
def error_of(call):
    try:
        call()
        return None
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "code": e.code, "retry_after": e.response.headers.get("retry-after")}
out["unknown"] = error_of(lambda: client.chat.completions.create(model="no-such-agent", messages=[{"role": "user", "content": "x"}]))
out["limited"] = error_of(lambda: client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "x"}]))
out["bad_key"] = error_of(lambda: openai.OpenAI(api_key="llmc_not-a-real-key", base_url=sys.argv[2], max_retries=0).models.list())
print(json.dumps(out))
`;

const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };

describe.skipIf(sdkVersion === undefined).each(await backendNames())(`/v1 with the official openai Python SDK ${sdkVersion ?? '(not installed: skipped)'} on %s`, (backendName) => {
  let t: TestApp;
  let mock: Awaited<ReturnType<typeof createMockUpstream>>;
  let key: string;
  let baseURL: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '1', V1_STREAM_HOLD_MS: '30000' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    baseURL = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/v1`;
    const admin = await login(t.app);
    for (const [id, endpoint] of [['gpt', `${mock.url}/v1/chat/completions`], ['limited', `${mock.url}/fault/status=429,retryAfter=7/v1/chat/completions`]] as const) {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id, name: id, description: 'python sdk', capabilities: [], isActive: true, provider: 'openai', endpoint, model: 'mock-gpt-4o', apiKey: 'k', timeouts: RELAXED } });
      if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
    }
    const alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const created = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(alice), payload: { name: 'python sdk' } });
    key = created.json<{ data: { key: string } }>().data.key;
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  it('creates completions streaming and not, lists models, and raises the SDK\'s error classes', async () => {
    const { stdout } = await run(python, ['-c', SCRIPT, key, baseURL], { timeout: 120_000 });
    const seen = JSON.parse(stdout) as Record<string, unknown>;
    expect(seen.blocking).toMatchObject({ text: expect.stringContaining('Simulated answer to: python blocking') as unknown, finish: 'stop', model: 'mock-gpt-4o' });
    expect((seen.blocking as { total: number }).total).toBeGreaterThan(0);
    expect(seen.stream).toMatchObject({ text: expect.stringContaining('Simulated answer to: python streaming') as unknown, finishes: ['stop'] });
    expect((seen.stream as { total: number }).total).toBeGreaterThan(0);
    expect(seen.models).toEqual(expect.arrayContaining(['gpt', 'limited']));
    expect(seen.unknown).toEqual({ class: 'NotFoundError', status: 404, code: 'model_not_found', retry_after: null });
    expect(seen.limited).toEqual({ class: 'RateLimitError', status: 429, code: 'rate_limit_exceeded', retry_after: '7' });
    expect(seen.bad_key).toMatchObject({ class: 'AuthenticationError', status: 401 });
  });
});
