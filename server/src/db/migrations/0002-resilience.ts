import { sql, type Kysely } from 'kysely';

/**
 * Issue 4 (answers that survive): per-agent retry settings, a record of
 * failed upstream attempts (they are not answers, so they do not go in
 * `messages`), and durable idempotency keys for chat requests.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const statements = [
    `ALTER TABLE agents ADD COLUMN retry jsonb`,

    `CREATE TABLE upstream_failures (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      agent_id text NOT NULL,
      endpoint_id uuid,
      position integer NOT NULL,
      provider text NOT NULL,
      model text,
      message_id uuid,
      kind text NOT NULL,
      status integer,
      provider_code text,
      error_code text NOT NULL,
      mid_answer boolean NOT NULL DEFAULT false,
      prompt_tokens integer,
      completion_tokens integer,
      elapsed_ms integer
    )`,
    `CREATE INDEX upstream_failures_endpoint_at_idx ON upstream_failures (endpoint_id, at DESC)`,
    `CREATE INDEX upstream_failures_message_idx ON upstream_failures (message_id)`,

    `CREATE TABLE idempotency_keys (
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      key text NOT NULL,
      request_hash text NOT NULL,
      message_id uuid NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, key)
    )`,
    `CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at)`,
  ];
  for (const statement of statements) await sql.raw(statement).execute(db);
}
