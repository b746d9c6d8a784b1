/**
 * An endpoint's `url` may be the provider's base URL (`http://h/v1`,
 * `http://h/api`, `http://h`) or the full chat URL. These functions reduce
 * either form to the provider's API root so every route (chat, feedback,
 * stop, init) is built the same way. Query strings (e.g. `api-version`) are
 * kept.
 */

interface SplitUrl {
  /** scheme://host:port */
  origin: string;
  /** path without trailing slashes */
  path: string;
  /** `?…` or '' */
  search: string;
}

function split(raw: string): SplitUrl {
  const url = new URL(raw);
  return { origin: url.origin, path: url.pathname.replace(/\/+$/, ''), search: url.search };
}

function stripSuffix(path: string, suffix: string): string {
  return path.endsWith(suffix) ? path.slice(0, -suffix.length) : path;
}

/** A provider's API root plus a way to build routes under it. */
export interface ApiRoot {
  readonly origin: string;
  /** Path of the root, e.g. `/v1` or `/api`. */
  readonly path: string;
  /** Full URL of `route` (starting with `/`) under the root; `query` is appended to the endpoint's own. */
  url(route: string, query?: Record<string, string | undefined>): string;
}

function makeRoot(origin: string, path: string, search: string): ApiRoot {
  return {
    origin,
    path,
    url(route, query) {
      let qs = search;
      if (query) {
        const params = new URLSearchParams(search);
        for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
        const s = params.toString();
        qs = s ? `?${s}` : '';
      }
      return `${origin}${path}${route}${qs}`;
    },
  };
}

/**
 * OpenAI-compatible: the root is the SDK-style base URL (`…/v1`).
 * `http://h` → `http://h/v1`; `…/chat/completions` → its parent; any other
 * path (`/compatible-mode/v1`, `/api/v3`) is used as the base as is.
 */
export function openaiRoot(raw: string): ApiRoot {
  const { origin, path, search } = split(raw);
  let base = stripSuffix(path, '/chat/completions');
  if (base === path && base === '') base = '/v1';
  return makeRoot(origin, base, search);
}

/** FastGPT: the root is `…/api` (chat at `/v1/chat/completions`, core APIs at `/core/...`). */
export function fastgptRoot(raw: string): ApiRoot {
  const { origin, path, search } = split(raw);
  let base = stripSuffix(path, '/chat/completions');
  base = stripSuffix(base, '/v1');
  if (!base.endsWith('/api')) base = `${base}/api`;
  return makeRoot(origin, base, search);
}

/** Anthropic: the root is `…/v1` (Messages at `/messages`). */
export function anthropicRoot(raw: string): ApiRoot {
  const { origin, path, search } = split(raw);
  let base = stripSuffix(path, '/messages');
  if (!base.endsWith('/v1')) base = `${base}/v1`;
  return makeRoot(origin, base, search);
}

/** Dify: the root is `…/v1` (chat at `/chat-messages`, `/messages/:id/feedbacks`, `/parameters`). */
export function difyRoot(raw: string): ApiRoot {
  const { origin, path, search } = split(raw);
  let base = stripSuffix(path, '/chat-messages');
  if (!base.endsWith('/v1')) base = `${base}/v1`;
  return makeRoot(origin, base, search);
}
