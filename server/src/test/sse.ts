/** Parses an SSE body into events (tests only). */
export interface ParsedEvent {
  id: string | undefined;
  event: string;
  data: string;
  json: unknown;
}

export function parseSse(body: string): ParsedEvent[] {
  const events: ParsedEvent[] = [];
  for (const block of body.split(/\r?\n\r?\n/)) {
    if (!block.trim()) continue;
    let id: string | undefined;
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0 && id === undefined) continue;
    const text = data.join('\n');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    events.push({ id, event, data: text, json });
  }
  return events;
}

/** Reads a fetch() SSE body incrementally, calling `onEvent` per event; resolves at the end of the stream. */
export async function readSse(body: ReadableStream<Uint8Array>, onEvent: (event: ParsedEvent) => boolean | void): Promise<ParsedEvent[]> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = '';
  const all: ParsedEvent[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut = buffer.indexOf('\n\n');
    while (cut >= 0) {
      const block = buffer.slice(0, cut + 2);
      buffer = buffer.slice(cut + 2);
      for (const event of parseSse(block)) {
        all.push(event);
        if (onEvent(event) === false) {
          await reader.cancel();
          return all;
        }
      }
      cut = buffer.indexOf('\n\n');
    }
  }
  return all;
}

/** Polls `probe` until it returns a truthy value or the bound runs out (no timing assertion: only a bound). */
export async function eventually<T>(probe: () => Promise<T | undefined | null | false>, what: string, boundMs = 15_000): Promise<T> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
