/**
 * One request/response pair with at most one pending timer. When the client
 * goes away the timer is cleared, so an aborted stream costs nothing more.
 */

import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants, type ServerHttp2Stream } from 'node:http2';

export interface ExchangeObserver {
  onClose(exchange: Exchange, aborted: boolean): void;
}

export class Exchange {
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  private cleanup: (() => void) | undefined;

  constructor(
    readonly res: ServerResponse,
    observer: ExchangeObserver,
  ) {
    res.once('close', () => {
      this.done = true;
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      const cleanup = this.cleanup;
      this.cleanup = undefined;
      cleanup?.();
      observer.onClose(this, !res.writableFinished);
    });
  }

  /** Runs `fn` once when the exchange closes, however it closes (at once if it already has). */
  setCleanup(fn: (() => void) | undefined): void {
    if (fn === undefined) return;
    if (this.done) fn();
    else this.cleanup = fn;
  }

  get closed(): boolean {
    return this.done || this.res.destroyed;
  }

  /** Runs `fn` after `ms`, replacing any pending timer. */
  schedule(ms: number, fn: () => void): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.closed) fn();
    }, ms);
  }

  /** Runs `fn` now when `ms` is 0, else after `ms`. */
  after(ms: number, fn: () => void): void {
    if (ms > 0) this.schedule(ms, fn);
    else if (!this.closed) fn();
  }

  cancelTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  send(status: number, body: string, headers: OutgoingHttpHeaders): void {
    if (this.closed || this.res.headersSent) return;
    this.res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
    this.res.end(body);
  }

  json(status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
    this.send(status, JSON.stringify(body), { 'content-type': 'application/json; charset=utf-8', ...headers });
  }

  /** Sends the status line and headers now, so the client sees them before the first chunk. */
  startStream(headers: OutgoingHttpHeaders, open: string): void {
    if (this.closed) return;
    this.res.writeHead(200, headers);
    if (open === '') this.res.flushHeaders();
    else this.res.write(open);
  }

  write(chunk: string): void {
    if (!this.closed && chunk !== '') this.res.write(chunk);
  }

  end(chunk = ''): void {
    if (this.closed) return;
    this.cancelTimer();
    this.res.end(chunk);
  }

  /**
   * Drops the connection without finishing the response. Over HTTP/2 the
   * stream is reset with INTERNAL_ERROR (other streams on the connection go
   * on), as a failing server or proxy resets it.
   */
  destroy(): void {
    this.cancelTimer();
    const stream = (this.res as unknown as { stream?: ServerHttp2Stream }).stream;
    if (stream !== undefined) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    else this.res.destroy();
  }
}
