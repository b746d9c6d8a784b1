import { Type } from '@sinclair/typebox';
import { Envelope, ErrorResponses, Nullable } from '../../http/response.js';

const Uuid = Type.String({ format: 'uuid' });

export const SessionParams = Type.Object({ id: Uuid }, { additionalProperties: false });
export const ShareParams = Type.Object({ id: Uuid, shareId: Uuid }, { additionalProperties: false });
/** The token as the link carries it; anything else is refused before a lookup. */
export const TokenParams = Type.Object({ token: Type.String({ minLength: 1, maxLength: 100, description: 'The share link token' }) }, { additionalProperties: false });

export const ExportQuery = Type.Object(
  { format: Type.Union([Type.Literal('markdown'), Type.Literal('json')], { description: 'Markdown (text/markdown) or JSON (llmchat.conversation.v1)' }) },
  { additionalProperties: false },
);

const ShareLink = Type.Object({ id: Type.String(), createdAt: Type.String(), revokedAt: Nullable(Type.String()) });

export const ExportResponses = {
  200: {
    description: 'The conversation as a file (Content-Disposition: attachment)',
    content: { 'text/markdown': { schema: Type.String() }, 'application/json': { schema: Type.String() } },
  },
  ...ErrorResponses,
};
export const ShareCreatedResponses = {
  201: Envelope(Type.Object({ id: Type.String(), token: Type.String({ description: 'Shown once: only its hash is stored' }), path: Type.String(), createdAt: Type.String(), revokedAt: Nullable(Type.String()) })),
  ...ErrorResponses,
};
export const ShareListResponses = { 200: Envelope(Type.Array(ShareLink)), ...ErrorResponses };
export const ShareResponses = { 200: Envelope(ShareLink), ...ErrorResponses };
export const SharedViewResponses = {
  200: Envelope(
    Type.Object({
      title: Type.String(),
      sharedAt: Type.String(),
      messages: Type.Array(Type.Object({ role: Type.String(), content: Type.String(), status: Type.String(), agentName: Nullable(Type.String()), createdAt: Type.String() })),
    }),
  ),
  ...ErrorResponses,
};
