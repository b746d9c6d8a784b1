import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { useNavigate, useParams } from 'react-router';
import { ApiError } from '../../api/client';
import { agentsApi, sessionsApi } from '../../api/endpoints';
import type { Agent, QuestionContent, SessionDetail, StoredMessage } from '../../api/types';
import { contentOf } from './question-parts';
import { useI18n } from '../../i18n/i18n';
import { AgentPicker } from './agent-picker';
import { Composer } from './composer';
import { ConversationHeader } from './conversation-header';
import { MarkdownView } from './markdown-view';
import type { MessageActions } from './message-item';
import { MessageList } from './message-list';
import { fromStored, type UiMessage } from './turn-events';
import { NEW_CHAT, turns$, turnStore, type LiveTurn } from './turn-store';
import { useLiveTurn } from './use-live-turn';

const AGENT_KEY = 'llmchat.agent';

function useAgents() {
  return useQuery({ queryKey: ['agents'], queryFn: agentsApi.list, staleTime: 60_000 });
}

/** The stored messages with the live turn laid over them (the live copy wins until the stored one has caught up). */
function mergeLive(stored: UiMessage[], live: LiveTurn | undefined): UiMessage[] {
  if (!live) return stored;
  const hidden = new Set([live.answer.id, live.replacesId, live.replacesQuestionId, live.question?.id].filter((id): id is string => id !== undefined));
  const list = stored.filter((m) => !hidden.has(m.id));
  if (live.question) list.push(live.question);
  list.push({ ...live.answer, agentId: live.agentId });
  return list;
}

/** The indexes of the last question and last answer: the ones that can be edited and regenerated. */
function lastPair(messages: UiMessage[]): { question: number; answer: number } {
  let answer = -1;
  let question = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    const role = messages[i]?.role;
    if (answer < 0 && role === 'assistant') answer = i;
    if (role === 'user') {
      question = i;
      break;
    }
  }
  return { question, answer: answer > question ? answer : -1 };
}

/** The agent is active and its model provider can continue an answer where it stopped. */
function continues(agent: Agent | undefined): boolean {
  return agent?.status === 'active' && agent.canContinue === true;
}

/** Names each answer's agent once a conversation has had more than one (it switched agents); otherwise none. */
function answerAgents(messages: UiMessage[], agents: Agent[]): ((m: UiMessage) => string | undefined) {
  const ids = new Set(messages.filter((m) => m.role === 'assistant' && m.agentId).map((m) => m.agentId));
  if (ids.size < 2) return () => undefined;
  return (m) => (m.role === 'assistant' && m.agentId ? (agents.find((a) => a.id === m.agentId)?.name ?? m.agentId) : undefined);
}

