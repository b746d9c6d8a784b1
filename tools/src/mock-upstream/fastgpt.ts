/**
 * FastGPT app API: OpenAI-shaped chunks, plus (with `detail`) named events for
 * flow-node status, flow responses and interactive nodes. The mock remembers
 * the chats it has seen (bounded) so the history and feedback APIs have data.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { AnswerDefaults, AnswerPlan } from './answer.js';
import type { ChatProtocol, ProviderModule, RouteContext, StreamScript, TurnRequest } from './protocol.js';
import {
  BAD_KEY,
  ErrorReply,
  IN_STREAM_ERROR_MESSAGE,
  MALFORMED_JSON,
  bearerToken,
  isRecord,
  quote,
  sseData,
  sseEvent,
  summariseMessages,
} from './protocol.js';
import { runTurn } from './turn.js';
import { openAIPartNotes, withNotes } from './attachments.js';

export const FASTGPT_APP_ID = 'mock-app';
export const FASTGPT_WELCOME_TEXT = 'Hello from the mock FastGPT app.';
const AI_NODE = 'AI 对话';
const MAX_CHATS = 1000;
const MAX_RECORDS_PER_CHAT = 200;

interface FastGptTurn extends TurnRequest {
  chatId: string | undefined;
  detail: boolean;
  variables: Record<string, unknown>;
  responseChatItemId: string | undefined;
  startedAt: number;
}

interface ChatRecord {
  _id: string;
  dataId: string;
  obj: 'Human' | 'AI';
  value: { type: 'text'; text: { content: string } }[];
  time: string;
  userGoodFeedback?: string;
  userBadFeedback?: string;
}

interface StoredChat {
  chatId: string;
  appId: string;
  title: string;
  customTitle: string;
  top: boolean;
  updateTime: string;
  variables: Record<string, unknown>;
  records: ChatRecord[];
}

function statusText(status: number): string {
  switch (status) {
    case 401:
      return 'unAuthApiKey';
    case 403:
      return 'unAuthorization';
    case 429:
      return 'tooManyRequest';
    default:
      return '';
  }
}

function errorBody(reply: ErrorReply): unknown {
  return { code: reply.status, statusText: reply.code ?? statusText(reply.status), message: reply.message, data: null };
}

function authenticate(headers: IncomingHttpHeaders): ErrorReply | undefined {
  const key = bearerToken(headers);
  if (key === undefined) return new ErrorReply(401, '无权操作 (missing API key)', 'unAuthorization');
  if (key === BAD_KEY) return new ErrorReply(401, 'Api Key 不合法', 'unAuthApiKey');
  return undefined;
}

function parseTurn(body: unknown): FastGptTurn | ErrorReply {
  if (!isRecord(body)) return new ErrorReply(400, 'The request body must be a JSON object.');
  const summary = summariseMessages(body.messages, ['system']);
  if (typeof summary === 'string') return new ErrorReply(400, summary);
  const optionalString = (value: unknown): string | undefined =>
    typeof value === 'string' && value !== '' ? value : undefined;
  return {
    ...summary,
    userText: withNotes(summary.userText, openAIPartNotes(summary.userContent)),
    stream: body.stream === true,
    model: '',
    chatId: optionalString(body.chatId),
    detail: body.detail === true,
    variables: isRecord(body.variables) ? body.variables : {},
    responseChatItemId: optionalString(body.responseChatItemId),
    startedAt: performance.now(),
  };
}

function interactiveNode(kind: 'select' | 'form'): { name: string; moduleType: string; payload: unknown } {
  if (kind === 'select') {
    return {
      name: '用户选择',
      moduleType: 'userSelect',
      payload: {
        interactive: {
          type: 'userSelect',
          params: {
            description: 'Please choose how to continue.',
            userSelectOptions: [
              { value: 'A', key: 'a' },
              { value: 'B', key: 'b' },
              { value: 'C', key: 'c' },
            ],
          },
        },
      },
    };
  }
  return {
    name: '表单输入',
    moduleType: 'formInput',
    payload: {
      interactive: {
        type: 'userInput',
        params: {
          description: 'Please fill in the form.',
          inputForm: [
            { type: 'input', key: 'name', label: 'Name', description: '', valueType: 'string', defaultValue: '', required: true },
            { type: 'input', key: 'company', label: 'Company', description: '', valueType: 'string', defaultValue: '', required: false },
          ],
        },
      },
    },
  };
}

function responseData(turn: FastGptTurn, plan: AnswerPlan, completionTokens: number): unknown[] {
  const runningTime = Math.round(performance.now() - turn.startedAt) / 1000;
  const modules: unknown[] = [
    {
      id: 'mock-ai-node',
      nodeId: 'mock-ai-node',
      moduleName: AI_NODE,
      moduleType: 'chatNode',
      runningTime,
      model: 'mock-model',
      query: plan.question,
      tokens: plan.promptTokens + completionTokens,
      inputTokens: plan.promptTokens,
      outputTokens: completionTokens,
      totalPoints: 0,
      textOutput: plan.text,
    },
  ];
  if (plan.fault.interactive !== undefined) {
    const node = interactiveNode(plan.fault.interactive);
    modules.push({ id: 'mock-interactive-node', nodeId: 'mock-interactive-node', moduleName: node.name, moduleType: node.moduleType, runningTime: 0, totalPoints: 0 });
  }
  return modules;
}

function streamScript(turn: FastGptTurn, plan: AnswerPlan): StreamScript {
  const chunk = (delta: string, finish: string): string =>
    `{"id":"","object":"","created":0,"model":"","choices":[{"delta":${delta},"index":0,"finish_reason":${finish}}]}`;
  const answer = (json: string): string => (turn.detail ? sseEvent('answer', json) : sseData(json));
  const nodeStatus = (name: string): string => sseEvent('flowNodeStatus', `{"status":"running","name":${quote(name)}}`);
  return {
    headers: {
      'content-type': 'text/event-stream;charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    },
    open: turn.detail ? nodeStatus(AI_NODE) : '',
    reasoning: (piece) => answer(chunk(`{"role":"assistant","reasoning_content":${quote(piece)}}`, 'null')),
    text: (piece) => answer(chunk(`{"role":"assistant","content":${quote(piece)}}`, 'null')),
    malformed: () => answer(MALFORMED_JSON),
    error: (code) => sseEvent('error', JSON.stringify({ message: IN_STREAM_ERROR_MESSAGE, statusText: code ?? '' })),
    end: (sent, withMarker) => {
      let frames = '';
      if (turn.detail && plan.fault.interactive !== undefined) {
        const node = interactiveNode(plan.fault.interactive);
        frames += nodeStatus(node.name) + sseEvent('interactive', JSON.stringify(node.payload));
      }
      frames += answer(chunk('{}', '"stop"'));
      if (turn.detail) frames += sseEvent('flowResponses', JSON.stringify(responseData(turn, plan, sent)));
      if (withMarker) frames += answer('[DONE]');
      return frames;
    },
  };
}

function blockingBody(turn: FastGptTurn, plan: AnswerPlan): unknown {
  const body: Record<string, unknown> = {
    id: turn.chatId ?? '',
    model: '',
    usage: {
      prompt_tokens: plan.promptTokens,
      completion_tokens: plan.completionTokens,
      total_tokens: plan.promptTokens + plan.completionTokens,
    },
    choices: [{ message: { role: 'assistant', content: plan.text }, finish_reason: 'stop', index: 0 }],
  };
  if (turn.detail) {
    body.responseData = responseData(turn, plan, plan.completionTokens);
    body.newVariables = turn.variables;
  }
  return body;
}

/** The chats the mock has answered, oldest first, capped. */
class ChatStore {
  private readonly chats = new Map<string, StoredChat>();

