import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { UpstreamCall } from './http.js';
import { UpstreamError } from './upstream-error.js';

export type SseMessage = EventSourceMessage;

/** Bigger than any sane single event (FastGPT flowResponses can be large); protects memory. */
const MAX_EVENT_CHARS = 8 * 1024 * 1024;

/**
 * Decodes an upstream SSE body into messages, one batch per network chunk.
 *
 * Hot path: one async step per chunk rather than per event, and the batch
 * array is reused — a consumer must finish with a batch before asking for
 * the next one (a `for await` loop that handles each batch inline does).
 * Every chunk re-arms the call's idle deadline; the first-token deadline is
 * ended by the adapter (`call.contentStarted()`), since only it knows which
 * events carry content.
 *
 * Errors are not mapped here: the adapter passes what it catches to
 * `call.fail()`.
 */
export async function* readSse(call: UpstreamCall): AsyncGenerator<readonly SseMessage[], void, undefined> {
  const body = call.body;
  if (!body) return;
  const batch: SseMessage[] = [];
  let overflow = false;
  const parser = createParser({
    onEvent: (message) => {
      batch.push(message);
    },
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') overflow = true;
    },
    maxBufferSize: MAX_EVENT_CHARS,
  });
  // undici bodies yield Buffers (setEncoding has no effect); a streaming decoder keeps split code points whole.
  const decoder = new TextDecoder();
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    call.onChunk();
    parser.feed(decoder.decode(chunk, { stream: true }));
    if (overflow) {
      throw new UpstreamError('protocol', `upstream sent an event larger than ${MAX_EVENT_CHARS} characters`, {
        url: call.request.url,
      });
    }
    if (batch.length > 0) {
      yield batch;
      batch.length = 0;
    }
  }
  // A last event the server did not terminate with a blank line.
  parser.feed(`${decoder.decode()}\n\n`);
  if (batch.length > 0) yield batch;
}
