/**
 * What a personal API key may do. Every key may chat (and use the rest of a
 * user's own API); `admin` lets an admin's key reach admin routes, and
 * `keys` lets a key create and revoke keys. A session (access token) holds
 * them all, bounded by the account's role.
 */
export const API_KEY_SCOPES = ['chat', 'admin', 'keys'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

export const ALL_SCOPES: readonly ApiKeyScope[] = API_KEY_SCOPES;

/** Parses the stored, space-separated form; unknown words are dropped, `chat` is always there. */
export function parseScopes(stored: string): ApiKeyScope[] {
  const words = new Set(stored.split(/\s+/));
  return API_KEY_SCOPES.filter((s) => s === 'chat' || words.has(s));
}

/** The stored form of a set of scopes, in canonical order, always with `chat`. */
export function formatScopes(scopes: readonly ApiKeyScope[]): string {
  return parseScopes(scopes.join(' ')).join(' ');
}
