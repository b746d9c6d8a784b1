import { Type, type TProperties, type TSchema } from '@sinclair/typebox';

/**
 * Successful /api JSON bodies keep the original LLMChat envelope
 * `{ success: true, data, timestamp }` so its clients keep working.
 */
export function ok<T>(data: T): { success: true; data: T; timestamp: string } {
  return { success: true, data, timestamp: new Date().toISOString() };
}

export function Envelope<T extends TSchema>(data: T) {
  return Type.Object({ success: Type.Literal(true), data, timestamp: Type.String() });
}

export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    requestId: Type.String(),
    details: Type.Optional(Type.Unknown()),
  }),
});

/**
 * An object whose listed fields are documented and serialized by their
 * schema, while any other field passes through unchanged: for answers that
 * carry more than the reference lists (a response schema drops what it does
 * not declare).
 */
export function OpenObject<T extends TProperties>(properties: T) {
  return Type.Object(properties, { additionalProperties: true });
}

export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** Every error status of an /api route answers the error envelope. */
export const ErrorResponses = { '4xx': ErrorResponse, '5xx': ErrorResponse };

/**
 * A route that answers JSON, or Server-Sent Events when asked to stream.
 * The event stream is written to the socket directly (http/sse.ts): no
 * serializer runs on it; the schema only documents the media type.
 */
export function JsonOrEventStream<T extends TSchema>(json: T, events: string) {
  return {
    description: `JSON, or with \`stream: true\` a text/event-stream: ${events}`,
    content: {
      'application/json': { schema: json },
      'text/event-stream': { schema: Type.String({ description: events }) },
    },
  };
}
