/** Runs one chat turn: faults, delays, then a paced stream or a blocking body. */

import type { AnswerDefaults, AnswerPlan } from './answer.js';
import { planAnswer } from './answer.js';
import type { Exchange } from './exchange.js';
import type { FaultSpec } from './faults.js';
import { extractDirectives, mergeFaults } from './faults.js';
import type {
  ChatProtocol,
  ProviderModule,
  RouteContext,
  StreamControl,
  StreamScript,
  TurnRequest,
} from './protocol.js';
import { ErrorReply, IN_STREAM_ERROR_MESSAGE, MALFORMED_JSON, PREFILL_REFUSED_MESSAGE, simulatedErrorMessage } from './protocol.js';

export function sendError(
  exchange: Exchange,
  provider: ProviderModule,
  reply: ErrorReply,
  retryAfter?: string,
): void {
  exchange.json(reply.status, provider.errorBody(reply), retryAfter === undefined ? {} : { 'retry-after': retryAfter });
}

/** The status fault, if any, as an error reply. */
export function faultReply(fault: FaultSpec): ErrorReply | undefined {
  return fault.status === undefined ? undefined : new ErrorReply(fault.status, simulatedErrorMessage(fault.status), fault.code);
}

export function runTurn<T extends TurnRequest>(
  ctx: RouteContext,
  provider: ProviderModule,
  protocol: ChatProtocol<T>,
  defaults: AnswerDefaults,
): void {
  const { exchange } = ctx;
  const turn = protocol.parseTurn(ctx.body);
  if (turn instanceof ErrorReply) {
    sendError(exchange, provider, turn);
    return;
  }
  const directive = extractDirectives(turn.userText);
  const faults = ctx.schedule(mergeFaults(ctx.faults, directive.faults));
  ctx.noteFaults(faults);
  if (faults.errors.length > 0) {
    sendError(exchange, provider, new ErrorReply(400, `mock upstream: ${faults.errors.join('; ')}`, 'mock_fault_invalid'));
    return;
  }
  const fault = faults.spec;
  const plan = planAnswer(
    { question: directive.text, systemPrompt: turn.systemPrompt, promptChars: turn.promptChars, tools: turn.tools, toolResults: turn.toolResults },
    fault,
    defaults,
    turn.prefill,
  );
  exchange.after(fault.headersDelay ?? 0, () => {
    const reply = turn.prefill !== undefined && fault.prefill === 'refuse' ? new ErrorReply(400, PREFILL_REFUSED_MESSAGE, 'prefill_unsupported') : faultReply(fault);
    if (reply !== undefined) {
      sendError(exchange, provider, reply, fault.retryAfter);
      return;
    }
    if (turn.stream) {
      const script = protocol.streamScript(turn, plan);
      const control = playStream(exchange, plan, script);
      exchange.setCleanup(protocol.onTurnStart?.(turn, plan, control));
    } else {
      exchange.setCleanup(protocol.onTurnStart?.(turn, plan, undefined));
      playBlocking(exchange, plan, provider, () => protocol.blockingBody(turn, plan));
    }
  });
}

/**
 * Paces the frames: reasoning chunks, then text chunks, one per interval,
 * the first after `firstTokenDelay`. Text-chunk faults fire at the moment the
 * next text chunk would have been sent.
 *
 * Chunks are due on a fixed schedule, so event-loop lag under load does not
 * stretch every stream; a stream that has fallen behind sends the overdue
 * chunks in one write, which keeps the mock cheap exactly when it is busiest.
 */
