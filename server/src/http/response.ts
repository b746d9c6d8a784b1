import { Type, type TSchema } from '@sinclair/typebox';

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
