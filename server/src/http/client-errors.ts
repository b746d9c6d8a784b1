import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorBody, ErrorCode } from '../errors.js';

/**
 * Requests Node's HTTP parser refuses before any route runs (bytes 0x80–0xff
 * in the request line, a malformed header, headers over the size limit, a
 * request that took too long), and bodies over the limit: both end the
 * connection, and both must still leave the client an answer it can read.
 */

/** How long a connection that is being closed keeps reading what the client still sends, at most. */
export const LINGER_MS = 2_000;
/** How much it reads and throws away at most before it closes anyway. */
export const LINGER_BYTES = 64 * 1024 * 1024;

const lingering = new WeakSet<Socket>();

/**
 * Closes a connection the way nginx's lingering close does: the answer
 * goes out, then the write side is shut (FIN) and what the client still
 * sends is read and dropped until it closes its side, for at most
 * LINGER_MS and LINGER_BYTES. Closing at once with unread bytes in the
 * receive buffer makes the kernel send a reset, which can destroy the answer
 * before the client has read it (a 413 sent while the client is still
 * uploading the body it refuses).
 *
 * Node's HTTP server ends a connection marked `Connection: close` with
 * `socket.destroySoon()` once the response is written; this replaces that
 * call on this one socket.
 */
export function lingerOnClose(socket: Socket): void {
  if (lingering.has(socket)) return;
  lingering.add(socket);
  socket.destroySoon = () => lingerThenClose(socket);
}

/** Shuts the write side now and destroys the socket once the client closes, or after LINGER_MS or LINGER_BYTES. */
function lingerThenClose(socket: Socket): void {
  let read = 0;
  const close = () => {
    clearTimeout(timer);
    socket.destroy();
  };
  const timer = setTimeout(close, LINGER_MS);
  timer.unref();
  socket.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read > LINGER_BYTES) close();
  });
  socket.once('end', close);
  socket.once('close', () => clearTimeout(timer));
  socket.end();
  socket.resume();
}

/** Our code for what the parser refused, by Node's error code. */
function refusal(code: string | undefined): { status: number; code: ErrorCode; message: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, code: 'HEADERS_TOO_LARGE', message: 'The request headers are larger than the server accepts' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: 'REQUEST_TIMEOUT', message: 'The request did not arrive in time' };
    case undefined:
    default:
      return { status: 400, code: 'MALFORMED_REQUEST', message: 'The request is not valid HTTP/1.1 (request line, header or framing)' };
  }
}

/**
 * The server's 'clientError' handler (Fastify's `clientErrorHandler`):
 * answers in the API's error envelope, with the response headers (no-store among them) and
 * `Connection: close` (so a keep-alive client does not send its next
 * request down a connection that is going away), then closes with a
 * lingering close. `headerLines` are the security headers, rendered once at start.
 */
export function clientErrorHandler(headerLines: string): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    // A socket already answered (the parser may fail again on what follows) closes on its own, soon.
    if (lingering.has(socket)) return;
    // A reset connection, or one that can take no answer, is only closed: the handler owns the socket.
    if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    lingering.add(socket);
    const { status, code, message } = refusal(err.code);
    const body = JSON.stringify({ error: { code, message, requestId: crypto.randomUUID() } } satisfies ErrorBody);
    const answer = () => {
      if (socket.destroyed || !socket.writable) return;
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${headerLines}` +
          `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      lingerThenClose(socket);
    };
    // Pipelined requests: the answer to the one before (still running) goes first, this refusal after it.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (inFlight && !inFlight.writableFinished) inFlight.once('finish', answer);
    else answer();
  };
}
