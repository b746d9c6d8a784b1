import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractDirectives, mergeFaults, parseFaultSpec, splitFaultPrefix } from './faults.js';
import type { MockUpstream } from './index.js';
import type { SseEvent } from './test-support.js';
import { OPENAI_AUTH, SseReader, eventually, json, parseSse, postJson, readFully, startMock } from './test-support.js';

describe('fault spec parsing', () => {
  it('reads keys separated by commas, spaces or semicolons, case-insensitively', () => {
    expect(parseFaultSpec('status=503,retryAfter=2; headersdelay=10  noDone').spec).toEqual({
      status: 503,
      retryAfter: '2',
      headersDelay: 10,
      noDone: true,
    });
  });

  it('URL-decodes answer and code values', () => {
    expect(parseFaultSpec('answer=Hello%2C%20world code=rate_limit_exceeded').spec).toEqual({
      answer: 'Hello, world',
      code: 'rate_limit_exceeded',
    });
  });

  it('reports unknown keys and bad values instead of ignoring them', () => {
    const { spec, errors } = parseFaultSpec('statuss=500 status=200 chunks=-1 interactive=maybe cutAfter=2');
    expect(spec).toEqual({ cutAfter: 2 });
    expect(errors).toHaveLength(4);
    expect(errors[0]).toContain('statuss');
  });

  it('reads a finish reason from OpenAI\'s four and refuses any other', () => {
    expect(parseFaultSpec('finish=length').spec).toEqual({ finish: 'length' });
    expect(parseFaultSpec('finish=content_filter').spec).toEqual({ finish: 'content_filter' });
    const { spec, errors } = parseFaultSpec('finish=max_tokens');
    expect(spec).toEqual({});
    expect(errors[0]).toContain('finish');
  });

  it('splits the /fault/<spec>/ URL prefix from the route', () => {
    const { faults, url } = splitFaultPrefix('/fault/status=503,retryAfter=2/v1/chat/completions?x=1');
    expect(url).toBe('/v1/chat/completions?x=1');
    expect(faults?.spec).toEqual({ status: 503, retryAfter: '2' });
    expect(splitFaultPrefix('/v1/models')).toEqual({ faults: undefined, url: '/v1/models' });
  });

  it('extracts [[mock …]] directives and removes them from the text', () => {
    const { faults, text } = extractDirectives('Tell me [[mock chunks=3]] about [[mock interval=5 chunks=4]] cats');
    expect(text).toBe('Tell me about cats');
    expect(faults?.spec).toEqual({ chunks: 4, interval: 5 });
    expect(extractDirectives('no directive').faults).toBeUndefined();
  });

  it('reads times and every, and refuses every=0', () => {
    expect(parseFaultSpec('status=503,times=1').spec).toEqual({ status: 503, times: 1 });
    expect(parseFaultSpec('status=503,every=2').spec).toEqual({ status: 503, every: 2 });
    const { spec, errors } = parseFaultSpec('status=503,every=0');
    expect(spec).toEqual({ status: 503 });
    expect(errors[0]).toContain('every');
  });

  it('lets later sources win key by key', () => {
    const merged = mergeFaults(parseFaultSpec('status=500 chunks=2'), undefined, parseFaultSpec('status=502'));
    expect(merged.spec).toEqual({ status: 502, chunks: 2 });
  });
});

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMock();
});
afterAll(async () => {
  await mock.close();
});

interface Chunk {
  choices: { delta: { content?: string | null }; finish_reason: string | null }[];
}

const chat = (content: string, options: { stream?: boolean; headers?: Record<string, string>; prefix?: string; signal?: AbortSignal } = {}) =>
  postJson(
    `${mock.url}${options.prefix ?? ''}/v1/chat/completions`,
    { model: 'm', stream: options.stream ?? true, messages: [{ role: 'user', content }] },
    { ...OPENAI_AUTH, ...options.headers },
    options.signal,
  );

const isText = (e: SseEvent): boolean => {
  if (!e.data.startsWith('{"id"')) return false;
  try {
    return (json<Chunk>(e.data).choices[0]?.delta.content ?? '') !== '';
  } catch {
    return false;
  }
};
const textOf = (events: SseEvent[]): string =>
  events.filter(isText).map((e) => json<Chunk>(e.data).choices[0]?.delta.content ?? '').join('');

async function nextTextEvent(reader: SseReader): Promise<SseEvent> {
  for (;;) {
    const event = await reader.next();
    if (event === undefined) throw new Error('stream ended before a text chunk');
    if (isText(event)) return event;
  }
}

