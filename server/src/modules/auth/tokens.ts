import crypto from 'node:crypto';
import { errors, jwtVerify, SignJWT, type JWTHeaderParameters } from 'jose';
import type { Role } from '../../db/schema.js';
import { AppError } from '../../errors.js';

export const TOKEN_ISSUER = 'llmchat';
/** Who an access token is for: this API. A JWT minted for anything else with the same secret is refused. */
export const TOKEN_AUDIENCE = 'llmchat-api';

export interface AccessClaims {
  /** User id. */
  sub: string;
  username: string;
  role: Role;
}

/** What a verified token proves, with when it was issued (ms) for the per-user "valid after" check. */
export interface VerifiedAccess extends AccessClaims {
  issuedAtMs: number;
}

export interface SignedAccessToken {
  token: string;
  /** Seconds until it expires. */
  expiresIn: number;
}

export interface AccessTokens {
  sign(claims: AccessClaims): Promise<SignedAccessToken>;
  /** Throws TOKEN_EXPIRED for an expired (or over-age) but genuine token, TOKEN_INVALID for anything else. */
  verify(token: string): Promise<VerifiedAccess>;
}

/** The secrets access tokens are signed and checked with. */
export interface TokenKeys {
  /** Signs every new token; its key id goes in the `kid` header. */
  current: string;
  /** The secret before the last rotation: its tokens are still accepted until `previousUntil`. */
  previous?: string | undefined;
  previousUntil?: Date | undefined;
}

export interface AccessTokenOptions {
  keys: TokenKeys;
  ttlSeconds: number;
  /** A token older than this (from `iat`) is refused whatever its `exp` says; defaults to ttlSeconds. */
  maxAgeSeconds?: number | undefined;
}

/** Verified tokens kept so the hot path skips the HMAC; an entry never outlives its token's `exp`, maximum age or key. */
const VERIFIED_CACHE_MAX = 10_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The public name of a secret: 8 bytes of an HMAC of a fixed label under it.
 * It tells which secret signed a token without revealing anything of it.
 */
export function keyIdOf(secret: string): string {
  return crypto.createHmac('sha256', secret).update('llmchat/jwt-key-id').digest().subarray(0, 8).toString('base64url');
}

const expired = () => new AppError('TOKEN_EXPIRED', 'The access token has expired: refresh it at POST /api/auth/refresh');
const invalid = () => new AppError('TOKEN_INVALID', 'The access token is not valid: sign in again');

/**
 * Short-lived HS256 access tokens. Each carries `aud`, a `kid` naming the
 * secret that signed it, and an `iat` with millisecond precision (a JWT
 * NumericDate may be fractional) so a revocation at time T can tell tokens
 * issued just before T from those issued just after.
 */
export function createAccessTokens({ keys, ttlSeconds, maxAgeSeconds = ttlSeconds }: AccessTokenOptions): AccessTokens {
  const encoder = new TextEncoder();
  const current = { kid: keyIdOf(keys.current), key: encoder.encode(keys.current) };
  const previous = keys.previous && keys.previousUntil ? { kid: keyIdOf(keys.previous), key: encoder.encode(keys.previous), untilMs: keys.previousUntil.getTime() } : undefined;
  const maxAgeMs = maxAgeSeconds * 1000;
  const verified = new Map<string, { claims: VerifiedAccess; expiresAtMs: number; expiry: 'expired' | 'invalid' }>();

  /** The key a token's header names, or undefined when it names none we accept now. */
  function keyFor(header: JWTHeaderParameters): { key: Uint8Array; untilMs: number } | undefined {
    if (header.kid === current.kid) return { key: current.key, untilMs: Infinity };
    if (previous && header.kid === previous.kid && Date.now() < previous.untilMs) return previous;
    return undefined;
  }

  return {
    async sign(claims) {
      const nowMs = Date.now();
      const token = await new SignJWT({ username: claims.username, role: claims.role, typ: 'access' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: current.kid })
        .setSubject(claims.sub)
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt(nowMs / 1000)
        .setExpirationTime(Math.floor(nowMs / 1000) + ttlSeconds)
        .setJti(crypto.randomUUID())
        .sign(current.key);
      return { token, expiresIn: ttlSeconds };
    },

    async verify(token) {
      const cached = verified.get(token);
      if (cached) {
        if (cached.expiresAtMs > Date.now()) return cached.claims;
        verified.delete(token);
        throw cached.expiry === 'expired' ? expired() : invalid();
      }
      let payload: Record<string, unknown>;
      let untilMs = Infinity;
      try {
        ({ payload } = await jwtVerify(
          token,
          (header) => {
            const found = keyFor(header);
            if (!found) throw invalid();
            untilMs = found.untilMs;
            return found.key;
          },
          { issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, algorithms: ['HS256'], requiredClaims: ['exp', 'sub', 'iat'] },
        ));
      } catch (err) {
        // jose checks the signature before the claims, so "expired" means a genuine token that ran out.
        if (err instanceof errors.JWTExpired) throw expired();
        throw invalid();
      }
      const { sub, username, role, typ, iat, exp } = payload;
      if (typ !== 'access' || typeof sub !== 'string' || !UUID.test(sub) || typeof username !== 'string' || (role !== 'user' && role !== 'admin') || typeof iat !== 'number') {
        throw invalid();
      }
      const issuedAtMs = iat * 1000;
      const nowMs = Date.now();
      // A token from the future was not issued by a clock we trust; one older than the maximum age is dead whatever its exp says.
      if (issuedAtMs > nowMs + 60_000) throw invalid();
      const ageLimitMs = issuedAtMs + maxAgeMs;
      if (ageLimitMs <= nowMs) throw expired();
      const claims: VerifiedAccess = { sub, username, role, issuedAtMs };
      if (verified.size >= VERIFIED_CACHE_MAX) {
        const oldest = verified.keys().next().value;
        if (oldest !== undefined) verified.delete(oldest);
      }
      const expMs = Number(exp) * 1000;
      const endMs = Math.min(expMs, ageLimitMs, untilMs);
      verified.set(token, { claims, expiresAtMs: endMs, expiry: endMs === untilMs ? 'invalid' : 'expired' });
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
