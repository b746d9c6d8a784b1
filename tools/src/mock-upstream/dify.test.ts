import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockUpstream } from './index.js';
import { OPENAI_AUTH as BEARER, SseReader, json, parseSse, postJson, readFully, startMock } from './test-support.js';

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMock();
});
afterAll(async () => {
  await mock.close();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const chatMessages = (body: Record<string, unknown>, headers: Record<string, string> = BEARER) =>
  postJson(`${mock.url}/v1/chat-messages`, { query: 'Hello', inputs: {}, user: 'u-1', ...body }, headers);

async function stream(body: Record<string, unknown>): Promise<{ ping: boolean; events: Record<string, unknown>[] }> {
  const res = await chatMessages({ response_mode: 'streaming', ...body });
  expect(res.status).toBe(200);
  const frames = parseSse((await readFully(res)).text);
  return { ping: frames[0]?.event === 'ping', events: frames.filter((f) => f.event === undefined).map((f) => json(f.data)) };
}

const answerOf = (events: Record<string, unknown>[]): string =>
  events.filter((e) => e.event === 'message').map((e) => e.answer as string).join('');

describe('dify chat-messages', () => {
  it('streams message events and a message_end with usage; mints a conversation id', async () => {
    const { ping, events } = await stream({});
    expect(ping).toBe(true);
    expect(events.map((e) => e.event)).toEqual(['message', 'message', 'message', 'message', 'message_end']);
    const first = events[0] ?? {};
    expect(first.conversation_id).toMatch(UUID);
    expect(first.task_id).toMatch(UUID);
    expect(first.message_id).toMatch(UUID);
    expect(typeof first.created_at).toBe('number');
    for (const event of events) {
      expect(event).toMatchObject({ conversation_id: first.conversation_id, task_id: first.task_id, message_id: first.message_id });
    }
    expect(answerOf(events)).toMatch(/^Simulated answer to: Hello /);
    expect(events.at(-1)?.metadata).toMatchObject({ usage: { prompt_tokens: 2, completion_tokens: 4, total_tokens: 6 } });
  });

  it('keeps a given conversation_id', async () => {
    const { events } = await stream({ conversation_id: 'conv-42' });
    expect(events.every((e) => e.conversation_id === 'conv-42')).toBe(true);
  });

  it('answers a blocking request (the default mode)', async () => {
    const res = await chatMessages({});
    expect(res.status).toBe(200);
    const body = json(await res.text());
    expect(body).toMatchObject({
      event: 'message',
      mode: 'chat',
      metadata: { usage: { prompt_tokens: 2, completion_tokens: 4, total_tokens: 6 } },
    });
    expect(body.message_id).toMatch(UUID);
    expect(body.conversation_id).toMatch(UUID);
    expect(typeof body.created_at).toBe('number');
    expect(body.answer).toMatch(/^Simulated answer to: Hello /);
  });

  it('takes a system prompt from inputs.system_prompt or a leading [system] line', async () => {
    const fromInputs = await stream({ inputs: { system_prompt: 'Be terse.' } });
    expect(answerOf(fromInputs.events)).toMatch(/^\[system prompt received\] Simulated answer to: Hello /);
    const fromQuery = await stream({ query: '[system] Be terse.\nWhat now?' });
    expect(answerOf(fromQuery.events)).toMatch(/^\[system prompt received\] Simulated answer to: What now\? /);
    expect(answerOf((await stream({ inputs: { system_prompt: '' } })).events)).toMatch(/^Simulated/);
  });

  it('streams agent_thought events for reasoning and an error event for errorAfter', async () => {
    const thoughtful = await stream({ query: 'Hi [[mock reasoning=2]]' });
    expect(thoughtful.events.map((e) => e.event).slice(0, 3)).toEqual(['agent_thought', 'agent_thought', 'message']);
    expect(thoughtful.events[1]).toMatchObject({ position: 2, thought: 'Reasoning step 2. ' });

    const failing = await stream({ query: 'Hi [[mock errorAfter=2 code=provider_quota_exceeded]]' });
    expect(failing.events.map((e) => e.event)).toEqual(['message', 'message', 'error']);
    expect(failing.events.at(-1)).toMatchObject({ status: 500, code: 'provider_quota_exceeded', message: expect.any(String) as string });
  });

  it('stops a running stream through the stop API, ending it with message_end', async () => {
    const res = await chatMessages({ response_mode: 'streaming', query: 'long [[mock chunks=50 interval=200]]' });
    const reader = new SseReader(res);
    expect((await reader.next())?.event).toBe('ping');
    const first = json((await reader.next())?.data ?? '{}');
    const stop = await postJson(`${mock.url}/v1/chat-messages/${String(first.task_id)}/stop`, { user: 'u-1' }, BEARER);
    expect(stop.status).toBe(200);
    expect(json(await stop.text())).toEqual({ result: 'success' });
    const rest = (await reader.rest()).map((e) => json(e.data));
    expect(rest.at(-1)?.event).toBe('message_end');
    expect(rest.filter((e) => e.event === 'message').length).toBeLessThan(49);
  });

  it('accepts feedback and serves parameters with an opening statement', async () => {
    const feedback = await postJson(`${mock.url}/v1/messages/m-1/feedbacks`, { rating: 'like', user: 'u-1' }, BEARER);
    expect(json(await feedback.text())).toEqual({ result: 'success' });
    const badRating = await postJson(`${mock.url}/v1/messages/m-1/feedbacks`, { rating: 'meh', user: 'u-1' }, BEARER);
    expect(badRating.status).toBe(400);
    const parameters = await fetch(`${mock.url}/v1/parameters`, { headers: BEARER });
    expect(json(await parameters.text())).toMatchObject({ opening_statement: expect.any(String) as string, user_input_form: [] });
  });

  it('uses the Dify error format for bad-key, validation and status faults', async () => {
    const bad = await chatMessages({}, { authorization: 'Bearer bad-key' });
    expect(bad.status).toBe(401);
    expect(json(await bad.text())).toEqual({ code: 'unauthorized', message: 'Access token is invalid', status: 401 });
    const noUser = await postJson(`${mock.url}/v1/chat-messages`, { query: 'x', inputs: {} }, BEARER);
    expect(noUser.status).toBe(400);
    expect(json(await noUser.text())).toMatchObject({ code: 'invalid_param', status: 400 });
    const quota = await chatMessages({ query: 'x [[mock status=400 code=provider_quota_exceeded]]' });
    expect(json(await quota.text())).toMatchObject({ code: 'provider_quota_exceeded', status: 400 });
  });

  it('ends without message_end on noDone', async () => {
    const { events } = await stream({ query: 'x [[mock noDone]]' });
    expect(events.at(-1)?.event).toBe('message');
  });
});