function Conversation({ sessionKey, sessionId, agent, agents, stored, hasOlder, onLoadOlder, loadingOlder }: { sessionKey: string; sessionId: string | undefined; agent: Agent | undefined; agents: Agent[]; stored: UiMessage[]; hasOlder: boolean; onLoadOlder: () => void; loadingOlder: boolean }) {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const live = useLiveTurn(sessionKey);
  const messages = useMemo(() => mergeLive(stored, live), [stored, live]);
  const agentOf = useMemo(() => answerAgents(messages, agents), [messages, agents]);
  const running = live?.running === true;
  const agentId = agent?.id ?? live?.agentId;

  const ask = useCallback(
    (content: QuestionContent) => {
      if (!agentId) return;
      turns$.ask(agentId, sessionId, content, sessionId ? undefined : (id) => void navigate(`/c/${id}`, { replace: true }));
    },
    [agentId, sessionId, navigate],
  );

  // Another version of a message: the server switches what the conversation shows, then the session is read again.
  const showVersion = async (id: string, messageId: string): Promise<void> => {
    await sessionsApi.showVersion(id, messageId);
    turnStore.forget(sessionKey);
    await queryClient.invalidateQueries({ queryKey: ['session', id] });
  };

  const { question, answer } = lastPair(messages);
  const actionsFor = (m: UiMessage, index: number): MessageActions => {
    const canChange = !running && sessionId !== undefined && agentId !== undefined;
    const answerMsg = messages[answer];
    const questionMsg = messages[question];
    const pair = questionMsg && answerMsg && !questionMsg.id.startsWith('pending-') && !answerMsg.id.startsWith('pending-') ? { questionId: questionMsg.id, answerId: answerMsg.id } : undefined;
    const isLive = live !== undefined && m.id === live.answer.id;
    return {
      onRegenerate: canChange && index === answer && pair ? () => turns$.regenerate(agentId, sessionId, pair) : undefined,
      onEdit: canChange && index === question && pair ? (text) => turns$.regenerate(agentId, sessionId, pair, text) : undefined,
      // The answer's own agent continues it; only the last answer, stopped, where that agent can continue answers.
      onContinue:
        canChange && index === answer && pair && m.status === 'stopped' && continues(agents.find((a) => a.id === (m.agentId ?? agentId)))
          ? () => {
              // The answer keeps its id: its stored copy is marked streaming, so the finished live copy stays on screen until a read shows it stored.
              queryClient.setQueryData<SessionDetail>(['session', sessionId], (old) => old && { ...old, messages: old.messages.map((s) => (s.id === m.id ? { ...s, status: 'streaming' } : s)) });
              turns$.continueAnswer(m.agentId ?? agentId, sessionId, m);
            }
          : undefined,
      onInteractiveReply: !running && index === messages.length - 1 ? ask : undefined,
      agentName: agentOf(m),
      onShowVersion: !running && sessionId !== undefined ? (id) => void showVersion(sessionId, id) : undefined,
      reconnecting: isLive ? live.reconnecting : undefined,
      failure: isLive ? live.failure : undefined,
      onRetryFailure:
        isLive && live.failure
          ? () => {
              turnStore.forget(sessionKey);
              if (live.question && live.question.id.startsWith('pending-')) ask(contentOf(live.question.content));
              else if (pair && sessionId && agentId) turns$.regenerate(agentId, sessionId, pair);
            }
          : undefined,
    };
  };

  return (
    <>
      <MessageList messages={messages} actionsFor={actionsFor} hasOlder={hasOlder} onLoadOlder={onLoadOlder} loadingOlder={loadingOlder} />
      <Composer agentName={agent?.name ?? ''} takes={{ images: agent?.features?.supportsImages === true, files: agent?.features?.supportsFiles === true }} running={running} disabled={!agent || agent.status !== 'active'} onSend={ask} onStop={() => void turns$.stop(sessionKey)} />
    </>
  );
}

function NewChat({ agents }: { agents: Agent[] }) {
  const { t } = useI18n();
  const active = agents.filter((a) => a.status === 'active');
  const [selected, setSelected] = useState<string | undefined>(() => {
    const stored = localStorage.getItem(AGENT_KEY);
    return active.find((a) => a.id === stored)?.id ?? active[0]?.id;
  });
  const agent = active.find((a) => a.id === selected);
  const live = useLiveTurn(NEW_CHAT);
  const welcome = useQuery({ queryKey: ['welcome', selected], queryFn: () => agentsApi.init(selected!), enabled: selected !== undefined, staleTime: 60_000 });
  const select = (id: string) => {
    localStorage.setItem(AGENT_KEY, id);
    setSelected(id);
  };
  // A previous new chat that failed to start is dropped when the page is opened again.
  useEffect(() => {
    const turn = turnStore.get(NEW_CHAT);
    if (turn && !turn.running) turnStore.forget(NEW_CHAT);
  }, []);
  return (
    <main id="main" className="chat-page">
      <h1 className="visually-hidden">{t('sidebar.newChat')}</h1>
      {!live && (
        <div className="new-chat-intro">
          <AgentPicker agents={active} selected={selected} onSelect={select} />
          {welcome.data?.welcomeText && (
            <section className="welcome" aria-label={agent?.name} data-testid="welcome">
              <MarkdownView text={welcome.data.welcomeText} />
            </section>
          )}
        </div>
      )}
      <Conversation sessionKey={NEW_CHAT} sessionId={undefined} agent={agent} agents={agents} stored={[]} hasOlder={false} onLoadOlder={() => undefined} loadingOlder={false} />
    </main>
  );
}

