import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';

/**
 * Why a browser request came from another site, or undefined when it did
 * not (or cannot be told: clients that are not browsers send neither
 * header). `Sec-Fetch-Site` is trusted when present (only `same-origin`
 * and `none`, a typed address, pass; a sibling subdomain is `same-site` and
 * refused); otherwise an `Origin` must name this host.
 */
export function crossSiteReason(headers: { origin?: string | undefined; secFetchSite?: string | undefined }, host: string): string | undefined {
  const site = headers.secFetchSite?.trim().toLowerCase();
  if (site) return site === 'same-origin' || site === 'none' ? undefined : `Sec-Fetch-Site is ${site}`;
  const origin = headers.origin?.trim();
  if (!origin) return undefined;
  return sameHost(origin, host) ? undefined : `Origin ${origin.slice(0, 100)} is not this site`;
}

const DEFAULT_PORTS = new Set(['', '80', '443']);

/**
 * Whether an Origin names the host the request was sent to. The Host header
 * carries no scheme (TLS may end at a proxy), so a port the Origin leaves
 * implicit matches 80 or 443 on the Host, and the other way round.
 */
function sameHost(origin: string, host: string): boolean {
  let o: URL;
  let h: URL;
  try {
    o = new URL(origin);
    h = new URL(`http://${host}`);
  } catch {
    return false;
  }
  if (o.hostname.toLowerCase() !== h.hostname.toLowerCase()) return false;
  if (o.port === h.port) return true;
  return DEFAULT_PORTS.has(o.port) && DEFAULT_PORTS.has(h.port) && (o.port === '' || h.port === '');
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * An onRequest hook for the routes a cookie alone authenticates
 * (/api/auth/refresh and /logout): a page on another site must not make the
 * browser spend or end the user's session, whatever SameSite support it has.
 * Refused with 403 `CROSS_SITE_REQUEST` before anything changes.
 */
export async function requireSameOrigin(request: FastifyRequest): Promise<void> {
  const reason = crossSiteReason({ origin: header(request.headers.origin), secFetchSite: header(request.headers['sec-fetch-site']) }, request.host);
  if (reason !== undefined) throw new AppError('CROSS_SITE_REQUEST', `This request must come from this site's own pages (${reason})`);
}
