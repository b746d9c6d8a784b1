/**
 * Ranges of the numbers the API takes. Every number in a request schema
 * states both bounds (plugins/validation.ts refuses to compile one that does
 * not), so no value past them reaches the database or rounds in JavaScript.
 */

/** Row ids and cursors over bigint columns: the largest integer JavaScript holds exactly. */
export const MAX_ROW_ID = Number.MAX_SAFE_INTEGER;

/** Ids of a turn's SSE events (`<turnId>:<n>`): a turn never sends this many events. */
export const MAX_EVENT_ID = 2_147_483_647;

/** Milliseconds since the epoch that a JavaScript Date can hold. */
export const MAX_EPOCH_MS = 8_640_000_000_000_000;
