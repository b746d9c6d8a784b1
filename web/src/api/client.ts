import type { SignedIn } from './types';

/** An error the server answered with (`{error:{code,message,requestId}}`), or a network failure (`NETWORK`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
    readonly details?: unknown,
    /** The server's Retry-After, in seconds, when it sent one (a delayed sign-in, a rate limit). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type Listener = (session: SignedIn | undefined) => void;

/**
 * The access token lives only in this module's memory: never in storage a
 * script could read later. The httpOnly refresh cookie brings it back after
 * a reload (`restore`), and a request that gets 401 refreshes once and is
 * sent again.
 */
let current: SignedIn | undefined;
let refreshing: Promise<SignedIn | undefined> | undefined;
const listeners = new Set<Listener>();

export const session = {
  get(): SignedIn | undefined {
    return current;
  },
  set(next: SignedIn | undefined): void {
    current = next;
    for (const l of listeners) l(next);
  },
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};

async function errorFrom(res: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const err = (body as { error?: { code?: unknown; message?: unknown; requestId?: unknown; details?: unknown } } | undefined)?.error;
  if (err && typeof err.code === 'string') {
    const retryAfter = Number(res.headers.get('retry-after') ?? Number.NaN);
    return new ApiError(
      res.status,
      err.code,
      typeof err.message === 'string' ? err.message : res.statusText,
      typeof err.requestId === 'string' ? err.requestId : undefined,
      err.details,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
    );
  }
  return new ApiError(res.status, res.status >= 500 ? 'INTERNAL' : 'HTTP_ERROR', res.statusText || `HTTP ${res.status}`);
}

async function send(input: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(input, { credentials: 'same-origin', ...init });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', err instanceof Error ? err.message : 'Network error');
  }
}

/** Trades the refresh cookie for a new access token; one request at a time however many callers ask. */
export function refreshSession(): Promise<SignedIn | undefined> {
  refreshing ??= (async () => {
    try {
      const res = await send('/api/auth/refresh', { method: 'POST' });
      if (!res.ok) {
        if (res.status === 401) session.set(undefined);
        return undefined;
      }
      const body = (await res.json()) as SignedIn;
      session.set(body);
      return body;
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  body?: unknown;
  /** Bytes sent as they are (an upload), with their own Content-Type; instead of a JSON `body`. */
  raw?: { data: Blob; contentType: string };
  query?: Record<string, string | number | boolean | undefined>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Signed out on purpose (a share link): a 401 is the answer, not a reason to refresh the session. */
  signedOut?: boolean;
}

function urlOf(path: string, query: RequestOptions['query']): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/**
 * Sends an API request with the access token; on 401 refreshes once and
 * retries. Returns the raw Response when it is ok (streams use this).
 */
export async function apiFetch(path: string, options: RequestOptions = {}): Promise<Response> {
  const attempt = () => {
    const headers: Record<string, string> = { ...options.headers };
    if (current) headers.authorization = `Bearer ${current.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.raw) headers['content-type'] = options.raw.contentType;
    return send(urlOf(path, options.query), {
      method: options.method ?? 'GET',
      headers,
      body: options.raw ? options.raw.data : options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  };
  let res = await attempt();
  if (res.status === 401 && !options.signedOut && !path.startsWith('/api/auth/login') && !path.startsWith('/api/auth/refresh')) {
    const renewed = await refreshSession();
    if (renewed) res = await attempt();
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

/** A JSON API call: unwraps the `{success,data}` envelope (login-like bodies come back as they are). */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const res = await apiFetch(path, options);
  const body = (await res.json()) as unknown;
  if (body && typeof body === 'object' && 'success' in body && 'data' in body) return (body as { data: T }).data;
  return body as T;
}
