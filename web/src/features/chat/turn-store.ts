import { ApiError } from '../../api/client';
import { chatApi } from '../../api/endpoints';
import { followTurn } from './follow-turn';
import { applyEvent, type TurnEvent, type UiMessage } from './turn-events';
import { storedForm } from './question-parts';
import type { QuestionContent } from '../../api/types';

/**
 * Turns being answered, kept outside React so a stream survives moving
 * between pages and sessions. Keyed by session id; a new chat runs under
 * NEW_CHAT until its `start` event names the session.
 */
export const NEW_CHAT = 'new';

export interface LiveTurn {
  key: string;
  sessionId: string | undefined;
  agentId: string;
  /** The question this turn answers when it was sent from here (new or edited); absent when resuming or regenerating. */
  question: UiMessage | undefined;
  answer: UiMessage;
  /** A stored answer this turn replaces (regenerate, edit). */
  replacesId: string | undefined;
  /** The stored question an edit replaces (the edited one is a new version, with an id of its own). */
  replacesQuestionId?: string | undefined;
  running: boolean;
  reconnecting: number;
  /** The turn could not be started or followed: shown in place with a retry. */
  failure: { code: string; message: string } | undefined;
  /** Called by the store when the session becomes known (new chat). */
  controller: AbortController;
}

type Listener = () => void;
let turns: ReadonlyMap<string, LiveTurn> = new Map();
const listeners = new Set<Listener>();
const sessionListeners = new Set<(sessionId: string, event: 'started' | 'ended') => void>();

function publish(next: Map<string, LiveTurn>): void {
  turns = next;
  for (const l of listeners) l();
}

function update(key: string, change: (turn: LiveTurn) => LiveTurn): void {
  const turn = turns.get(key);
  if (!turn) return;
  const next = new Map(turns);
  next.set(key, change(turn));
  publish(next);
}

function rekey(from: string, to: string): void {
  const turn = turns.get(from);
  if (!turn || from === to) return;
  const next = new Map(turns);
  next.delete(from);
  next.set(to, { ...turn, key: to, sessionId: to });
  publish(next);
}

export const turnStore = {
  subscribe: (listener: Listener): (() => void) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
  snapshot: (): ReadonlyMap<string, LiveTurn> => turns,
  get(key: string): LiveTurn | undefined {
    return turns.get(key);
  },
  /** Told when a turn's session starts (a new chat got its id) or a turn ends, to refresh lists. */
  onSession(listener: (sessionId: string, event: 'started' | 'ended') => void): () => void {
    sessionListeners.add(listener);
    return () => sessionListeners.delete(listener);
  },
  /** Forgets a finished turn once the stored session shows its answer. */
  forget(key: string): void {
    const turn = turns.get(key);
    if (!turn || turn.running) return;
    const next = new Map(turns);
    next.delete(key);
    publish(next);
  },
  isRunning(key: string): boolean {
    return turns.get(key)?.running === true;
  },
};

function placeholderAnswer(): UiMessage {
  return { id: `pending-${crypto.randomUUID()}`, role: 'assistant', content: '', reasoning: '', status: 'streaming', error: null, feedback: null, interactive: null, flow: null, createdAt: new Date().toISOString() };
}

function failureOf(err: unknown): { code: string; message: string } {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  return { code: 'NETWORK', message: err instanceof Error ? err.message : String(err) };
}

interface RunSpec {
  onStarted?: ((sessionId: string) => void) | undefined;
  key: string;
  sessionId: string | undefined;
  agentId: string;
  question: UiMessage | undefined;
  answer: UiMessage;
  replacesId: string | undefined;
  replacesQuestionId?: string | undefined;
  open: ((signal: AbortSignal) => Promise<Response>) | undefined;
  resumeId?: string;
}