function SessionChat({ sessionId, agents }: { sessionId: string; agents: Agent[] }) {
  const { t } = useI18n();
  const queryClient = useQueryClient();
  const session = useQuery({ queryKey: ['session', sessionId], queryFn: () => sessionsApi.get(sessionId) });
  const [older, setOlder] = useState<StoredMessage[]>([]);
  const [olderHasMore, setOlderHasMore] = useState<boolean | undefined>();
  const [loadingOlder, setLoadingOlder] = useState(false);
  const live = useLiveTurn(sessionId);

  const stored = useMemo(() => [...older, ...(session.data?.messages ?? [])].map(fromStored), [older, session.data]);
  const agent = agents.find((a) => a.id === session.data?.agentId);

  // An answer still streaming when the page loaded (a reload mid-answer): follow it to the end.
  useEffect(() => {
    const lastStored = session.data?.messages.at(-1);
    if (!session.data || !lastStored || lastStored.role !== 'assistant' || lastStored.status !== 'streaming') return;
    if (turnStore.get(sessionId)) return;
    turns$.resume(session.data.agentId, sessionId, fromStored(lastStored));
  }, [session.data, sessionId]);

  // Once the stored session shows the finished answer, the live copy is no longer needed. The session is
  // read again once per finished turn (the final write may land just after the `end` event); until it shows
  // the answer, the live copy stays on screen.
  const refetchedFor = useRef<string | undefined>(undefined);
  useEffect(() => {
    if (!live || live.running || !session.data) return;
    const storedAnswer = session.data.messages.find((m) => m.id === live.answer.id);
    if (storedAnswer && storedAnswer.status !== 'streaming') turnStore.forget(sessionId);
    else if (!live.failure && !session.isFetching && refetchedFor.current !== live.answer.id) {
      refetchedFor.current = live.answer.id;
      void queryClient.invalidateQueries({ queryKey: ['session', sessionId] });
    }
  }, [live, session.data, session.isFetching, sessionId, queryClient]);

  const loadOlder = async () => {
    const first = older[0] ?? session.data?.messages[0];
    if (!first) return;
    setLoadingOlder(true);
    try {
      const page = await sessionsApi.get(sessionId, first.seq);
      setOlder((o) => [...page.messages, ...o]);
      setOlderHasMore(page.hasMore);
    } finally {
      setLoadingOlder(false);
    }
  };

  if (session.isError) {
    const notFound = session.error instanceof ApiError && (session.error.status === 404 || session.error.status === 400);
    return (
      <main id="main" className="page narrow">
        <p role="alert">{notFound ? t('chat.notFound') : t('common.error', { message: session.error.message })}</p>
      </main>
    );
  }
  return (
    <main id="main" className="chat-page">
      <ConversationHeader
        sessionId={sessionId}
        title={session.data?.title || (session.isPending ? t('common.loading') : t('sidebar.untitled'))}
        agentId={session.data?.agentId}
        agents={agents}
        running={live?.running === true}
      />
      <Conversation
        sessionKey={sessionId}
        sessionId={sessionId}
        agent={agent}
        agents={agents}
        stored={stored}
        hasOlder={olderHasMore ?? session.data?.hasMore ?? false}
        onLoadOlder={() => void loadOlder()}
        loadingOlder={loadingOlder}
      />
    </main>
  );
}

/** `/` (a new chat with the agent picker) and `/c/:sessionId`. */
export function ChatRoute() {
  const { sessionId } = useParams();
  const { t } = useI18n();
  const agents = useAgents();
  if (agents.isPending) return <div className="page-loading" role="status">{t('common.loading')}</div>;
  if (agents.isError) return <main id="main" className="page narrow"><p role="alert">{t('common.error', { message: agents.error.message })}</p></main>;
  return sessionId ? <SessionChat key={sessionId} sessionId={sessionId} agents={agents.data} /> : <NewChat agents={agents.data} />;
}