export function playStream(exchange: Exchange, plan: AnswerPlan, script: StreamScript): StreamControl {
  const { fault, chunks, reasoning, intervalMs } = plan;
  let reasoningSent = 0;
  let textSent = 0;
  // Function calls follow the text: call `toolCall`, its piece `toolPiece`.
  let toolCall = 0;
  let toolPiece = 0;
  let stalled = false;
  let malformedSent = false;
  let dueAt = performance.now() + plan.firstTokenDelayMs;

  /** Advances the schedule; true when the next step is already due. */
  const advance = (delayMs: number): boolean => {
    dueAt += delayMs;
    const wait = dueAt - performance.now();
    if (wait <= 0) return true;
    exchange.schedule(wait, tick);
    return false;
  };

  function tick(): void {
    let out = '';
    for (;;) {
      if (reasoningSent < reasoning.length) {
        out += script.reasoning(reasoning[reasoningSent] ?? '', reasoningSent);
        reasoningSent++;
        if (reasoningSent === reasoning.length && chunks.length === 0) continue;
        if (advance(intervalMs)) continue;
        break;
      }
      if (fault.cutAfter === textSent) {
        exchange.write(out);
        // Let what was written reach the socket before dropping it.
        if (out === '') exchange.destroy();
        else exchange.schedule(0, () => exchange.destroy());
        return;
      }
      if (fault.stallAfter === textSent && !stalled) {
        stalled = true;
        exchange.write(out);
        // Without `stall` the stream stays silent until the client gives up.
        if (fault.stall !== undefined) {
          dueAt = performance.now();
          advance(fault.stall);
        }
        return;
      }
      if (fault.errorAfter === textSent) {
        exchange.end(out + script.error(fault.code));
        return;
      }
      if (fault.endAfter === textSent) {
        exchange.end(out);
        return;
      }
      if (fault.malformedAfter === textSent && !malformedSent) {
        malformedSent = true;
        for (let i = 0; i < (fault.malformed ?? 1); i++) out += script.malformed();
      }
      const call = script.toolCall === undefined ? undefined : plan.toolCalls[toolCall];
      if (textSent === chunks.length && call !== undefined) {
        out += script.toolCall?.(call, toolCall, toolPiece) ?? '';
        toolPiece++;
        if (toolPiece === call.pieces.length) {
          toolCall++;
          toolPiece = 0;
        }
        if (toolCall === plan.toolCalls.length) continue;
        if (advance(intervalMs)) continue;
        break;
      }
      if (textSent === chunks.length) {
        exchange.end(out + script.end(textSent, fault.noDone !== true));
        return;
      }
      out += script.text(chunks[textSent] ?? '', textSent);
      textSent++;
      // The closing frames follow the last chunk at once, as real providers do.
      if (textSent === chunks.length) continue;
      if (advance(intervalMs)) continue;
      break;
    }
    exchange.write(out);
  }

  exchange.startStream(script.headers, script.open);
  exchange.schedule(plan.firstTokenDelayMs, tick);
  return {
    stop: () => {
      exchange.end(script.end(textSent, true));
    },
  };
}

/**
 * A blocking answer arrives when the stream would have finished. Text-chunk
 * faults that the stream would have hit apply to the whole response.
 */
export function playBlocking(
  exchange: Exchange,
  plan: AnswerPlan,
  provider: ProviderModule,
  body: () => unknown,
): void {
  const { fault } = plan;
  const reached = (k: number | undefined): boolean => k !== undefined && k <= plan.chunks.length;
  const steps = plan.reasoning.length + plan.chunks.length;
  let delay = plan.firstTokenDelayMs + Math.max(0, steps - 1) * plan.intervalMs;
  if (reached(fault.stallAfter)) {
    if (fault.stall === undefined) return;
    delay += fault.stall;
  }
  exchange.after(delay, () => {
    if (reached(fault.cutAfter)) {
      exchange.destroy();
    } else if (reached(fault.errorAfter)) {
      sendError(exchange, provider, new ErrorReply(500, IN_STREAM_ERROR_MESSAGE, fault.code));
    } else if (reached(fault.malformedAfter)) {
      exchange.send(200, MALFORMED_JSON, { 'content-type': 'application/json; charset=utf-8' });
    } else {
      exchange.json(200, body());
    }
  });
}