function run(spec: RunSpec): void {
  const existing = turns.get(spec.key);
  if (existing?.running) return;
  const controller = new AbortController();
  const turn: LiveTurn = {
    key: spec.key,
    sessionId: spec.sessionId,
    agentId: spec.agentId,
    question: spec.question,
    answer: spec.answer,
    replacesId: spec.replacesId,
    replacesQuestionId: spec.replacesQuestionId,
    running: true,
    reconnecting: 0,
    failure: undefined,
    controller,
  };
  const next = new Map(turns);
  next.set(spec.key, turn);
  publish(next);

  let key = spec.key;
  const onEvent = (event: TurnEvent) => {
    if (event.type === 'start' && event.sessionId && key !== event.sessionId) {
      rekey(key, event.sessionId);
      key = event.sessionId;
      for (const l of sessionListeners) l(event.sessionId, 'started');
      spec.onStarted?.(event.sessionId);
    }
    update(key, (t) => ({
      ...t,
      sessionId: event.type === 'start' && event.sessionId ? event.sessionId : t.sessionId,
      question: t.question && event.type === 'start' && event.userMessageId ? { ...t.question, id: event.userMessageId } : t.question,
      answer: applyEvent(t.answer, event),
      running: event.type === 'end' ? false : t.running,
    }));
  };

  followTurn({
    open: spec.open,
    resume: (messageId, lastEventId, signal) => chatApi.resume(messageId, lastEventId, signal),
    messageId: spec.resumeId,
    afterN: 0,
    signal: controller.signal,
    onEvent,
    onReconnecting: (attempt) => update(key, (t) => ({ ...t, reconnecting: attempt })),
  })
    .then((result) => {
      if (result === 'aborted') update(key, (t) => ({ ...t, running: false, answer: { ...t.answer, status: 'stopped' } }));
    })
    .catch((err: unknown) => {
      update(key, (t) => ({ ...t, running: false, failure: failureOf(err), answer: { ...t.answer, status: 'error' } }));
    })
    .finally(() => {
      const sessionId = turns.get(key)?.sessionId;
      if (sessionId) for (const l of sessionListeners) l(sessionId, 'ended');
    });
}

export const turns$ = {
  /** Sends a question, in a session or as a new chat. */
  ask(agentId: string, sessionId: string | undefined, content: QuestionContent, onStarted?: (sessionId: string) => void): void {
    // Shown as it will be stored: parts (attachments) as their JSON.
    const question: UiMessage = { ...placeholderAnswer(), id: `pending-q-${crypto.randomUUID()}`, role: 'user', content: storedForm(content), status: 'complete' };
    run({
      key: sessionId ?? NEW_CHAT,
      sessionId,
      agentId,
      question,
      answer: placeholderAnswer(),
      replacesId: undefined,
      onStarted,
      open: (signal) => chatApi.complete({ agentId, chatId: sessionId, content, detail: true }, signal),
    });
  },
  /** Answers the last question again; with `edited`, answers the edited question instead. */
  regenerate(agentId: string, sessionId: string, last: { questionId: string; answerId: string }, edited?: string): void {
    const question: UiMessage | undefined = edited === undefined ? undefined : { ...placeholderAnswer(), id: last.questionId, role: 'user', content: edited, status: 'complete' };
    run({
      key: sessionId,
      sessionId,
      agentId,
      question,
      answer: placeholderAnswer(),
      replacesId: last.answerId,
      replacesQuestionId: edited === undefined ? undefined : last.questionId,
      open: (signal) => chatApi.retry(sessionId, edited, signal),
    });
  },
  /** Continues a stopped answer where it stopped: the text stays, and what follows streams onto it (after the server's `reset` and the same text). */
  continueAnswer(agentId: string, sessionId: string, stopped: UiMessage): void {
    run({
      key: sessionId,
      sessionId,
      agentId,
      question: undefined,
      answer: { ...stopped, status: 'streaming', error: null },
      replacesId: undefined,
      open: (signal) => chatApi.continueAnswer(sessionId, stopped.id, signal),
    });
  },
  /** Follows an answer that was still streaming when the page loaded: replays it from its first event. */
  resume(agentId: string, sessionId: string, stored: UiMessage): void {
    run({ key: sessionId, sessionId, agentId, question: undefined, answer: { ...stored, replay: true }, replacesId: undefined, open: undefined, resumeId: stored.id });
  },
  /** Asks the server to stop the answer (from whichever instance runs it); the stream then ends with `stopped`. */
  async stop(key: string): Promise<void> {
    const turn = turns.get(key);
    if (!turn?.running) return;
    if (turn.answer.id.startsWith('pending-')) {
      turn.controller.abort();
      return;
    }
    try {
      await chatApi.stop(turn.answer.id);
    } catch {
      turn.controller.abort();
    }
  },
};
