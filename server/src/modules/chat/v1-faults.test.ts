import net from 'node:net';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { continuationChunks, estimateTokens, splitText } from '../../../../tools/src/mock-upstream/answer.js';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { eventually } from '../../test/sse.js';

/**
 * Issue 17's held-out suite of sixteen upstream faults, run against
 * `/v1/chat/completions` with the official `openai` SDK and a listening
 * server: each agent has a faulty primary (model `<id>-p`) and a healthy
 * fallback (`<id>-f`), both planned to say the same answer (`answer=`), so a
 * continued answer can be checked for one seamless text. Every case runs
 * streaming (with `include_usage`) and blocking. What a `/v1` caller receives:
 *
 * | # | fault (primary)                                | what the caller receives |
 * |---|------------------------------------------------|--------------------------|
 * | 1 | 429 with Retry-After (1 s), persistent          | the fallback's whole answer, `stop`, `model` the fallback's, its usage; the primary was retried once after the Retry-After |
 * | 2 | 429 without Retry-After, persistent             | the same, retried once at once |
 * | 3 | 5xx once (`times=1`)                            | the primary's whole answer after one retry, `model` the primary's, the retry's usage; the fallback is not called |
 * | 4 | 5xx persistent                                  | the fallback's whole answer, `model` the fallback's, its usage (primary tried twice) |
 * | 5 | connection reset before headers                 | the fallback's whole answer, `model` the fallback's, its usage |
 * | 6 | silence (no headers within `connectMs`)         | the fallback's whole answer; the silent primary is called once, never retried |
 * | 7 | a 20 s first token, agent `hedge: {afterMs}`    | the fallback's whole answer after the hedge wait, `model` the fallback's, its usage only; the slow call is cancelled and recorded as `hedge_lost` |
 * | 8 | stream cut after 2 chunks                       | one seamless answer (primary's 2 chunks + the fallback's continuation of that prefill), `stop`, last chunk's `model` the fallback's, the continuation's usage |
 * | 9 | stream stalled after 2 chunks (idle deadline)   | the same as 8 |
 * |10 | malformed stream (4 unreadable chunks > max 3)  | the same as 8 |
 * |11 | stream without `[DONE]`                         | the primary's whole answer, `stop`, its usage, at once (not after the idle deadline) |
 * |12 | context length exceeded (400)                   | another model as fallback: its whole answer; the same model as fallback: `BadRequestError` 400 `context_length_exceeded`, `param: messages`, fallback not called |
 * |13 | content policy (400 `content_policy_violation`) | `BadRequestError` 400 `content_policy_violation`, passed through, the fallback not called; an agent with `contentPolicy: 'other-model'` gets the fallback's answer instead |
 * |14 | cut, and the fallback refuses prefill (400)     | one seamless answer: the fallback restarts without the prefill, the repeated beginning is not sent again; usage of the restarted call |
 * |15 | flapping primary (every 2nd call a 5xx)         | every turn the whole answer, `model` and usage of whichever call served (the primary's retry, or the fallback once the breaker opens) |
 * |16 | fail-over accounting (in-stream error after 2 chunks; fallback ends `length`) | one seamless answer, the serving call's finish reason (`length`), `model` and usage: the fallback call's alone; the primary's attempt is recorded apart |
 *
 * No timed assertions: a fault that is not waited out is proved by who answered.
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

/** Deadlines no loaded test machine misses: for the endpoints a case does not mean to time out. */
const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };
const CHUNKS = 6;

type Mode = 'stream' | 'blocking';
const MODES: Mode[] = ['stream', 'blocking'];

interface Endpoint {
  /** A mock fault spec (without `answer=`, added per agent), or a full URL. */
  fault?: string;
  url?: string;
  model?: string;
  timeouts?: Record<string, number>;
}

/** What a `/v1` caller got. */
interface Received {
  id: string;
  text: string;
  finishReasons: (string | null)[];
  /** `model` of every chunk, or of the completion. */
  models: string[];
  usage: OpenAI.CompletionUsage | null | undefined;
}

