import { Type, type Static } from '@sinclair/typebox';
import { MAX_EPOCH_MS, MAX_EVENT_ID, MAX_ROW_ID } from '../../http/bounds.js';

/** Request and response schemas of the chat routes. Limits live here, once. */

export const LIMITS = {
  messages: 500,
  messageChars: 200_000,
  titleChars: 200,
  commentChars: 2_000,
  variables: 50,
  searchChars: 200,
} as const;

const Uuid = Type.String({ format: 'uuid', description: 'A session or message id' });

const ContentPart = Type.Union([
  Type.Object({ type: Type.Literal('text'), text: Type.String({ maxLength: LIMITS.messageChars }) }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('image_url'), image_url: Type.Object({ url: Type.String({ maxLength: 8_192 }) }, { additionalProperties: false }) }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('file_url'), name: Type.Optional(Type.String({ maxLength: 256 })), url: Type.String({ maxLength: 8_192 }) }, { additionalProperties: false }),
]);

export const ChatMessageInput = Type.Object(
  {
    role: Type.Union([Type.Literal('user'), Type.Literal('assistant'), Type.Literal('system')]),
    content: Type.Union([Type.String({ minLength: 1, maxLength: LIMITS.messageChars }), Type.Array(ContentPart, { minItems: 1, maxItems: 50 })]),
    id: Type.Optional(Type.String({ maxLength: 128 })),
    timestamp: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Number({ minimum: -MAX_EPOCH_MS, maximum: MAX_EPOCH_MS })])),
    metadata: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);

const Variables = Type.Record(Type.String({ maxLength: 128 }), Type.Unknown(), { maxProperties: LIMITS.variables });

const TurnOptionFields = {
  chatId: Type.Optional(Uuid),
  detail: Type.Optional(Type.Boolean()),
  temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
  maxTokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 200_000 })),
  variables: Type.Optional(Variables),
  responseChatItemId: Type.Optional(Type.String({ maxLength: 128 })),
};

export const CompletionBody = Type.Object(
  {
    agentId: Type.String({ minLength: 1, maxLength: 64 }),
    messages: Type.Array(ChatMessageInput, { minItems: 1, maxItems: LIMITS.messages }),
    stream: Type.Optional(Type.Boolean()),
    ...TurnOptionFields,
    /** Legacy LLMChat clients put the options here; top-level fields win. */
    options: Type.Optional(Type.Object(TurnOptionFields, { additionalProperties: false })),
    retainDatasetCite: Type.Optional(Type.Boolean()),
    appId: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type CompletionBody = Static<typeof CompletionBody>;

export const StopBody = Type.Object(
  { messageId: Type.Optional(Uuid), chatId: Type.Optional(Uuid) },
  { additionalProperties: false, minProperties: 1 },
);

export const InitQuery = Type.Object(
  { appId: Type.String({ minLength: 1, maxLength: 64 }), chatId: Type.Optional(Type.String({ maxLength: 128 })), stream: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const HistoryListQuery = Type.Object(
  {
    agentId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    page: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
  },
  { additionalProperties: false },
);

export const ChatIdParams = Type.Object({ chatId: Uuid }, { additionalProperties: false });

export const HistoryDeleteAllQuery = Type.Object({ agentId: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });

/** Continue a stopped answer: the last of the session, or the one named by `dataId` (which must be the last). */
export const ContinueBody = Type.Object(
  {
    dataId: Type.Optional(Uuid),
    stream: Type.Optional(Type.Boolean()),
    detail: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const RetryBody = Type.Object(
  {
    agentId: Type.Optional(Type.String({ maxLength: 64 })),
    dataId: Type.Optional(Uuid),
    stream: Type.Optional(Type.Boolean()),
    detail: Type.Optional(Type.Boolean()),
    /** Edit and resend: the last question's new text; the last answer is replaced by the answer to it. */
    content: Type.Optional(Type.String({ minLength: 1, maxLength: LIMITS.messageChars })),
  },
  { additionalProperties: false },
);

export const FeedbackBody = Type.Object(
  {
    /** The assistant message; `dataId` is the original LLMChat name for it. */
    messageId: Type.Optional(Uuid),
    dataId: Type.Optional(Uuid),
    agentId: Type.Optional(Type.String({ maxLength: 64 })),
    chatId: Type.Optional(Type.String({ maxLength: 128 })),
    rating: Type.Optional(Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Null()])),
    userGoodFeedback: Type.Optional(Type.String({ maxLength: 64 })),
    userBadFeedback: Type.Optional(Type.String({ maxLength: LIMITS.commentChars })),
    comment: Type.Optional(Type.String({ maxLength: LIMITS.commentChars })),
  },
  { additionalProperties: false },
);
export type FeedbackBody = Static<typeof FeedbackBody>;

export const SessionListQuery = Type.Object(
  {
    agentId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    archived: Type.Optional(Type.Union([Type.Literal('exclude'), Type.Literal('only'), Type.Literal('include')])),
    hidden: Type.Optional(
      Type.Union([Type.Literal('exclude'), Type.Literal('only'), Type.Literal('include')], {
        description: 'Sessions of /v1 calls (hidden from the chat list unless the call sent X-LLMChat-Session: keep); default exclude',
      }),
    ),
    page: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  },
  { additionalProperties: false },
);

export const SessionCreateBody = Type.Object(
  { agentId: Type.String({ minLength: 1, maxLength: 64 }), title: Type.Optional(Type.String({ maxLength: LIMITS.titleChars })) },
  { additionalProperties: false },
);

export const SessionParams = Type.Object({ id: Uuid }, { additionalProperties: false });

export const SessionMessagesQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
    before: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ROW_ID, description: 'Page backwards: messages with seq below this' })),
  },
  { additionalProperties: false },
);

/** Shows this version of its message (answer versions). */
export const VersionBody = Type.Object({ messageId: Uuid }, { additionalProperties: false });

export const AgentSwitchBody = Type.Object({ agentId: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false });

export const TitleBody = Type.Object({ title: Type.String({ minLength: 1, maxLength: LIMITS.titleChars }) }, { additionalProperties: false });

export const SearchQuery = Type.Object(
  { q: Type.String({ minLength: 1, maxLength: LIMITS.searchChars }), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })) },
  { additionalProperties: false },
);

export const ResumeQuery = Type.Object({ messageId: Uuid, lastEventId: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_EVENT_ID, description: 'Replay the events after this id' })) }, { additionalProperties: false });