  remember(turn: FastGptTurn, plan: AnswerPlan): void {
    if (turn.chatId === undefined) return;
    const now = new Date().toISOString();
    let chat = this.chats.get(turn.chatId);
    if (chat === undefined) {
      chat = {
        chatId: turn.chatId,
        appId: FASTGPT_APP_ID,
        title: plan.question.slice(0, 20) || 'New chat',
        customTitle: '',
        top: false,
        updateTime: now,
        variables: turn.variables,
        records: [],
      };
      if (this.chats.size >= MAX_CHATS) {
        const oldest = this.chats.keys().next();
        if (oldest.done !== true) this.chats.delete(oldest.value);
      }
    } else {
      this.chats.delete(turn.chatId);
    }
    // Re-inserting keeps the Map ordered by last update.
    this.chats.set(turn.chatId, chat);
    chat.updateTime = now;
    const record = (obj: 'Human' | 'AI', dataId: string, content: string): ChatRecord => ({
      _id: randomUUID(),
      dataId,
      obj,
      value: [{ type: 'text', text: { content } }],
      time: now,
    });
    chat.records.push(
      record('Human', randomUUID(), plan.question),
      record('AI', turn.responseChatItemId ?? randomUUID(), plan.text),
    );
    if (chat.records.length > MAX_RECORDS_PER_CHAT) chat.records.splice(0, chat.records.length - MAX_RECORDS_PER_CHAT);
  }