describe.each(await backendNames())('the sixteen upstream faults of issue 17 through /v1 with the openai SDK on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let client: OpenAI;
  let admin: string;
  let resetting: net.Server;
  let resets = 0;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: CHUNKS, defaultIntervalMs: 2, maxRecordedRequests: 5000 });
    // Accepts, reads the request, and answers with a TCP reset: no status line ever.
    resetting = net.createServer((socket) => {
      resets++;
      socket.on('error', () => undefined);
      socket.once('data', () => socket.resetAndDestroy());
    });
    await new Promise<void>((resolve) => resetting.listen(0, '127.0.0.1', resolve));
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', V1_STREAM_HOLD_MS: '30000' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    admin = await login(t.app);
    const alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const key = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(alice), payload: { name: 'v1 faults' } });
    if (key.statusCode !== 201) throw new Error(`api key: ${key.statusCode} ${key.body}`);
    const baseURL = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/v1`;
    // No retries by the SDK: each case sees what one request got.
    client = new OpenAI({ apiKey: key.json<{ data: { key: string } }>().data.key, baseURL, maxRetries: 0 });
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
    resetting?.close();
  });

  const answerOf = (id: string) => `The answer of ${id}: one text, every word of it once.`;
  const urlFor = (id: string, fault = '') => `${mock.url}/fault/${[fault, `answer=${encodeURIComponent(answerOf(id))}`].filter(Boolean).join(',')}/v1/chat/completions`;

  /** An agent `id` whose endpoints all plan the answer `answerOf(id)`. */
  async function agent(id: string, primary: Endpoint, fallback: Endpoint = {}, extra: Record<string, unknown> = {}): Promise<{ primary: string; fallback: string }> {
    const p = { url: primary.url ?? urlFor(id, primary.fault), model: primary.model ?? `${id}-p` };
    const f = { url: fallback.url ?? urlFor(id, fallback.fault), model: fallback.model ?? `${id}-f` };
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: {
        id,
        name: id,
        provider: 'openai',
        endpoint: p.url,
        model: p.model,
        apiKey: 'k',
        timeouts: primary.timeouts ?? RELAXED,
        fallbacks: [{ provider: 'openai', endpoint: f.url, model: f.model, apiKey: 'k', timeouts: fallback.timeouts ?? RELAXED }],
        ...extra,
      },
    });
    if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
    return { primary: p.url, fallback: f.url };
  }

  async function ask(model: string, mode: Mode): Promise<Received> {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: `a question for ${model}` }];
    if (mode === 'blocking') {
      const c = await client.chat.completions.create({ model, messages });
      return { id: c.id, text: c.choices[0]?.message.content ?? '', finishReasons: c.choices.map((x) => x.finish_reason), models: [c.model], usage: c.usage };
    }
    const stream = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } });
    const got: Received = { id: '', text: '', finishReasons: [], models: [], usage: undefined };
    for await (const chunk of stream) {
      got.id = chunk.id;
      got.models.push(chunk.model);
      for (const choice of chunk.choices) {
        got.text += choice.delta.content ?? '';
        if (choice.finish_reason) got.finishReasons.push(choice.finish_reason);
      }
      if (chunk.usage) got.usage = chunk.usage;
    }
    return got;
  }

  const callsTo = (url: string) => mock.requests.filter((r) => `${mock.url}${r.path}` === url).length;
  const lastCallTo = (url: string) => {
    const call = mock.requests.filter((r) => `${mock.url}${r.path}` === url).at(-1);
    if (!call) throw new Error(`no call to ${url}`);
    return call.body as { model: string; messages: { role: string; content: string }[] };
  };

  /** The usage the mock reported for the last call to `url`: its prompt, and the chunks it sent (after any prefill). */
  function usageOfLastCall(url: string, answer: string): OpenAI.CompletionUsage {
    const { messages } = lastCallTo(url);
    const prompt = estimateTokens(messages.reduce((n, m) => n + m.content.length, 0));
    const last = messages.at(-1);
    const planned = splitText(answer, CHUNKS);
    const sent = last?.role === 'assistant' ? continuationChunks(planned, last.content).length : planned.length;
    return { prompt_tokens: prompt, completion_tokens: sent, total_tokens: prompt + sent };
  }

  const usageFields = (u: OpenAI.CompletionUsage | null | undefined) => u && { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens };

  /** The caller got `answer` whole, ended `finish`, named `servedModel` last (the model before it only for a continued answer), with the usage of the serving call at `servedUrl` alone. */
  function expectServed(got: Received, o: { answer: string; servedModel: string; servedUrl: string; finish?: string; continuedFrom?: string }) {
    expect(got.text).toBe(o.answer);
    expect(got.finishReasons).toEqual([o.finish ?? 'stop']);
    expect(got.models.at(-1)).toBe(o.servedModel);
    for (const named of got.models) expect([o.servedModel, o.continuedFrom].filter(Boolean)).toContain(named);
    expect(usageFields(got.usage)).toEqual(usageOfLastCall(o.servedUrl, o.answer));
  }

  const turnIdOf = (got: Received) => got.id.replace(/^chatcmpl-/, '');
  async function failedAttempts(got: Received) {
    await t.app.deps.failures.settled();
    return t.backend.database.db.selectFrom('upstream_failures').selectAll().where('message_id', '=', turnIdOf(got)).orderBy('id').execute();
  }
  const stored = (got: Received) => t.backend.database.db.selectFrom('messages').selectAll().where('id', '=', turnIdOf(got)).executeTakeFirstOrThrow();

  describe.each(MODES)('%s', (mode) => {
    const m = mode === 'stream' ? 's' : 'b';

    describe('before the first token', () => {
      it('1. a rate limit with Retry-After: honoured once on the primary, then the fallback answers', async () => {
        const id = `rl-after-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'status=429,retryAfter=1' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(callsTo(primary)).toBe(2);
        expect(callsTo(fallback)).toBe(1);
      });

      it('2. a rate limit without Retry-After: retried once, then the fallback answers', async () => {
        const id = `rl-bare-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'status=429' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(callsTo(primary)).toBe(2);
      });

      it('3. a 5xx once: the primary\'s retry answers, the fallback is not called', async () => {
        const id = `5xx-once-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'status=503,times=1' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-p`, servedUrl: primary });
        expect(callsTo(primary)).toBe(2);
        expect(callsTo(fallback)).toBe(0);
      });

      it('4. a persistent 5xx: the primary is tried twice, then the fallback answers', async () => {
        const id = `5xx-always-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'status=500' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(callsTo(primary)).toBe(2);
      });

      it('5. a connection reset before the headers: the fallback answers', async () => {
        const id = `reset-${m}`;
        const before = resets;
        const { fallback } = await agent(id, { url: `http://127.0.0.1:${(resetting.address() as AddressInfo).port}/v1/chat/completions` });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(resets).toBeGreaterThan(before);
      });

      it('6. silence (no headers within the deadline): the fallback answers, the silent primary is not retried', async () => {
        const id = `silent-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'headersDelay=60000', timeouts: { ...RELAXED, connectMs: 300 } });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(callsTo(primary)).toBe(1);
        expect((await failedAttempts(got)).map((f) => [f.kind, f.model])).toEqual([['timeout', `${id}-p`]]);
      });

      it('7. a 20 s first token with hedge {afterMs: 300}: the fallback answers, the slow call is cancelled and billed nothing', async () => {
        const id = `hedge-${m}`;
        const abortedBefore = mock.stats().aborted;
        const { primary, fallback } = await agent(id, { fault: 'firstTokenDelay=20000' }, {}, { hedge: { afterMs: 300 } });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(callsTo(primary)).toBe(1);
        expect(callsTo(fallback)).toBe(1);
        await eventually(() => Promise.resolve(mock.stats().aborted > abortedBefore), 'the slow call aborted');
        expect((await failedAttempts(got)).map((f) => [f.kind, f.model])).toEqual([['hedge_lost', `${id}-p`]]);
        expect(await stored(got)).toMatchObject({ model: `${id}-f`, prompt_tokens: got.usage?.prompt_tokens, completion_tokens: got.usage?.completion_tokens });
      });

      it('12. context length exceeded: another model as fallback answers; the same model refuses it with BadRequestError context_length_exceeded', async () => {
        const id = `ctx-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'status=400,code=context_length_exceeded' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(callsTo(primary)).toBe(1);

        const same = `ctx-same-${m}`;
        const urls = await agent(same, { fault: 'status=400,code=context_length_exceeded' }, { model: `${same}-p` });
        const err = await ask(same, mode).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(OpenAI.BadRequestError);
        const e = err as InstanceType<typeof OpenAI.BadRequestError>;
        expect(e.status).toBe(400);
        expect(e.code).toBe('context_length_exceeded');
        expect(e.param).toBe('messages');
        expect(e.type).toBe('invalid_request_error');
        expect(callsTo(urls.primary)).toBe(1);
        expect(callsTo(urls.fallback)).toBe(0);
      });

      // Issue 17: a content-policy refusal is passed through by default; routing it to another model is the
      // agent's opt-in (`contentPolicy: 'other-model'`).
      it('13. content policy: the refusal is passed through as BadRequestError content_policy_violation, the fallback not called', async () => {
        const id = `policy-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'status=400,code=content_policy_violation' });
        const err = await ask(id, mode).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(OpenAI.BadRequestError);
        const e = err as InstanceType<typeof OpenAI.BadRequestError>;
        expect(e.status).toBe(400);
        expect(e.code).toBe('content_policy_violation');
        expect(callsTo(primary)).toBe(1);
        expect(callsTo(fallback)).toBe(0);
      });

      it('13a. content policy on an agent that opted in to another model: the fallback answers', async () => {
        const id = `policy-routed-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'status=400,code=content_policy_violation' }, {}, { contentPolicy: 'other-model' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback });
        expect(callsTo(primary)).toBe(1);
      });
    });

    describe('after the first token', () => {
      it.each([
        ['8. a cut stream', 'cut', 'cutAfter=2', undefined],
        ['9. a stalled stream', 'stall', 'stallAfter=2', { ...RELAXED, idleMs: 300 }],
        ['10. a malformed stream', 'malformed', 'malformedAfter=2,malformed=4', undefined],
      ])('%s: continued on the fallback, one seamless answer', async (_name, slug, fault, timeouts) => {
        const id = `${slug}-${m}`;
        const { primary, fallback } = await agent(id, { fault, ...(timeouts ? { timeouts } : {}) });
        const got = await ask(id, mode);
        const answer = answerOf(id);
        expectServed(got, { answer, servedModel: `${id}-f`, servedUrl: fallback, continuedFrom: `${id}-p` });
        expect(callsTo(primary)).toBe(1);
        // The fallback continued the primary's two chunks (prefill) rather than starting over.
        expect(lastCallTo(fallback).messages.at(-1)).toEqual({ role: 'assistant', content: splitText(answer, CHUNKS).slice(0, 2).join('') });
      });

      it('11. a stream without [DONE]: the primary\'s answer, finished at once', async () => {
        const id = `nodone-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'noDone=1', timeouts: { ...RELAXED, idleMs: 600_000 } });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-p`, servedUrl: primary });
        expect(callsTo(fallback)).toBe(0);
      });

      it('14. a cut whose fallback refuses the prefill: restarted there without it, and the caller still gets one seamless answer', async () => {
        const id = `noprefill-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'cutAfter=2' }, { fault: 'prefill=refuse' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback, continuedFrom: `${id}-p` });
        expect(callsTo(primary)).toBe(1);
        // The prefill (refused), then the restart without it, which served.
        expect(callsTo(fallback)).toBe(2);
        expect(lastCallTo(fallback).messages.at(-1)?.role).toBe('user');
      });

      it('16. fail-over accounting: the caller gets the serving call\'s finish reason, model and usage alone; the broken attempt is recorded apart', async () => {
        const id = `account-${m}`;
        const { primary, fallback } = await agent(id, { fault: 'errorAfter=2' }, { fault: 'finish=length' });
        const got = await ask(id, mode);
        expectServed(got, { answer: answerOf(id), servedModel: `${id}-f`, servedUrl: fallback, finish: 'length', continuedFrom: `${id}-p` });
        expect(callsTo(primary)).toBe(1);
        // The stored (billed) answer is the caller's: the serving call's model and usage.
        expect(await stored(got)).toMatchObject({ status: 'complete', content: answerOf(id), model: `${id}-f`, prompt_tokens: got.usage?.prompt_tokens, completion_tokens: got.usage?.completion_tokens });
        expect((await failedAttempts(got)).map((f) => [f.model, f.mid_answer, f.error_code])).toEqual([[`${id}-p`, true, 'UPSTREAM_INTERRUPTED']]);
      });
    });

    it('15. a flapping primary (every second call fails): every turn gets the whole answer from whichever call served', async () => {
      const id = `flap-${m}`;
      const urls = await agent(id, { fault: 'status=503,every=2' });
      const servedBy: string[] = [];
      for (let turn = 0; turn < 6; turn++) {
        const before = mock.requests.length;
        const got = await ask(id, mode);
        const calls = mock.requests.slice(before);
        const serving = calls.at(-1);
        const servedUrl = `${mock.url}${serving?.path ?? ''}`;
        expect([urls.primary, urls.fallback]).toContain(servedUrl);
        const servedModel = (serving?.body as { model: string }).model;
        expectServed(got, { answer: answerOf(id), servedModel, servedUrl });
        servedBy.push(servedModel);
      }
      // The primary did flap: it served some turns after a failed call, and failed some calls.
      expect(servedBy).toContain(`${id}-p`);
      expect(callsTo(urls.primary)).toBeGreaterThan(servedBy.filter((s) => s === `${id}-p`).length);
    });
  });
});
