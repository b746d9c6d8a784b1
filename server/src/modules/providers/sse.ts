import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { UpstreamCall } from './http.js';
import { UpstreamError } from './upstream-error.js';

export type SseMessage = EventSourceMessage;

/** Bigger than any sane single event (FastGPT flowResponses can be large); protects memory. */
const MAX_EVENT_CHARS = 8 * 1024 * 1024;

/**
 * Decodes an upstream SSE body into messages, handing `onBatch` one batch
 * per network chunk; resolves once the body ended.
 *
 * Hot path: one async step per network chunk, and none per message or per
 * event the adapter makes of it: `onBatch` runs synchronously, and the batch
 * array is reused, so it must be done with a batch when it returns. Read
 * through async generators (this reader, the adapter, the turn), a stream
 * held their suspended frames for as long as the answer lasted: about
 * 1 KiB more per stream in flight (heap snapshots at 2000 long answers,
 * docs/benchmarks.md, seventeenth session).
 * Every chunk re-arms the call's idle deadline; the first-token deadline is
 * ended by the adapter (`call.contentStarted()`), since only it knows which
 * events carry content.
 *
 * Errors are not mapped here: the adapter passes what it catches to
 * `call.fail()`. A throw from `onBatch` ends the read (and, through the
 * body's iterator, the request) with that error.
 */
export async function readSse(call: UpstreamCall, onBatch: (batch: readonly SseMessage[]) => void): Promise<void> {
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
      onBatch(batch);
      batch.length = 0;
    }
  }
  // A last event the server did not terminate with a blank line.
  parser.feed(`${decoder.decode()}\n\n`);
  if (batch.length > 0) onBatch(batch);
}
