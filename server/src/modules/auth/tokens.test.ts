import { SignJWT } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AppError } from '../../errors.js';
import { createAccessTokens, keyIdOf, newRefreshToken, sha256, TOKEN_AUDIENCE, TOKEN_ISSUER } from './tokens.js';

const SECRET = 'unit-test-secret-that-is-long-enough-0123456789';
const NEXT = 'unit-test-rotated-secret-long-enough-9876543210';
const claims = { sub: '3f2b8a44-6a55-4d2e-9a0e-8f1c2b3d4e5f', username: 'alice', role: 'user' as const };

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    return err instanceof AppError ? err.code : `unexpected ${String(err)}`;
  }
}

function partsOf(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = token.split('.') as [string, string];
  return { header: JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>, payload: JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown> };
}

/** A token as someone holding `secret` could mint it, with any claims. */
async function forge(secret: string, overrides: { aud?: string; iatSeconds?: number; expSeconds?: number; kid?: string | null } = {}): Promise<string> {
  const now = Date.now() / 1000;
  const jwt = new SignJWT({ username: claims.username, role: claims.role, typ: 'access' })
    .setProtectedHeader(overrides.kid === null ? { alg: 'HS256' } : { alg: 'HS256', kid: overrides.kid ?? keyIdOf(secret) })
    .setSubject(claims.sub)
    .setIssuer(TOKEN_ISSUER)
    .setIssuedAt(overrides.iatSeconds ?? now)
    .setExpirationTime(overrides.expSeconds ?? Math.floor(now) + 600);
  if (overrides.aud !== '') jwt.setAudience(overrides.aud ?? TOKEN_AUDIENCE);
  return jwt.sign(new TextEncoder().encode(secret));
}

describe('access tokens', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('round-trips the claims, with aud, kid and a millisecond iat, and reports the lifetime', async () => {
    const tokens = createAccessTokens({ keys: { current: SECRET }, ttlSeconds: 900 });
    const before = Date.now();
    const signed = await tokens.sign(claims);
    expect(signed.expiresIn).toBe(900);
    const verified = await tokens.verify(signed.token);
    expect(verified).toMatchObject(claims);
    expect(verified.issuedAtMs).toBeGreaterThanOrEqual(before);
    const { header, payload } = partsOf(signed.token);
    expect(header).toMatchObject({ alg: 'HS256', kid: keyIdOf(SECRET) });
    expect(header.kid).not.toContain(SECRET.slice(0, 8));
    expect(payload).toMatchObject({ iss: 'llmchat', aud: 'llmchat-api', typ: 'access', sub: claims.sub, username: 'alice', role: 'user' });
    expect(Number(payload.exp) - Math.floor(Number(payload.iat))).toBe(900);
  });

  it('tells an expired token from an invalid one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    const tokens = createAccessTokens({ keys: { current: SECRET }, ttlSeconds: 60 });
    const { token } = await tokens.sign(claims);
    vi.setSystemTime(new Date('2030-01-01T00:01:01Z'));
    expect(await codeOf(tokens.verify(token))).toBe('TOKEN_EXPIRED');
    // An expired token with a broken signature is invalid, not expired.
    expect(await codeOf(tokens.verify(`${token.slice(0, -2)}xx`))).toBe('TOKEN_INVALID');
  });

  it('rejects a token signed with another secret, a tampered payload and garbage', async () => {
    const tokens = createAccessTokens({ keys: { current: SECRET }, ttlSeconds: 60 });
    const other = createAccessTokens({ keys: { current: `${SECRET}-other` }, ttlSeconds: 60 });
    expect(await codeOf(tokens.verify((await other.sign(claims)).token))).toBe('TOKEN_INVALID');
    // Even when it claims the right key id.
    expect(await codeOf(tokens.verify(await forge(`${SECRET}-other`, { kid: keyIdOf(SECRET) })))).toBe('TOKEN_INVALID');
    const [h, p, s] = (await tokens.sign(claims)).token.split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), role: 'admin' })).toString('base64url');
    expect(await codeOf(tokens.verify(`${h}.${forged}.${s}`))).toBe('TOKEN_INVALID');
    expect(await codeOf(tokens.verify('garbage'))).toBe('TOKEN_INVALID');
    expect(await codeOf(tokens.verify(''))).toBe('TOKEN_INVALID');
  });

  it('refuses a genuine signature with the wrong audience, no audience or no key id', async () => {
    const tokens = createAccessTokens({ keys: { current: SECRET }, ttlSeconds: 600 });
    expect(await codeOf(tokens.verify(await forge(SECRET)))).toBe('resolved');
    expect(await codeOf(tokens.verify(await forge(SECRET, { aud: 'some-other-service' })))).toBe('TOKEN_INVALID');
    expect(await codeOf(tokens.verify(await forge(SECRET, { aud: '' })))).toBe('TOKEN_INVALID');
    expect(await codeOf(tokens.verify(await forge(SECRET, { kid: null })))).toBe('TOKEN_INVALID');
  });

  it('refuses a token older than the maximum age whatever its exp says, also after it was cached', async () => {
    const tokens = createAccessTokens({ keys: { current: SECRET }, ttlSeconds: 60, maxAgeSeconds: 120 });
    const now = Date.now() / 1000;
    expect(await codeOf(tokens.verify(await forge(SECRET, { iatSeconds: now - 121, expSeconds: Math.floor(now) + 86_400 })))).toBe('TOKEN_EXPIRED');
    expect(await codeOf(tokens.verify(await forge(SECRET, { iatSeconds: now + 3600, expSeconds: Math.floor(now) + 7200 })))).toBe('TOKEN_INVALID');
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    const longExp = await forge(SECRET, { iatSeconds: Date.now() / 1000, expSeconds: Date.now() / 1000 + 86_400 });
    expect(await codeOf(tokens.verify(longExp))).toBe('resolved');
    vi.setSystemTime(new Date('2030-01-01T00:02:01Z'));
    expect(await codeOf(tokens.verify(longExp))).toBe('TOKEN_EXPIRED');
  });

  it('accepts the previous secret until its grace period ends, and signs only with the current one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    const before = createAccessTokens({ keys: { current: SECRET }, ttlSeconds: 900 });
    const oldToken = (await before.sign(claims)).token;
    const rotated = createAccessTokens({ keys: { current: NEXT, previous: SECRET, previousUntil: new Date('2030-01-01T00:10:00Z') }, ttlSeconds: 900 });
    expect(await codeOf(rotated.verify(oldToken))).toBe('resolved');
    const fresh = (await rotated.sign(claims)).token;
    expect(partsOf(fresh).header.kid).toBe(keyIdOf(NEXT));
    expect(await codeOf(createAccessTokens({ keys: { current: NEXT }, ttlSeconds: 900 }).verify(fresh))).toBe('resolved');
    vi.setSystemTime(new Date('2030-01-01T00:10:00Z'));
    // The cached verification of the old token ends with the grace period too.
    expect(await codeOf(rotated.verify(oldToken))).toBe('TOKEN_INVALID');
    // And one freshly minted with the old secret (a leaked one) is refused outright.
    expect(await codeOf(rotated.verify(await forge(SECRET)))).toBe('TOKEN_INVALID');
    expect(await codeOf(rotated.verify(fresh))).toBe('resolved');
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
