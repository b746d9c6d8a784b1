import { sql, type Kysely } from 'kysely';

/**
 * The initial schema. Plain SQL so it reads the same on PostgreSQL and PGlite.
 * Forward-only: a later change is a new migration, never an edit here.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const statements = [
    `CREATE TABLE users (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      username text NOT NULL,
      display_name text,
      email text,
      password_hash text NOT NULL,
      role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
      status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
      failed_logins integer NOT NULL DEFAULT 0,
      locked_until timestamptz,
      daily_token_quota integer,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      last_login_at timestamptz,
      password_changed_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE UNIQUE INDEX users_username_key ON users (lower(username))`,

    `CREATE TABLE refresh_tokens (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      family_id uuid NOT NULL,
      token_hash text NOT NULL UNIQUE,
      expires_at timestamptz NOT NULL,
      rotated_at timestamptz,
      revoked_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      user_agent text,
      ip text
    )`,
    `CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id)`,
    `CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id)`,

    `CREATE TABLE api_keys (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      name text NOT NULL,
      prefix text NOT NULL,
      key_hash text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(),
      last_used_at timestamptz,
      expires_at timestamptz,
      revoked_at timestamptz
    )`,
    `CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at DESC)`,

    `CREATE TABLE agents (
      id text PRIMARY KEY,
      name text NOT NULL,
      description text NOT NULL DEFAULT '',
      max_tokens integer,
      temperature double precision,
      system_prompt text,
      welcome_text text,
      capabilities jsonb NOT NULL DEFAULT '[]'::jsonb,
      rate_limit jsonb,
      features jsonb NOT NULL DEFAULT '{}'::jsonb,
      is_active boolean NOT NULL DEFAULT true,
      simulated boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`,

    `CREATE TABLE agent_endpoints (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      agent_id text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
      position integer NOT NULL,
      provider text NOT NULL CHECK (provider IN ('openai', 'fastgpt', 'anthropic', 'dify')),
      url text NOT NULL,
      api_key_encrypted text,
      app_id text,
      model text,
      timeouts jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (agent_id, position)
    )`,

    `CREATE TABLE chat_sessions (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      agent_id text NOT NULL,
      title text NOT NULL DEFAULT '',
      provider_chat_id text,
      message_count integer NOT NULL DEFAULT 0,
      archived_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE INDEX chat_sessions_user_recent_idx ON chat_sessions (user_id, updated_at DESC, id DESC)`,
    `CREATE INDEX chat_sessions_user_agent_recent_idx ON chat_sessions (user_id, agent_id, updated_at DESC, id DESC)`,
    `CREATE INDEX chat_sessions_title_fts_idx ON chat_sessions USING gin (to_tsvector('simple', title))`,

    `CREATE TABLE messages (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      seq bigint GENERATED ALWAYS AS IDENTITY,
      session_id uuid NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      role text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
      content text NOT NULL DEFAULT '',
      reasoning text,
      status text NOT NULL DEFAULT 'complete' CHECK (status IN ('streaming', 'complete', 'stopped', 'error')),
      error_code text,
      error_message text,
      agent_id text,
      provider text,
      model text,
      endpoint_id uuid,
      prompt_tokens integer,
      completion_tokens integer,
      total_tokens integer,
      first_token_ms integer,
      total_ms integer,
      provider_chat_id text,
      provider_message_id text,
      interactive jsonb,
      metadata jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      completed_at timestamptz
    )`,
    `CREATE INDEX messages_session_seq_idx ON messages (session_id, seq)`,
    `CREATE INDEX messages_streaming_idx ON messages (updated_at) WHERE status = 'streaming'`,
    `CREATE INDEX messages_content_fts_idx ON messages USING gin (to_tsvector('simple', content))`,

    `CREATE TABLE feedback (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      message_id uuid NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      rating text NOT NULL CHECK (rating IN ('up', 'down')),
      comment text,
      forwarded boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (message_id, user_id)
    )`,

    `CREATE TABLE audit_log (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      actor_id uuid,
      actor_username text,
      action text NOT NULL,
      target_type text,
      target_id text,
      success boolean NOT NULL DEFAULT true,
      ip text,
      detail jsonb
    )`,
    `CREATE INDEX audit_log_at_idx ON audit_log (at DESC)`,
    `CREATE INDEX audit_log_action_at_idx ON audit_log (action, at DESC)`,
    `CREATE INDEX audit_log_actor_at_idx ON audit_log (actor_id, at DESC)`,
  ];
  for (const statement of statements) await sql.raw(statement).execute(db);
}
