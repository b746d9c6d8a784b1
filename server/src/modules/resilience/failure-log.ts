import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../../db/schema.js';

/** One failed upstream call: counted as a failed attempt, never as an answer. */
export interface FailedAttempt {
  agentId: string;
  endpointId: string;
  position: number;
  provider: string;
  model: string | undefined;
  turnId: string;
  kind: string;
  status: number | undefined;
  providerCode: string | undefined;
  /** The client-facing code this failure maps to. */
  errorCode: string;
  /** The failure came after text had reached the client. */
  midAnswer: boolean;
  /** What went wrong, as an admin sees it (the provider's own text, the endpoint's key redacted). */
  detail: string | undefined;
  promptTokens: number | undefined;
  completionTokens: number | undefined;
  elapsedMs: number;
}

export interface EndpointFailureCount {
  endpointId: string;
  failures: number;
  lastFailureAt: Date | null;
}

export interface FailureLog {
  /** Records a failed attempt in the background; a database hiccup only logs. */
  record(attempt: FailedAttempt): void;
  /** Failed attempts per endpoint since `since`. */
  countsSince(endpointIds: readonly string[], since: Date): Promise<EndpointFailureCount[]>;
  /**
   * Deletes at most `limit` failed attempts recorded before `cutoff` (the
   * retention sweep); resolves to how many. Rows another caller is deleting
   * at the same moment are skipped, so instances may sweep at once.
   */
  deleteBefore(cutoff: Date, limit: number): Promise<number>;
  /** Resolves once every recording started so far has been written (tests, shutdown). */
  settled(): Promise<void>;
}

/**
 * Failed upstream attempts go to `upstream_failures`, one row each (they are
 * rare, so a row per failure costs nothing on the hot path): the agent,
 * endpoint, model, what went wrong, and the usage the failed call reported.
 * The answer itself (`messages`) records only the call that served it.
 */
export function createFailureLog(db: Kysely<Database>, logger: Logger): FailureLog {
  const pending = new Set<Promise<void>>();
  return {
    record(a) {
      const write = db
        .insertInto('upstream_failures')
        .values({
          agent_id: a.agentId,
          endpoint_id: a.endpointId,
          position: a.position,
          provider: a.provider,
          model: a.model ?? null,
          message_id: a.turnId,
          kind: a.kind,
          status: a.status ?? null,
          provider_code: a.providerCode?.slice(0, 200) ?? null,
          error_code: a.errorCode,
          mid_answer: a.midAnswer,
          prompt_tokens: a.promptTokens ?? null,
          completion_tokens: a.completionTokens ?? null,
          elapsed_ms: a.elapsedMs,
          detail: a.detail?.slice(0, 1000) ?? null,
        })
        .execute()
        .then(
          () => undefined,
          (err: unknown) => logger.warn({ err: (err as Error).message, endpointId: a.endpointId }, 'could not record a failed upstream attempt'),
        );
      pending.add(write);
      void write.finally(() => pending.delete(write));
    },

    async countsSince(endpointIds, since) {
      if (endpointIds.length === 0) return [];
      const rows = await db
        .selectFrom('upstream_failures')
        .select((eb) => ['endpoint_id', eb.fn.countAll<number>().as('n'), eb.fn.max('at').as('last')])
        .where('endpoint_id', 'in', [...endpointIds])
        .where('at', '>=', since)
        .groupBy('endpoint_id')
        .execute();
      const byId = new Map(rows.map((r) => [r.endpoint_id, r]));
      return endpointIds.map((id) => {
        const row = byId.get(id);
        return { endpointId: id, failures: Number(row?.n ?? 0), lastFailureAt: row?.last ? new Date(row.last) : null };
      });
    },

    async deleteBefore(cutoff, limit) {
      const result = await db
        .deleteFrom('upstream_failures')
        .where('id', 'in', (eb) => eb.selectFrom('upstream_failures as old').select('old.id').where('old.at', '<', cutoff).limit(limit).forUpdate().skipLocked())
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },

    async settled() {
      await Promise.all([...pending]);
    },
  };
}
