import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockUpstream } from './index.js';
import type { SseEvent } from './test-support.js';
import { OPENAI_AUTH as BEARER, json, parseSse, postJson, readFully, startMock } from './test-support.js';

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMock();
});
afterAll(async () => {
  await mock.close();
});

interface Chunk {
  choices: { delta: { role?: string; content?: string; reasoning_content?: string }; finish_reason: string | null }[];
}

const completions = (body: Record<string, unknown>, headers: Record<string, string> = BEARER) =>
  postJson(`${mock.url}/api/v1/chat/completions`, { messages: [{ role: 'user', content: 'Hello' }], ...body }, headers);

async function stream(body: Record<string, unknown>): Promise<SseEvent[]> {
  const res = await completions({ stream: true, ...body });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  return parseSse((await readFully(res)).text);
}

const answerText = (events: SseEvent[]): string =>
  events
    .filter((e) => e.data.startsWith('{') && (e.event === 'answer' || e.event === undefined))
    .map((e) => json<Chunk>(e.data).choices[0]?.delta.content ?? '')
    .join('');

describe('fastgpt chat completions', () => {
  it('streams named events with detail=true: flowNodeStatus, answer chunks, flowResponses, [DONE]', async () => {
    const events = await stream({ detail: true, chatId: 'chat-detail' });
    expect(events.map((e) => e.event)).toEqual([
      'flowNodeStatus',
      'answer',
      'answer',
      'answer',
      'answer',
      'answer',
      'flowResponses',
      'answer',
    ]);
    expect(json(events[0]?.data ?? '')).toEqual({ status: 'running', name: 'AI 对话' });
    expect(json<Chunk>(events[1]?.data ?? '').choices[0]?.delta).toMatchObject({ role: 'assistant' });
    expect(json<Chunk>(events[5]?.data ?? '').choices[0]?.finish_reason).toBe('stop');
    const responses = json<Record<string, unknown>[]>(events[6]?.data ?? '');
    expect(responses[0]).toMatchObject({ moduleName: 'AI 对话', tokens: 6, inputTokens: 2, outputTokens: 4 });
    expect(events.at(-1)?.data).toBe('[DONE]');
    expect(answerText(events)).toMatch(/^Simulated answer to: Hello /);
  });

  it('streams plain data: chunks without detail', async () => {
    const events = await stream({});
    expect(events.every((e) => e.event === undefined)).toBe(true);
    expect(events).toHaveLength(6);
    expect(events.at(-1)?.data).toBe('[DONE]');
    expect(answerText(events)).toMatch(/^Simulated answer to: Hello /);
  });

  it('ends with a userSelect interactive node for interactive=select', async () => {
    const events = await stream({ detail: true, messages: [{ role: 'user', content: 'Pick [[mock interactive=select]]' }] });
    const interactive = events.find((e) => e.event === 'interactive');
    expect(json(interactive?.data ?? '')).toEqual({
      interactive: {
        type: 'userSelect',
        params: {
          description: expect.any(String) as string,
          userSelectOptions: [
            { value: 'A', key: 'a' },
            { value: 'B', key: 'b' },
            { value: 'C', key: 'c' },
          ],
        },
      },
    });
    // The interactive node comes after the text, before the finish chunk, the flow responses and [DONE].
    expect(events.slice(-5).map((e) => e.event)).toEqual(['flowNodeStatus', 'interactive', 'answer', 'flowResponses', 'answer']);
    expect(json(events.at(-5)?.data ?? '')).toEqual({ status: 'running', name: '用户选择' });
    expect(events.at(-1)?.data).toBe('[DONE]');
  });

  it('ends with a userInput form for interactive=form', async () => {
    const events = await stream({ detail: true, messages: [{ role: 'user', content: 'Form [[mock interactive=form]]' }] });
    const payload = json<{ interactive: { type: string; params: { inputForm: Record<string, unknown>[] } } }>(
      events.find((e) => e.event === 'interactive')?.data ?? '',
    );
    expect(payload.interactive.type).toBe('userInput');
    expect(payload.interactive.params.inputForm[0]).toMatchObject({ type: 'input', key: 'name', label: 'Name', required: true });
  });

  it('streams reasoning_content before the answer', async () => {
    const events = await stream({ detail: true, messages: [{ role: 'user', content: 'Hi [[mock reasoning=2]]' }] });
    const deltas = events
      .filter((e) => e.event === 'answer' && e.data.startsWith('{'))
      .map((e) => json<Chunk>(e.data).choices[0]?.delta);
    expect(deltas[0]?.reasoning_content).toBe('Reasoning step 1. ');
    expect(deltas[1]?.reasoning_content).toBe('Reasoning step 2. ');
    expect(deltas[2]?.content).toMatch(/^Simulated/);
  });

  it('answers blocking requests OpenAI-style, with responseData when detail=true', async () => {
    const plain = json(await (await completions({ chatId: 'chat-blocking' })).text());
    expect(plain).toMatchObject({
      id: 'chat-blocking',
      usage: { prompt_tokens: 2, completion_tokens: 4, total_tokens: 6 },
      choices: [{ message: { role: 'assistant' }, finish_reason: 'stop', index: 0 }],
    });
    expect(plain.responseData).toBeUndefined();
    const detailed = json(await (await completions({ detail: true, messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'Q' }] })).text());
    expect((detailed.choices as { message: { content: string } }[])[0]?.message.content).toMatch(/^\[system prompt received\] /);
    expect(detailed.responseData).toMatchObject([{ moduleName: 'AI 对话', tokens: 5 }]);
  });

  it('remembers chats for init, histories, records and feedback', async () => {
    await stream({ chatId: 'chat-store', responseChatItemId: 'ai-item-1', variables: { name: 'Ann' }, messages: [{ role: 'user', content: 'Remember me' }] });

    const init = json(await (await fetch(`${mock.url}/api/core/chat/init?appId=app-1&chatId=chat-store`, { headers: BEARER })).text());
    expect(init).toMatchObject({ code: 200, data: { chatId: 'chat-store', variables: { name: 'Ann' }, app: { chatConfig: { welcomeText: expect.any(String) as string } } } });

    const histories = json(await (await postJson(`${mock.url}/api/core/chat/getHistories`, { appId: 'app-1', offset: 0, pageSize: 50 }, BEARER)).text());
    const list = (histories.data as { list: { chatId: string; title: string }[] }).list;
    expect(list[0]).toMatchObject({ chatId: 'chat-store', title: 'Remember me' });

    const feedback = await postJson(
      `${mock.url}/api/core/chat/feedback/updateUserFeedback`,
      { appId: 'app-1', chatId: 'chat-store', dataId: 'ai-item-1', userGoodFeedback: 'yes' },
      BEARER,
    );
    expect(json(await feedback.text())).toMatchObject({ code: 200 });

    const records = json(await (await postJson(`${mock.url}/api/core/chat/getPaginationRecords`, { appId: 'app-1', chatId: 'chat-store', offset: 0, pageSize: 10 }, BEARER)).text());
    expect(records.data).toMatchObject({
      total: 2,
      list: [
        { obj: 'Human', value: [{ type: 'text', text: { content: 'Remember me' } }] },
        { obj: 'AI', dataId: 'ai-item-1', userGoodFeedback: 'yes' },
      ],
    });
  });

  it('uses the FastGPT error format with the HTTP status for bad-key and status faults', async () => {
    const bad = await completions({}, { authorization: 'Bearer bad-key' });
    expect(bad.status).toBe(401);
    expect(json(await bad.text())).toMatchObject({ code: 401, statusText: 'unAuthApiKey', message: expect.any(String) as string });
    const fault = await completions({ stream: true }, { ...BEARER, 'x-mock-fault': 'status=503,code=aiproxyError,retryAfter=1' });
    expect(fault.status).toBe(503);
    expect(fault.headers.get('retry-after')).toBe('1');
    expect(json(await fault.text())).toMatchObject({ code: 503, statusText: 'aiproxyError' });
  });

  it('leaves out the final [DONE] on noDone', async () => {
    const events = await stream({ detail: true, messages: [{ role: 'user', content: 'x [[mock noDone=1]]' }] });
    expect(events.at(-1)?.event).toBe('flowResponses');
    expect(events.some((e) => e.data === '[DONE]')).toBe(false);
  });
});
