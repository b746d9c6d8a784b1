/**
 * What a fresh local deployment needs before a drill can drive it, done
 * through its public API as an operator would: the admin signs in, creates
 * a plain user for the chat load, and (unless agents come from
 * AGENTS_CONFIG_PATH) the drill's agents on the mock upstreams.
 */

import { randomBytes } from 'node:crypto';

/** Agents a deployment creates: each has the clean fallback mock behind a primary that behaves as named. */
export const DRILL_AGENTS = {
  /** Primary answers well. */
  steady: '',
  /** Primary cuts the stream after 5 chunks. */
  cut: 'cutAfter=5',
  /** Primary stalls after 5 chunks (the agent's idle deadline is 1 s). */
  stall: 'stallAfter=5',
  /**
   * Primary sends four chunks that are not JSON after 5 chunks: more than
   * UPSTREAM_MALFORMED_EVENTS_MAX (3), so the attempt fails and the fallback
   * takes over; fewer are skipped and the answer goes on (nothing to drill).
   */
  malformed: 'malformedAfter=5,malformed=4',
  /** Primary refuses with 503 and Retry-After: 1. */
  refuse: 'status=503,retryAfter=1',
} as const;
export type DrillAgent = keyof typeof DRILL_AGENTS;

/** The plain user the drill's chat load runs as. */
export const DRILL_USERNAME = 'drill-user';

async function call(url: string, init: { method: string; token?: string; body?: unknown }): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    method: init.method,
    headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: kept as text for the error message.
  }
  return { status: response.status, body };
}

async function expectStatus(what: string, result: Promise<{ status: number; body: unknown }>, status: number): Promise<unknown> {
  const { status: got, body } = await result;
  if (got !== status) throw new Error(`${what}: HTTP ${got} ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

/** Signs in; resolves with the access token. */
export async function login(api: string, username: string, password: string): Promise<string> {
  const body = (await expectStatus(`login as ${username}`, call(`${api}/api/auth/login`, { method: 'POST', body: { username, password } }), 200)) as { token: string };
  return body.token;
}

/** Creates the drill's plain user with a random password; resolves with its credentials and an access token. */
export async function createDrillUser(api: string, adminToken: string): Promise<{ username: string; password: string; token: string }> {
  const password = randomBytes(18).toString('base64url');
  await expectStatus('create the drill user', call(`${api}/api/admin/users`, { method: 'POST', token: adminToken, body: { username: DRILL_USERNAME, password } }), 201);
  return { username: DRILL_USERNAME, password, token: await login(api, DRILL_USERNAME, password) };
}

/** Creates every DRILL_AGENTS agent: the primary mock (with its fault) first, the clean fallback mock behind it. */
export async function createDrillAgents(api: string, adminToken: string, upstreams: { primary: string; fallback: string }): Promise<void> {
  for (const [id, fault] of Object.entries(DRILL_AGENTS)) {
    const endpoint = `${upstreams.primary}${fault ? `/fault/${fault}` : ''}/v1/chat/completions`;
    await expectStatus(
      `create agent ${id}`,
      call(`${api}/api/agents`, {
        method: 'POST',
        token: adminToken,
        body: {
          id,
          name: `Drill: ${id}`,
          provider: 'openai',
          endpoint,
          apiKey: 'drill-key',
          model: 'mock-model',
          timeouts: { idleMs: 1000 },
          fallbacks: [{ provider: 'openai', endpoint: `${upstreams.fallback}/v1/chat/completions`, apiKey: 'drill-key', model: 'mock-model' }],
        },
      }),
      201,
    );
  }
}

/** GET /health/ready of each instance: all answer 200 with every dependency up. */
export async function allReady(urls: readonly string[]): Promise<boolean> {
  const answers = await Promise.all(urls.map((url) => call(`${url}/health/ready`, { method: 'GET' }).catch(() => ({ status: 0, body: undefined }))));
  return answers.every((a) => a.status === 200 && (a.body as { status?: unknown } | undefined)?.status === 'ok');
}