  get(chatId: string): StoredChat | undefined {
    return this.chats.get(chatId);
  }

  /** Newest first. */
  list(): StoredChat[] {
    return [...this.chats.values()].reverse();
  }
}

const ok = (data: unknown): unknown => ({ code: 200, statusText: '', message: '', data });

function page(body: Record<string, unknown>): { offset: number; pageSize: number } {
  const int = (value: unknown, fallback: number): number =>
    typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : fallback;
  return { offset: int(body.offset, 0), pageSize: int(body.pageSize, 20) };
}

export function createFastGptProvider(defaults: AnswerDefaults): ProviderModule {
  const store = new ChatStore();
  const protocol: ChatProtocol<FastGptTurn> = {
    parseTurn,
    streamScript,
    blockingBody,
    onTurnStart: (turn, plan) => {
      store.remember(turn, plan);
      return undefined;
    },
  };
  const badRequest = (ctx: RouteContext, message: string): void =>
    ctx.exchange.json(400, errorBody(new ErrorReply(400, message)));
  const bodyOf = (ctx: RouteContext): Record<string, unknown> => (isRecord(ctx.body) ? ctx.body : {});

  const provider: ProviderModule = {
    provider: 'fastgpt',
    authenticate,
    errorBody,
    routes: [
      { method: 'POST', path: '/api/v1/chat/completions', chat: true, handle: (ctx) => runTurn(ctx, provider, protocol, defaults) },
      {
        method: 'GET',
        path: '/api/core/chat/init',
        chat: false,
        handle: (ctx) => {
          const appId = ctx.query.get('appId');
          if (appId === null || appId === '') {
            badRequest(ctx, 'appId is required');
            return;
          }
          const chatId = ctx.query.get('chatId') ?? '';
          const chat = store.get(chatId);
          ctx.exchange.json(
            200,
            ok({
              chatId,
              appId,
              title: chat?.title ?? 'New chat',
              userAvatar: '',
              variables: chat?.variables ?? {},
              app: {
                chatConfig: { welcomeText: FASTGPT_WELCOME_TEXT, variables: [], questionGuide: false },
                chatModels: ['mock-model'],
                name: 'Mock FastGPT app',
                avatar: '',
                intro: '',
                type: 'advanced',
                pluginInputs: [],
              },
            }),
          );
        },
      },
      {
        method: 'POST',
        path: '/api/core/chat/feedback/updateUserFeedback',
        chat: false,
        handle: (ctx) => {
          const body = bodyOf(ctx);
          if (typeof body.chatId !== 'string' || typeof body.dataId !== 'string') {
            badRequest(ctx, 'chatId and dataId are required');
            return;
          }
          const dataId = body.dataId;
          const record = store.get(body.chatId)?.records.find((r) => r.dataId === dataId);
          if (record !== undefined) {
            const feedback = (value: unknown): string | undefined =>
              typeof value === 'string' && value !== '' ? value : undefined;
            record.userGoodFeedback = feedback(body.userGoodFeedback);
            record.userBadFeedback = feedback(body.userBadFeedback);
          }
          ctx.exchange.json(200, ok(null));
        },
      },
      {
        method: 'POST',
        path: '/api/core/chat/getHistories',
        chat: false,
        handle: (ctx) => {
          const { offset, pageSize } = page(bodyOf(ctx));
          const chats = store.list();
          const list = chats.slice(offset, offset + pageSize).map((chat) => ({
            chatId: chat.chatId,
            updateTime: chat.updateTime,
            appId: chat.appId,
            customTitle: chat.customTitle,
            title: chat.title,
            top: chat.top,
          }));
          ctx.exchange.json(200, ok({ list, total: chats.length }));
        },
      },
      {
        method: 'POST',
        path: '/api/core/chat/getPaginationRecords',
        chat: false,
        handle: (ctx) => {
          const body = bodyOf(ctx);
          if (typeof body.chatId !== 'string') {
            badRequest(ctx, 'chatId is required');
            return;
          }
          const { offset, pageSize } = page(body);
          const records = store.get(body.chatId)?.records ?? [];
          ctx.exchange.json(200, ok({ list: records.slice(offset, offset + pageSize), total: records.length }));
        },
      },
    ],
  };
  return provider;
}
