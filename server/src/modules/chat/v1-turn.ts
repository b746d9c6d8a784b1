import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { MessageRow } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { principalOf } from '../../plugins/authenticate.js';
import { bindToRequestLog, callerOf } from '../../plugins/request-tracing.js';
import type { ChatService, TurnInput } from './chat-service.js';
import type { Generation } from './generation.js';
import { idempotencyKeyOf, requestFingerprint } from './idempotency.js';
import { setLimitHeaders } from './routes.js';

/**
 * What the compatibility APIs (`/v1/chat/completions`, `/v1/messages`) share
 * between their wire formats: how a call starts a turn (auth, idempotency,
 * limits and their headers, the session rule) and how their errors are
 * rewritten into the original API's shape.
 */

/** How long a repeated Idempotency-Key waits for the earlier answer to settle. */
const REPEAT_WAIT_MS = 10 * 60_000;

/** The request header with which a `/v1` caller keeps its session in the key owner's chat list. */
export const SESSION_HEADER = 'x-llmchat-session';

/**
 * Whether a `/v1` call's session is hidden from the owner's chat list:
 * yes unless the caller sends `X-LLMChat-Session: keep` (README, "Sessions
 * of /v1 calls"). Any other value than `keep` or `hidden` is a 400.
 */
export function sessionHiddenBy(header: string | string[] | undefined): boolean {
  if (header === undefined) return true;
  const value = (Array.isArray(header) ? header[0] : header)?.trim().toLowerCase();
  if (value === 'keep') return false;
  if (value === 'hidden') return true;
  throw new AppError('VALIDATION_FAILED', 'X-LLMChat-Session must be keep (list the session in your chats) or hidden (the default)', [{ path: '/headers/x-llmchat-session', message: 'must be keep or hidden' }]);
}

/** A `/v1` call's turn: the live generation, or (a repeated Idempotency-Key) the stored answer once settled. */
export type V1Turn = { kind: 'live'; generation: Generation } | { kind: 'stored'; row: MessageRow };

/**
 * Starts the turn of a `/v1` call through the chat service, with the
 * caller's Idempotency-Key (fingerprinted with the route and body) and the
 * session rule; sets the limit headers. A repeated key follows the same
 * turn (streaming, while this instance runs it) or waits for its stored
 * answer, never a second generation.
 */
export async function startV1Turn(chat: ChatService, request: FastifyRequest, reply: FastifyReply, input: TurnInput, fingerprint: { route: string; body: unknown; stream: boolean }): Promise<V1Turn> {
  const principal = principalOf(request);
  const key = idempotencyKeyOf(request.headers['idempotency-key']);
  const started = await chat.startTurnOnce(
    principal,
    { ...input, hidden: sessionHiddenBy(request.headers[SESSION_HEADER]), receivedAt: performance.now() - reply.elapsedTime },
    key === undefined ? undefined : { key, fingerprint: requestFingerprint(fingerprint.route, fingerprint.body) },
    callerOf(request),
  );
  if (started.kind === 'started') {
    setLimitHeaders(reply, started.generation);
    return { kind: 'live', generation: started.generation };
  }
  void reply.header('idempotent-replayed', 'true');
  bindToRequestLog(request, { turnId: started.turnId });
  const local = chat.localGeneration(started.turnId);
  if (local && fingerprint.stream) {
    if (local.plan.userId !== principal.userId) throw new AppError('MESSAGE_NOT_FOUND', 'No such answer');
    return { kind: 'live', generation: local };
  }
  return { kind: 'stored', row: await chat.settledAnswer(principal, started.turnId, REPEAT_WAIT_MS) };
}

/** Names the agent and the endpoint that served a `/v1` answer. */
export function servedHeaders(reply: FastifyReply, agentId: string, endpointId: string | null | undefined): void {
  void reply.header('x-llmchat-agent', agentId);
  if (endpointId) void reply.header('x-llmchat-endpoint', endpointId);
}

/**
 * Rewrites every error of a compatibility route plugin into its original
 * API's shape: the app's error handler writes our envelope, `reshape` turns
 * it into theirs (undefined leaves the body as it is).
 */
export function reshapeErrors(app: FastifyInstance, reshape: (payload: string) => { status: number; body: unknown } | undefined): void {
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode < 400 || typeof payload !== 'string') return payload;
    const reshaped = reshape(payload);
    if (!reshaped) return payload;
    void reply.status(reshaped.status);
    return JSON.stringify(reshaped.body);
  });
}
