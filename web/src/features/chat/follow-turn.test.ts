import { describe, expect, it } from 'vitest';
import { ApiError } from '../../api/client';
import { followTurn } from './follow-turn';
import type { TurnEvent } from './turn-events';

const ID = '11111111-2222-4333-8444-555555555555';

/** The frames of one turn as the server sends them: start, chatId, text chunks, end. */
function frames(words: string[]): string[] {
  const out = [
    `id: ${ID}:1\nevent: start\ndata: {"messageId":"${ID}","sessionId":"s1"}\n\n`,
    `id: ${ID}:2\nevent: chatId\ndata: {"chatId":"s1"}\n\n`,
  ];
  words.forEach((w, i) => out.push(`id: ${ID}:${i + 3}\nevent: chunk\ndata: ${JSON.stringify({ content: w })}\n\n`));
  out.push(`id: ${ID}:${words.length + 3}\nevent: end\ndata: {"status":"complete","messageId":"${ID}","sessionId":"s1"}\n\n`);
  return out;
}

/** A response whose body yields `parts` and then either ends or fails like a dropped connection. */
function response(parts: string[], drop: boolean): Response {
  const encoder = new TextEncoder();
  let i = 0;
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        const part = parts[i++];
        if (part !== undefined) controller.enqueue(encoder.encode(part));
        else if (drop) controller.error(new TypeError('network error'));
        else controller.close();
      },
    }),
  );
}

const words = ['Alpha ', 'beta ', 'gamma ', 'delta ', 'epsilon.'];
const text = (events: TurnEvent[]) => events.flatMap((e) => (e.type === 'chunk' ? [e.content] : [])).join('');
const noWait = () => Promise.resolve();

describe('followTurn', () => {
  it('reads a turn to its end', async () => {
    const events: TurnEvent[] = [];
    const result = await followTurn({
      open: () => Promise.resolve(response(frames(words), false)),
      resume: () => Promise.reject(new Error('no resume expected')),
      signal: new AbortController().signal,
      onEvent: (e) => events.push(e),
    });
    expect(result).toBe('ended');
    expect(text(events)).toBe(words.join(''));
  });

  it('reconnects after a drop with Last-Event-ID and loses or repeats nothing, even when the server replays too much', async () => {
    const all = frames(words);
    const resumes: string[] = [];
    const events: TurnEvent[] = [];
    const reconnecting: number[] = [];
    const result = await followTurn({
      // The first connection drops in the middle of the 4th frame.
      open: () => Promise.resolve(response([...all.slice(0, 3), all[3]!.slice(0, 10)], true)),
      resume: (messageId, lastEventId) => {
        resumes.push(lastEventId);
        expect(messageId).toBe(ID);
        // First resume fails outright; the second replays from the start (older events must be skipped).
        if (resumes.length === 1) return Promise.reject(new ApiError(0, 'NETWORK', 'offline'));
        return Promise.resolve(response(all, false));
      },
      signal: new AbortController().signal,
      onEvent: (e) => events.push(e),
      onReconnecting: (n) => reconnecting.push(n),
      wait: noWait,
    });
    expect(result).toBe('ended');
    expect(resumes).toEqual([`${ID}:3`, `${ID}:3`]);
    expect(text(events)).toBe(words.join(''));
    expect(events.filter((e) => e.type === 'start')).toHaveLength(1);
    expect(reconnecting).toEqual([1, 2, 0]);
  });

  it('resumes a turn known by id (after a reload) from the first event', async () => {
    const events: TurnEvent[] = [];
    const asked: string[] = [];
    await followTurn({
      messageId: ID,
      afterN: 0,
      resume: (_id, last) => {
        asked.push(last);
        return Promise.resolve(response(frames(words), false));
      },
      signal: new AbortController().signal,
      onEvent: (e) => events.push(e),
    });
    expect(asked).toEqual([`${ID}:0`]);
    expect(text(events)).toBe(words.join(''));
  });

  it('gives up on a final error instead of retrying forever', async () => {
    await expect(
      followTurn({
        messageId: ID,
        resume: () => Promise.reject(new ApiError(404, 'MESSAGE_NOT_FOUND', 'No such answer')),
        signal: new AbortController().signal,
        onEvent: () => undefined,
        wait: noWait,
      }),
    ).rejects.toMatchObject({ code: 'MESSAGE_NOT_FOUND' });
  });

  it('reports a turn that could not start', async () => {
    await expect(
      followTurn({
        open: () => Promise.reject(new ApiError(429, 'RATE_LIMITED', 'slow down')),
        resume: () => Promise.reject(new Error('no resume expected')),
        signal: new AbortController().signal,
        onEvent: () => undefined,
      }),
    ).rejects.toMatchObject({ code: 'RATE_LIMITED' });
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    const events: TurnEvent[] = [];
    const result = await followTurn({
      open: () => Promise.resolve(response(frames(words).slice(0, 3), true)),
      resume: () => {
        controller.abort();
        return Promise.reject(new DOMException('aborted', 'AbortError'));
      },
      signal: controller.signal,
      onEvent: (e) => events.push(e),
      wait: noWait,
    });
    expect(result).toBe('aborted');
    expect(text(events)).toBe('Alpha ');
  });
});
