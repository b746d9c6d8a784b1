/** Helpers for the mock-upstream tests: a small SSE reader over real HTTP. Not part of the build. */

import type { MockUpstream, MockUpstreamOptions } from './index.js';
import { createMockUpstream } from './index.js';

export interface SseEvent {
  /** The `event:` name, undefined for plain `data:` frames. */
  event: string | undefined;
  data: string;
}

export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split('\n\n')) {
    if (block.trim() === '') continue;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    events.push({ event, data: data.join('\n') });
  }
  return events;
}

/** Reads events one by one as they arrive. */
export class SseReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buffer = '';
  private readonly queue: SseEvent[] = [];
  /** Everything received so far. */
  text = '';

  constructor(response: Response) {
    if (response.body === null) throw new Error('response has no body');
    this.reader = response.body.getReader();
  }

  /** The next event, or undefined when the stream ended cleanly. Rejects when the connection broke. */
  async next(): Promise<SseEvent | undefined> {
    for (;;) {
      const queued = this.queue.shift();
      if (queued !== undefined) return queued;
      const { done, value } = await this.reader.read();
      if (done) return undefined;
      const chunk = this.decoder.decode(value, { stream: true });
      this.text += chunk;
      this.buffer += chunk;
      const end = this.buffer.lastIndexOf('\n\n');
      if (end !== -1) {
        this.queue.push(...parseSse(this.buffer.slice(0, end)));
        this.buffer = this.buffer.slice(end + 2);
      }
    }
  }

  /** All remaining events until the end; rejects when the connection broke. */
  async rest(): Promise<SseEvent[]> {
    const events: SseEvent[] = [];
    for (let event = await this.next(); event !== undefined; event = await this.next()) events.push(event);
    return events;
  }

  async cancel(): Promise<void> {
    await this.reader.cancel();
  }
}

/** Reads the whole body; a broken connection gives the text so far and the error. */
export async function readFully(response: Response): Promise<{ text: string; error: unknown }> {
  const reader = new SseReader(response);
  try {
    await reader.rest();
    return { text: reader.text, error: undefined };
  } catch (error) {
    return { text: reader.text, error };
  }
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal,
  });
}

export function json<T = Record<string, unknown>>(text: string): T {
  return JSON.parse(text) as T;
}

/** Starts a quick mock: few chunks, short interval. */
export function startMock(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  return createMockUpstream({ defaultChunks: 4, defaultIntervalMs: 2, ...options });
}

/** Retries `check` until it stops throwing (server-side close events are asynchronous). */
export async function eventually(check: () => void, attempts = 100): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      check();
      return;
    } catch (error) {
      if (i >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

export const OPENAI_AUTH = { authorization: 'Bearer sk-test-secret' };
export const ANTHROPIC_AUTH = { 'x-api-key': 'sk-ant-test-secret', 'anthropic-version': '2023-06-01' };
