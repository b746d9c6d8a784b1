import dns from 'node:dns';
import net from 'node:net';
import { buildConnector } from 'undici';
import { addressMatcher, plainAddress } from '../../http/cidr.js';

/**
 * Where upstream calls may go. Agent endpoints are set by admins, and an
 * endpoint on loopback, a private network or the cloud metadata service
 * turns validate and chat into a way to read internal services (SSRF). The
 * policy is enforced when a connection is opened, on the address actually
 * dialled: names go through our own DNS lookup, so a name that resolves (or
 * re-resolves, DNS rebinding) to a refused address is refused too, and no
 * redirect is ever followed (undici's dispatch does not follow them).
 */

/** Blocks refused unless UPSTREAM_ALLOWED_CIDRS lists them; IPv6 forms that embed an IPv4 address count as that address (cidr.ts). */
export const FORBIDDEN_UPSTREAM_BLOCKS: readonly string[] = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '::/128',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
];

/** The error code of a refused address, in the API and in the failed-attempt log. */
export const ADDRESS_FORBIDDEN_CODE = 'UPSTREAM_ADDRESS_FORBIDDEN';

/** A connection to an upstream address the policy refuses. Never sent: it fails before any byte leaves. */
export class UpstreamAddressForbidden extends Error {
  readonly code = ADDRESS_FORBIDDEN_CODE;
  constructor(
    readonly host: string,
    readonly address: string,
  ) {
    super(
      host === address
        ? `upstream address ${address} is not allowed (loopback, private and link-local addresses are refused unless UPSTREAM_ALLOWED_CIDRS lists them)`
        : `upstream host ${host} resolves to ${address}, which is not allowed (loopback, private and link-local addresses are refused unless UPSTREAM_ALLOWED_CIDRS lists them)`,
    );
    this.name = 'UpstreamAddressForbidden';
  }
}

/** dns.lookup with `all: true`, the form the policy resolves names with (tests hand in their own). */
export type ResolveAll = (hostname: string, options: dns.LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void) => void;

export interface OutboundPolicyOptions {
  /** UPSTREAM_ALLOWED_CIDRS: blocks allowed besides public addresses. */
  allowedCidrs?: readonly string[] | undefined;
  /**
   * Origins allowed whatever their address, on exactly their address and
   * port: the embedded demo's simulated upstream on loopback. Hosts must be
   * IP literals.
   */
  trustedOrigins?: readonly string[] | undefined;
  /** Name resolution; dns.lookup by default. */
  resolve?: ResolveAll | undefined;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

function portOf(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

function bare(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

export class OutboundPolicy {
  private readonly forbidden = addressMatcher(FORBIDDEN_UPSTREAM_BLOCKS);
  private readonly allowed: (address: string | undefined) => boolean;
  /** `address|port` of each trusted origin. */
  private readonly trusted = new Set<string>();
  private readonly resolve: ResolveAll;

  constructor(options: OutboundPolicyOptions = {}) {
    this.allowed = addressMatcher(options.allowedCidrs ?? []);
    this.resolve = options.resolve ?? ((hostname, opts, callback) => dns.lookup(hostname, opts, callback));
    for (const origin of options.trustedOrigins ?? []) this.trust(origin);
  }

  /** Allows exactly `origin`'s address and port (the simulated upstream, started on loopback). */
  trust(origin: string): void {
    const url = new URL(origin);
    const plain = plainAddress(bare(url.hostname));
    if (!plain) throw new Error(`a trusted upstream origin needs an IP address for its host, got ${origin}`);
    this.trusted.add(`${plain.address}|${portOf(url)}`);
  }

  /** Whether a connection to `address` (an IP address) on `port` may be opened. */
  allows(address: string, port: number): boolean {
    const plain = plainAddress(address);
    if (!plain) return false;
    if (this.trusted.has(`${plain.address}|${port}`)) return true;
    return this.allowed(address) || !this.forbidden(address);
  }

  /**
   * The refusal for an endpoint URL whose host is an IP address the policy
   * refuses, so a create or update can say so at once. Undefined for an
   * allowed address and for any name: names are checked when connecting,
   * since what they resolve to may change.
   */
  literalRefusal(url: string): UpstreamAddressForbidden | undefined {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return undefined;
    }
    const host = bare(parsed.hostname);
    if (net.isIP(host) === 0) return undefined;
    return this.allows(host, portOf(parsed)) ? undefined : new UpstreamAddressForbidden(host, host);
  }

  /**
   * undici's `connect` for the pool of one origin. Runs only when a
   * connection is opened, never per request: an IP host is checked as is; a
   * name is resolved by our lookup, which keeps only allowed addresses; and
   * the address the socket reached is checked once more.
   */
  connector(origin: string, options: buildConnector.BuildOptions): buildConnector.connector {
    const port = portOf(new URL(origin));
    const lookup = (hostname: string, opts: dns.LookupOptions, callback: LookupCallback): void => {
      this.resolve(hostname, { ...opts, all: true }, (err, addresses) => {
        if (err) {
          callback(err, []);
          return;
        }
        const usable = addresses.filter((a) => this.allows(a.address, port));
        const first = usable[0];
        if (first === undefined) {
          callback(new UpstreamAddressForbidden(hostname, addresses[0]?.address ?? 'no address'), []);
          return;
        }
        if (opts.all === true) callback(null, usable);
        else callback(null, first.address, first.family);
      });
    };
    const connect = buildConnector({ ...options, lookup });
    return (opts, callback) => {
      const host = bare(opts.hostname);
      if (net.isIP(host) !== 0 && !this.allows(host, port)) {
        callback(new UpstreamAddressForbidden(host, host), null);
        return;
      }
      connect(opts, (...result) => {
        const [err, socket] = result;
        const reached = err === null ? socket.remoteAddress : undefined;
        if (reached !== undefined && !this.allows(reached, port)) {
          socket?.destroy();
          callback(new UpstreamAddressForbidden(host, reached), null);
          return;
        }
        callback(...result);
      });
    };
  }
}

/** The policy's refusal `err` is or wraps, if it is one. */
export function addressRefusal(err: unknown): UpstreamAddressForbidden | undefined {
  let cur: unknown = err;
  for (let depth = 0; depth < 4 && cur instanceof Error; depth++) {
    if (cur instanceof UpstreamAddressForbidden) return cur;
    cur = cur.cause;
  }
  return undefined;
}
