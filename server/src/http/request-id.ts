import crypto from 'node:crypto';

/** The longest client-supplied X-Request-Id kept. */
export const REQUEST_ID_MAX_LENGTH = 64;
const WELL_FORMED = /^[A-Za-z0-9._:-]+$/;

/**
 * A request's id: the client's `X-Request-Id` when it is short and made of
 * [A-Za-z0-9._:-] only (so it can go into log lines and headers as it is),
 * else a new UUID.
 */
export function requestIdFrom(header: string | string[] | undefined): string {
  if (typeof header === 'string' && header.length <= REQUEST_ID_MAX_LENGTH && WELL_FORMED.test(header)) return header;
  return crypto.randomUUID();
}
