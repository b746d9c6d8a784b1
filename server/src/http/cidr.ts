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

/** Matches client addresses against a list of blocks; IPv4-mapped IPv6 addresses count as IPv4. */
export function addressMatcher(blocks: readonly string[]): (address: string | undefined) => boolean {
  const list = new net.BlockList();
  for (const block of blocks) {
    const c = parseCidr(block);
    list.addSubnet(c.address, c.prefix, c.family);
  }
  return (address) => {
    if (!address) return false;
    const plain = address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
    const version = net.isIP(plain);
    if (version === 0) return false;
    return list.check(plain, version === 4 ? 'ipv4' : 'ipv6');
  };
}
