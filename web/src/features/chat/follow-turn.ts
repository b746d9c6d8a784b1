import { ApiError } from '../../api/client';
import { parseEventId, SseParser } from '../../api/sse';
import { toTurnEvent, type TurnEvent } from './turn-events';

export interface FollowOptions {
  /** Opens the turn (POST); absent when resuming a turn whose id is known. */
  open?: (signal: AbortSignal) => Promise<Response>;
  /** Reconnects: events after `lastEventId` (`<messageId>:<n>`), then live ones. */
  resume: (messageId: string, lastEventId: string, signal: AbortSignal) => Promise<Response>;
  messageId?: string;
  /** Events up to this number were seen already (0: replay the whole turn). */
  afterN?: number;
  signal: AbortSignal;
  onEvent: (event: TurnEvent) => void;
  /** Called before each reconnection attempt (1, 2, …) and with 0 once events flow again. */
  onReconnecting?: (attempt: number) => void;
  wait?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Errors after which reconnecting cannot help: the turn is not there or not ours. */
function isFinal(err: unknown): boolean {
  return err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429;
}

/**
 * Follows one turn to its `end` event across dropped connections. Every
 * event has an id `<messageId>:<n>`; an event whose n was seen already is
 * skipped, and a reconnection asks for the events after the last n seen, so
 * no text is lost or shown twice. Returns 'ended' or 'aborted'; throws when
 * the turn could not be started or resumed for good.
 */
export async function followTurn(options: FollowOptions): Promise<'ended' | 'aborted'> {
  const { signal, onEvent } = options;
  const wait = options.wait ?? sleep;
  let messageId = options.messageId;
  let lastN = options.afterN ?? 0;
  let opened = options.open === undefined;
  let attempt = 0;

  for (;;) {
    if (signal.aborted) return 'aborted';
    try {
      const res = opened && messageId !== undefined ? await options.resume(messageId, `${messageId}:${lastN}`, signal) : await options.open!(signal);
      opened = true;
      if (!res.body) throw new ApiError(0, 'NETWORK', 'The answer stream has no body');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const frame of parser.feed(value)) {
          const id = parseEventId(frame.id);
          if (id) {
            if (messageId !== undefined && id.messageId !== messageId) continue;
            if (id.n <= lastN) continue;
            messageId ??= id.messageId;
            lastN = id.n;
          }
          if (attempt > 0) {
            attempt = 0;
            options.onReconnecting?.(0);
          }
          const event = toTurnEvent(frame);
          onEvent(event);
          if (event.type === 'end') {
            await reader.cancel().catch(() => undefined);
            return 'ended';
          }
        }
      }
    } catch (err) {
      if (signal.aborted) return 'aborted';
      // Nothing to resume yet (the turn never started) or nothing left to resume: give up.
      if (messageId === undefined || isFinal(err)) throw err;
    }
    if (signal.aborted) return 'aborted';
    if (messageId === undefined) throw new ApiError(0, 'NETWORK', 'The connection closed before the answer started');
    attempt += 1;
    options.onReconnecting?.(attempt);
    await wait(BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)] ?? 4000, signal);
  }
}
