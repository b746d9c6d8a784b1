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

/** The eight 16-bit words of a valid IPv6 address (zone id dropped, a dotted IPv4 tail folded in). */
function ipv6Words(text: string): number[] {
  const zone = text.indexOf('%');
  let head = zone === -1 ? text : text.slice(0, zone);
  const tail: number[] = [];
  const lastColon = head.lastIndexOf(':');
  const last = head.slice(lastColon + 1);
  if (last.includes('.')) {
    const b = last.split('.').map(Number);
    tail.push(((b[0] ?? 0) << 8) | (b[1] ?? 0), ((b[2] ?? 0) << 8) | (b[3] ?? 0));
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
 * The IPv4 address an IPv6 address carries, for the forms that reach it:
 * IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`),
 * IPv4-compatible (`::a.b.c.d`, not `::` or `::1`) and NAT64 (`64:ff9b::a.b.c.d`).
 */
function embeddedIpv4(words: readonly number[]): string | undefined {
  const zero = (from: number, to: number) => words.slice(from, to).every((w) => w === 0);
  const w6 = words[6] ?? 0;
  const w7 = words[7] ?? 0;
  const mapped = zero(0, 5) && words[5] === 0xffff;
  const translated = zero(0, 4) && words[4] === 0xffff && words[5] === 0;
  const compatible = zero(0, 6) && w6 !== 0;
  const nat64 = words[0] === 0x64 && words[1] === 0xff9b && zero(2, 6);
  if (!mapped && !translated && !compatible && !nat64) return undefined;
  return `${w6 >> 8}.${w6 & 0xff}.${w7 >> 8}.${w7 & 0xff}`;
}

/**
 * The address in the family it is checked in: an IPv6 address that embeds
 * an IPv4 one (mapped, translated, compatible, NAT64) counts as that IPv4
 * address. Undefined when `address` is no IP address.
 */
export function plainAddress(address: string): PlainAddress | undefined {
  const version = net.isIP(address);
  if (version === 4) return { address, family: 'ipv4' };
  if (version !== 6) return undefined;
  const v4 = embeddedIpv4(ipv6Words(address));
  if (v4 !== undefined) return { address: v4, family: 'ipv4' };
  const zone = address.indexOf('%');
  return { address: zone === -1 ? address : address.slice(0, zone), family: 'ipv6' };
}

/**
 * Matches addresses against a list of blocks, each address in its plain
 * form: an IPv6 address that embeds an IPv4 one counts as that IPv4 address.
 */
export function addressMatcher(blocks: readonly string[]): (address: string | undefined) => boolean {
  const list = new net.BlockList();
  for (const block of blocks) {
    const c = parseCidr(block);
    list.addSubnet(c.address, c.prefix, c.family);
  }
  return (address) => {
    if (!address) return false;
    const plain = plainAddress(address);
    return plain !== undefined && list.check(plain.address, plain.family);
  };
}
