import { describe, expect, it } from 'vitest';
import { addressMatcher, parseCidr, plainAddress } from './cidr.js';

describe('address blocks', () => {
  it('reads IPv6 forms that carry an IPv4 address as that address', () => {
    for (const form of ['::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:7F00:0001', '::ffff:0:127.0.0.1', '::127.0.0.1', '64:ff9b::7f00:1', '0:0:0:0:0:ffff:127.0.0.1']) {
      expect(plainAddress(form), form).toEqual({ family: 'ipv4', address: '127.0.0.1' });
    }
    expect(plainAddress('::1')).toEqual({ family: 'ipv6', address: '::1' });
    expect(plainAddress('::')).toEqual({ family: 'ipv6', address: '::' });
    expect(plainAddress('fe80::1%eth0')).toEqual({ family: 'ipv6', address: 'fe80::1' });
    expect(plainAddress('localhost')).toBeUndefined();
  });

  it('matches prefixes of any length, in both families', () => {
    const match = addressMatcher(['10.0.0.0/8', '172.16.0.0/12', '100.64.0.0/10', '192.0.2.7', 'fc00::/7', 'fe80::/10', '::1/128']);
    for (const inside of ['10.255.0.1', '172.31.0.1', '100.127.255.255', '192.0.2.7', 'fdff:1::1', 'febf::1', '::1', '::ffff:10.1.1.1']) expect(match(inside), inside).toBe(true);
    for (const outside of ['11.0.0.1', '172.32.0.1', '100.128.0.1', '192.0.2.8', 'fe00::1', 'fec0::1', '::2', '2001:db8::1', 'not-an-ip', undefined]) expect(match(outside), String(outside)).toBe(false);
    expect(addressMatcher(['0.0.0.0/0'])('203.0.113.1')).toBe(true);
    expect(addressMatcher([])('127.0.0.1')).toBe(false);
  });

  it('refuses what is not a block', () => {
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/bad prefix/);
    expect(() => parseCidr('example.com/8')).toThrow(/not an IP address/);
  });
});
