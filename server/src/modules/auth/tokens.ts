import crypto from 'node:crypto';
import { errors, jwtVerify, SignJWT } from 'jose';
import type { Role } from '../../db/schema.js';
import { AppError } from '../../errors.js';

export const TOKEN_ISSUER = 'llmchat';

export interface AccessClaims {
  /** User id. */
  sub: string;
  username: string;
  role: Role;
}

export interface SignedAccessToken {
  token: string;
  /** Seconds until it expires. */
  expiresIn: number;
}

export interface AccessTokens {
  sign(claims: AccessClaims): Promise<SignedAccessToken>;
  /** Throws TOKEN_EXPIRED for an expired but genuine token, TOKEN_INVALID for anything else. */
  verify(token: string): Promise<AccessClaims>;
}

/** Verified tokens kept so the hot path skips the HMAC; an entry never outlives its token's `exp`. */
const VERIFIED_CACHE_MAX = 10_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Short-lived HS256 access tokens. */
export function createAccessTokens({ secret, ttlSeconds }: { secret: string; ttlSeconds: number }): AccessTokens {
  const key = new TextEncoder().encode(secret);
  const verified = new Map<string, { claims: AccessClaims; expiresAtMs: number }>();
  return {
    async sign(claims) {
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ username: claims.username, role: claims.role, typ: 'access' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(claims.sub)
        .setIssuer(TOKEN_ISSUER)
        .setIssuedAt(now)
        .setExpirationTime(now + ttlSeconds)
        .setJti(crypto.randomUUID())
        .sign(key);
      return { token, expiresIn: ttlSeconds };
    },

    async verify(token) {
      const cached = verified.get(token);
      if (cached) {
        if (cached.expiresAtMs > Date.now()) return cached.claims;
        verified.delete(token);
        throw new AppError('TOKEN_EXPIRED', 'The access token has expired: refresh it at POST /api/auth/refresh');
      }
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, key, { issuer: TOKEN_ISSUER, algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] }));
      } catch (err) {
        // jose checks the signature before the claims, so "expired" means a genuine token that ran out.
        if (err instanceof errors.JWTExpired) throw new AppError('TOKEN_EXPIRED', 'The access token has expired: refresh it at POST /api/auth/refresh');
        throw new AppError('TOKEN_INVALID', 'The access token is not valid: sign in again');
      }
      const { sub, username, role, typ } = payload;
      if (typ !== 'access' || typeof sub !== 'string' || !UUID.test(sub) || typeof username !== 'string' || (role !== 'user' && role !== 'admin')) {
        throw new AppError('TOKEN_INVALID', 'The access token is not valid: sign in again');
      }
      const claims: AccessClaims = { sub, username, role };
      if (verified.size >= VERIFIED_CACHE_MAX) {
        const oldest = verified.keys().next().value;
        if (oldest !== undefined) verified.delete(oldest);
      }
      verified.set(token, { claims, expiresAtMs: Number(payload.exp) * 1000 });
      return claims;
    },
  };
}

/** An opaque refresh token: 32 random bytes, base64url. Only its hash is stored. */
export function newRefreshToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

/** SHA-256 hex digest; used for refresh tokens and API keys, which are high-entropy so need no salt. */
export function sha256(value: string): string {
  return crypto.createHash('sha256').update(value).digest('hex');
}
