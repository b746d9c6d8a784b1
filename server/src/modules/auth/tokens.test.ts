import { afterEach, describe, expect, it, vi } from 'vitest';
import { AppError } from '../../errors.js';
import { createAccessTokens, newRefreshToken, sha256 } from './tokens.js';

const SECRET = 'unit-test-secret-that-is-long-enough-0123456789';
const claims = { sub: '3f2b8a44-6a55-4d2e-9a0e-8f1c2b3d4e5f', username: 'alice', role: 'user' as const };

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    return err instanceof AppError ? err.code : `unexpected ${String(err)}`;
  }
}

describe('access tokens', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('round-trips the claims and reports the lifetime', async () => {
    const tokens = createAccessTokens({ secret: SECRET, ttlSeconds: 900 });
    const signed = await tokens.sign(claims);
    expect(signed.expiresIn).toBe(900);
    expect(await tokens.verify(signed.token)).toEqual(claims);
    const header = JSON.parse(Buffer.from(signed.token.split('.')[0] ?? '', 'base64url').toString()) as { alg: string };
    const payload = JSON.parse(Buffer.from(signed.token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
    expect(header.alg).toBe('HS256');
    expect(payload).toMatchObject({ iss: 'llmchat', typ: 'access', sub: claims.sub, username: 'alice', role: 'user' });
    expect(Number(payload.exp) - Number(payload.iat)).toBe(900);
  });

  it('tells an expired token from an invalid one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    const tokens = createAccessTokens({ secret: SECRET, ttlSeconds: 60 });
    const { token } = await tokens.sign(claims);
    vi.setSystemTime(new Date('2030-01-01T00:01:01Z'));
    expect(await codeOf(tokens.verify(token))).toBe('TOKEN_EXPIRED');
    // An expired token with a broken signature is invalid, not expired.
    expect(await codeOf(tokens.verify(`${token.slice(0, -2)}xx`))).toBe('TOKEN_INVALID');
  });

  it('rejects a token signed with another secret, a tampered payload and garbage', async () => {
    const tokens = createAccessTokens({ secret: SECRET, ttlSeconds: 60 });
    const other = createAccessTokens({ secret: `${SECRET}-other`, ttlSeconds: 60 });
    expect(await codeOf(tokens.verify((await other.sign(claims)).token))).toBe('TOKEN_INVALID');
    const [h, p, s] = (await tokens.sign(claims)).token.split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), role: 'admin' })).toString('base64url');
    expect(await codeOf(tokens.verify(`${h}.${forged}.${s}`))).toBe('TOKEN_INVALID');
    expect(await codeOf(tokens.verify('garbage'))).toBe('TOKEN_INVALID');
    expect(await codeOf(tokens.verify(''))).toBe('TOKEN_INVALID');
  });
});

describe('refresh tokens', () => {
  it('are 32 random bytes in base64url, stored as a SHA-256 hex digest', () => {
    const token = newRefreshToken();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    expect(newRefreshToken()).not.toBe(token);
    expect(sha256(token)).toMatch(/^[0-9a-f]{64}$/);
    expect(sha256('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
