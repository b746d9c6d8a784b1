import net from 'node:net';

/** An address block: `10.0.0.0/8`, `::1/128`, or a bare address (a block of one). */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

export function parseCidr(text: string): Cidr {
  const [address = '', prefixText] = text.trim().split('/');
  const version = net.isIP(address);
  if (version === 0) throw new Error(`"${text}" is not an IP address or CIDR block`);
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  if (prefixText === undefined) return { address, prefix: max, family };
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) throw new Error(`"${text}" has a bad prefix length`);
  return { address, prefix: Number(prefixText), family };
}

/** An IP address as blocks are checked against it. */
export interface PlainAddress {
  address: string;
  family: 'ipv4' | 'ipv6';
}

/** An address as 16-bit words: 2 for IPv4, 8 for IPv6. */
interface Words {
  family: 'ipv4' | 'ipv6';
  words: number[];
}

function ipv4Words(text: string): number[] {
  const b = text.split('.').map(Number);
  return [((b[0] ?? 0) << 8) | (b[1] ?? 0), ((b[2] ?? 0) << 8) | (b[3] ?? 0)];
}

/** The eight 16-bit words of a valid IPv6 address (zone id dropped, a dotted IPv4 tail folded in). */
function ipv6Words(text: string): number[] {
  const zone = text.indexOf('%');
  let head = zone === -1 ? text : text.slice(0, zone);
  let tail: number[] = [];
  const lastColon = head.lastIndexOf(':');
  const last = head.slice(lastColon + 1);
  if (last.includes('.')) {
    tail = ipv4Words(last);
    head = head.slice(0, lastColon);
    if (head.endsWith(':')) head += ':';
  }
  const [left = '', right] = head.split('::');
  const hex = (part: string): number[] => (part === '' ? [] : part.split(':').map((w) => parseInt(w, 16)));
  const leftWords = hex(left);
  const rightWords = right === undefined ? [] : hex(right);
  const zeros = 8 - leftWords.length - rightWords.length - tail.length;
  return [...leftWords, ...new Array<number>(Math.max(0, zeros)).fill(0), ...rightWords, ...tail];
}

/**
 * The IPv4 words an IPv6 address carries, for the forms that reach it:
 * IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`),
 * IPv4-compatible (`::a.b.c.d`, not `::` or `::1`) and NAT64 (`64:ff9b::a.b.c.d`).
 */
function embeddedIpv4(w: readonly number[]): number[] | undefined {
  const zero = (from: number, to: number) => {
    for (let i = from; i < to; i++) if (w[i] !== 0) return false;
    return true;
  };
  const mapped = zero(0, 5) && w[5] === 0xffff;
  const translated = zero(0, 4) && w[4] === 0xffff && w[5] === 0;
  const compatible = zero(0, 6) && w[6] !== 0;
  const nat64 = w[0] === 0x64 && w[1] === 0xff9b && zero(2, 6);
  return mapped || translated || compatible || nat64 ? [w[6] ?? 0, w[7] ?? 0] : undefined;
}

/** The address as words in the family it is checked in (IPv4 inside IPv6 counts as IPv4); undefined when no IP address. */
function wordsOf(address: string): Words | undefined {
  const version = net.isIP(address);
  if (version === 4) return { family: 'ipv4', words: ipv4Words(address) };
  if (version !== 6) return undefined;
  const words = ipv6Words(address);
  const v4 = embeddedIpv4(words);
  return v4 ? { family: 'ipv4', words: v4 } : { family: 'ipv6', words };
}

/**
 * The address in the family it is checked in: an IPv6 address that embeds
 * an IPv4 one (mapped, translated, compatible, NAT64) counts as that IPv4
 * address. Undefined when `address` is no IP address.
 */
export function plainAddress(address: string): PlainAddress | undefined {
  const parsed = wordsOf(address);
  if (!parsed) return undefined;
  if (parsed.family === 'ipv4') {
    const [hi = 0, lo = 0] = parsed.words;
    return { family: 'ipv4', address: `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}` };
  }
  const zone = address.indexOf('%');
  return { family: 'ipv6', address: zone === -1 ? address : address.slice(0, zone) };
}

/** Whether the first `prefix` bits of two same-family word lists agree. */
function samePrefix(a: readonly number[], b: readonly number[], prefix: number): boolean {
  let bits = prefix;
  for (let i = 0; bits > 0; i++, bits -= 16) {
    const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    if (((a[i] ?? 0) & mask) !== ((b[i] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * Matches addresses against a list of blocks, each address in its plain
 * form: an IPv6 address that embeds an IPv4 one counts as that IPv4 address.
 * Plain arithmetic on 16-bit words: a few hundred nanoseconds a check.
 */
export function addressMatcher(blocks: readonly string[]): (address: string | undefined) => boolean {
  const list = blocks.map((block) => {
    const c = parseCidr(block);
    const words = c.family === 'ipv4' ? ipv4Words(c.address) : ipv6Words(c.address);
    return { family: c.family, words, prefix: c.prefix };
  });
  return (address) => {
    if (!address) return false;
    const parsed = wordsOf(address);
    if (!parsed) return false;
    for (const block of list) if (block.family === parsed.family && samePrefix(parsed.words, block.words, block.prefix)) return true;
    return false;
  };
}