const sleep = (ms: number): Promise<'timeout'> => new Promise((resolve) => setTimeout(() => resolve('timeout'), ms));

describe('faults over HTTP', () => {
  it('applies a status fault from the URL prefix, the header or the message, later winning', async () => {
    const prefixOnly = await chat('hi', { prefix: '/fault/status=500' });
    expect(prefixOnly.status).toBe(500);
    const headerOnly = await chat('hi', { headers: { 'x-mock-fault': 'status=502' } });
    expect(headerOnly.status).toBe(502);
    const messageOnly = await chat('hi [[mock status=503 retryAfter=2]]');
    expect(messageOnly.status).toBe(503);
    expect(messageOnly.headers.get('retry-after')).toBe('2');

    const headerOverPrefix = await chat('hi', { prefix: '/fault/status=500,retryAfter=9', headers: { 'x-mock-fault': 'status=502' } });
    expect(headerOverPrefix.status).toBe(502);
    expect(headerOverPrefix.headers.get('retry-after')).toBe('9');
    const messageOverAll = await chat('hi [[mock status=504]]', { prefix: '/fault/status=500', headers: { 'x-mock-fault': 'status=502' } });
    expect(messageOverAll.status).toBe(504);
    expect(json(await messageOverAll.text())).toMatchObject({ error: { type: 'server_error' } });
  });

  it('times=N fails the first N requests that carry the same spec, then serves them with the answer-shaping keys kept', async () => {
    const prefix = '/fault/status=503,times=2,answer=Served%20at%20last';
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await chat('hi', { prefix, stream: false });
      statuses.push(res.status);
      if (res.status === 200) expect(json<{ choices: { message: { content: string } }[] }>(await res.text()).choices[0]?.message.content).toBe('Served at last');
      else await res.text();
    }
    expect(statuses).toEqual([503, 503, 200, 200]);
    // Another spec has its own count: it fails on its first request.
    const other = await chat('hi', { prefix: '/fault/status=502,times=2', stream: false });
    expect(other.status).toBe(502);
    // A spared stream is a healthy stream, whatever fault (here a cut) the spec carries.
    const cut = await chat('hi', { prefix: '/fault/cutAfter=1,times=1' });
    expect((await readFully(cut)).error).toBeDefined();
    const whole = await readFully(await chat('hi', { prefix: '/fault/cutAfter=1,times=1' }));
    expect(whole.error).toBeUndefined();
    expect(whole.text).toContain('[DONE]');
  });

  it('every=N fails every Nth request that carries the same spec (a flapping upstream), on other routes too', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await chat('hi', { headers: { 'x-mock-fault': 'status=500,every=2' }, stream: false });
      statuses.push(res.status);
      await res.text();
    }
    expect(statuses).toEqual([200, 500, 200, 500, 200, 500]);
    const models: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${mock.url}/fault/status=503,every=3/v1/models`, { headers: OPENAI_AUTH });
      models.push(res.status);
      await res.text();
    }
    expect(models).toEqual([200, 200, 503]);
  });

  it('answers 400 mock_fault_invalid for an unknown fault key', async () => {
    const res = await chat('hi', { headers: { 'x-mock-fault': 'stallAftr=2' } });
    expect(res.status).toBe(400);
    expect(json(await res.text())).toMatchObject({ error: { code: 'mock_fault_invalid', message: expect.stringContaining('stallAftr') as string } });
  });

  it('applies headersDelay before the status line (generous lower bound)', async () => {
    const started = performance.now();
    const res = await chat('hi', { headers: { 'x-mock-fault': 'headersDelay=300,status=503' } });
    expect(performance.now() - started).toBeGreaterThanOrEqual(200);
    expect(res.status).toBe(503);
  });

  it('applies firstTokenDelay after the headers, before the first chunk (generous lower bound)', async () => {
    const res = await chat('hi [[mock firstTokenDelay=300]]');
    const headersAt = performance.now();
    expect(res.status).toBe(200);
    await nextTextEvent(new SseReader(res));
    expect(performance.now() - headersAt).toBeGreaterThanOrEqual(200);
  });

  it('sends exactly `chunks` text chunks, `interval` apart (generous lower bound)', async () => {
    const started = performance.now();
    const { text } = await readFully(await chat('hi [[mock chunks=7 interval=40]]'));
    const events = parseSse(text);
    expect(events.filter(isText)).toHaveLength(7);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
    expect(events.at(-1)?.data).toBe('[DONE]');
  });

  it('stalls after stallAfter chunks until the client gives up, then frees the stream', async () => {
    const controller = new AbortController();
    const res = await chat('hi [[mock chunks=6 stallAfter=2]]', { signal: controller.signal });
    const reader = new SseReader(res);
    await nextTextEvent(reader);
    await nextTextEvent(reader);
    const inFlightBefore = mock.stats().inFlight;
    expect(await Promise.race([reader.next(), sleep(300)])).toBe('timeout');
    controller.abort();
    await eventually(() => expect(mock.stats().inFlight).toBeLessThan(inFlightBefore));
  });

  it('resumes after `stall` milliseconds when given', async () => {
    const res = await chat('hi [[mock chunks=4 stallAfter=2 stall=250 interval=1]]');
    const reader = new SseReader(res);
    await nextTextEvent(reader);
    await nextTextEvent(reader);
    const stalledAt = performance.now();
    await nextTextEvent(reader);
    expect(performance.now() - stalledAt).toBeGreaterThanOrEqual(150);
    const rest = await reader.rest();
    expect(rest.filter(isText)).toHaveLength(1);
    expect(rest.at(-1)?.data).toBe('[DONE]');
  });

  it('destroys the socket after cutAfter chunks', async () => {
    const { text, error } = await readFully(await chat('hi [[mock cutAfter=2]]'));
    expect(error).toBeDefined();
    expect(parseSse(text).filter(isText)).toHaveLength(2);
    expect(text).not.toContain('[DONE]');
    await expect(chat('hi [[mock cutAfter=1]]', { stream: false })).rejects.toThrow();
  });

  it('sends one malformed chunk after malformedAfter chunks, then goes on', async () => {
    const { text } = await readFully(await chat('hi [[mock malformedAfter=1]]'));
    const events = parseSse(text);
    const unparseable = events
      .map((e, index) => ({ e, index }))
      .filter(({ e }) => {
        if (e.data === '[DONE]') return false;
        try {
          JSON.parse(e.data);
          return false;
        } catch {
          return true;
        }
      });
    expect(unparseable).toHaveLength(1);
    const textIndexes = events.map((e, index) => (isText(e) ? index : -1)).filter((i) => i >= 0);
    expect(textIndexes).toHaveLength(4);
    expect(unparseable[0]?.index).toBeGreaterThan(textIndexes[0] ?? Infinity);
    expect(unparseable[0]?.index).toBeLessThan(textIndexes[1] ?? -1);
    expect(events.at(-1)?.data).toBe('[DONE]');

    const blocking = await chat('hi [[mock malformedAfter=0]]', { stream: false });
    expect(blocking.status).toBe(200);
    const body = await blocking.text();
    expect(() => JSON.parse(body) as unknown).toThrow();
  });

  it('ends cleanly without [DONE] on noDone=1', async () => {
    const { text, error } = await readFully(await chat('hi [[mock noDone=1]]'));
    expect(error).toBeUndefined();
    const events = parseSse(text);
    expect(events.filter(isText)).toHaveLength(4);
    expect(json<Chunk>(events.at(-1)?.data ?? '').choices[0]?.finish_reason).toBe('stop');
    expect(text).not.toContain('[DONE]');
  });

  it('sends an in-stream error after errorAfter chunks', async () => {
    const events = parseSse((await readFully(await chat('hi [[mock errorAfter=1 code=server_overloaded]]'))).text);
    expect(events.filter(isText)).toHaveLength(1);
    expect(json(events.at(-1)?.data ?? '')).toMatchObject({ error: { type: 'server_error', code: 'server_overloaded' } });
  });

  it('uses answer=TEXT as the answer, split over the chunk count', async () => {
    const events = parseSse((await readFully(await chat('hi', { headers: { 'x-mock-fault': 'answer=Hello%2C%20mock%20world chunks=3' } }))).text);
    expect(events.filter(isText)).toHaveLength(3);
    expect(textOf(events)).toBe('Hello, mock world');
  });

  it('echoes the question without the directive', async () => {
    const events = parseSse((await readFully(await chat('What [[mock chunks=2]] now?'))).text);
    expect(textOf(events)).toMatch(/^Simulated answer to: What now\? /);
  });

  it('applies headersDelay and status to non-chat routes too', async () => {
    const res = await fetch(`${mock.url}/fault/status=503,retryAfter=4/v1/models`, { headers: OPENAI_AUTH });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('4');
  });

  it('never answers a blocking request stalled without `stall`, until the client aborts', async () => {
    const controller = new AbortController();
    const pending = chat('hi [[mock stallAfter=0]]', { stream: false, signal: controller.signal });
    expect(await Promise.race([pending.then(() => 'answered'), sleep(300)])).toBe('timeout');
    controller.abort();
    await expect(pending).rejects.toThrow();
  });
});
