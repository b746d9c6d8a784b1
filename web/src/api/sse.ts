/** One server-sent event as the platform sends it: `id: <messageId>:<n>`, a name, a JSON payload. */
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * Incremental text/event-stream parser: feed it decoded text in any pieces
 * (a network read may end mid-line or mid-event) and it returns the events
 * that are complete. Comments (`: ping`) are dropped.
 */
export class SseParser {
  private buffer = '';
  private id: string | undefined;
  private event = '';
  private data: string[] = [];

  feed(text: string): SseEvent[] {
    this.buffer += text;
    const out: SseEvent[] = [];
    for (;;) {
      const nl = this.buffer.search(/\r\n|\r|\n/);
      if (nl < 0) break;
      const line = this.buffer.slice(0, nl);
      const width = this.buffer.startsWith('\r\n', nl) ? 2 : 1;
      // A lone \r at the end may be the first half of \r\n: wait for more text.
      if (width === 1 && this.buffer[nl] === '\r' && nl === this.buffer.length - 1) break;
      this.buffer = this.buffer.slice(nl + width);
      const event = this.line(line);
      if (event) out.push(event);
    }
    return out;
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') {
      if (this.data.length === 0 && this.event === '') return undefined;
      const event: SseEvent = { id: this.id, event: this.event || 'message', data: this.data.join('\n') };
      this.event = '';
      this.data = [];
      return event;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'id':
        this.id = value;
        break;
      case 'event':
        this.event = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      default:
        break;
    }
    return undefined;
  }
}

/** Parses `<messageId>:<n>`; undefined for any other id. */
export function parseEventId(id: string | undefined): { messageId: string; n: number } | undefined {
  if (!id) return undefined;
  const m = /^([0-9a-f-]{36}):(\d+)$/i.exec(id);
  if (!m?.[1] || !m[2]) return undefined;
  return { messageId: m[1].toLowerCase(), n: Number(m[2]) };
}
