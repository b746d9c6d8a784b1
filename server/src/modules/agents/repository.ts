import { sql, type Kysely } from 'kysely';
import type { AgentEndpointRow, AgentRow, ContinuationKind, Database, EndpointTimeouts, ProviderKind } from '../../db/schema.js';
import type { AgentDefinition } from './types.js';

/** SQL for agents and their endpoints. Callers pass the writer or a transaction. */

export interface StoredAgent {
  row: AgentRow;
  /** Ordered by position; 0 is the primary. */
  endpoints: AgentEndpointRow[];
}

/** An endpoint row to write; the key is already sealed (or null). */
export interface EndpointValues {
  provider: ProviderKind;
  url: string;
  apiKeyEncrypted: string | null;
  appId: string | undefined;
  model: string | undefined;
  timeouts: EndpointTimeouts | undefined;
  continuation: ContinuationKind | undefined;
}

type Db = Kysely<Database>;

function json(value: unknown): string {
  return JSON.stringify(value);
}

function agentValues(definition: AgentDefinition, simulated: boolean) {
  return {
    name: definition.name,
    description: definition.description,
    max_tokens: definition.maxTokens ?? null,
    temperature: definition.temperature ?? null,
    system_prompt: definition.systemPrompt ?? null,
    welcome_text: definition.welcomeText ?? null,
    capabilities: json(definition.capabilities),
    rate_limit: definition.rateLimit ? json(definition.rateLimit) : null,
    retry: definition.retry ? json(definition.retry) : null,
    hedge: definition.hedge ? json(definition.hedge) : null,
    content_policy: definition.contentPolicy === 'other-model' ? ('other-model' as const) : null,
    features: json(definition.features),
    is_active: definition.isActive,
    simulated,
  };
}

function endpointValues(agentId: string, position: number, e: EndpointValues) {
  return {
    agent_id: agentId,
    position,
    provider: e.provider,
    url: e.url,
    api_key_encrypted: e.apiKeyEncrypted,
    app_id: e.appId ?? null,
    model: e.model ?? null,
    timeouts: e.timeouts ? json(e.timeouts) : null,
    continuation: e.continuation ?? null,
  };
}

function group(rows: AgentRow[], endpoints: AgentEndpointRow[]): StoredAgent[] {
  const byAgent = new Map<string, AgentEndpointRow[]>();
  for (const e of endpoints) {
    let list = byAgent.get(e.agent_id);
    if (!list) byAgent.set(e.agent_id, (list = []));
    list.push(e);
  }
  return rows.map((row) => ({ row, endpoints: (byAgent.get(row.id) ?? []).sort((a, b) => a.position - b.position) }));
}

export async function listAgents(db: Db): Promise<StoredAgent[]> {
  const [rows, endpoints] = await Promise.all([
    db.selectFrom('agents').selectAll().orderBy('id').execute(),
    db.selectFrom('agent_endpoints').selectAll().orderBy('agent_id').orderBy('position').execute(),
  ]);
  return group(rows, endpoints);
}

/** One agent; `forUpdate` locks its row until the transaction ends. */
export async function findAgent(db: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<StoredAgent | undefined> {
  let query = db.selectFrom('agents').selectAll().where('id', '=', id);
  if (options.forUpdate) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  if (!row) return undefined;
  const endpoints = await db.selectFrom('agent_endpoints').selectAll().where('agent_id', '=', id).orderBy('position').execute();
  return { row, endpoints };
}

/** Inserts an agent and its endpoints; false when the id is taken. */
export async function insertAgent(trx: Db, definition: AgentDefinition, endpoints: EndpointValues[], simulated = false): Promise<boolean> {
  const inserted = await trx
    .insertInto('agents')
    .values({ id: definition.id, ...agentValues(definition, simulated), updated_at: sql<Date>`now()` })
    .onConflict((oc) => oc.column('id').doNothing())
    .returning('id')
    .executeTakeFirst();
  if (!inserted) return false;
  if (endpoints.length > 0) {
    await trx.insertInto('agent_endpoints').values(endpoints.map((e, i) => endpointValues(definition.id, i, e))).execute();
  }
  return true;
}

/**
 * Rewrites an agent and its endpoints. Endpoints are updated in place by
 * position so the primary keeps its id (messages refer to it); extra
 * positions are inserted, missing ones deleted.
 */
export async function replaceAgent(trx: Db, current: StoredAgent, definition: AgentDefinition, endpoints: EndpointValues[], simulated: boolean): Promise<void> {
  const id = current.row.id;
  await trx
    .updateTable('agents')
    .set({ ...agentValues(definition, simulated), updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .execute();
  const existing = new Map(current.endpoints.map((e) => [e.position, e]));
  for (const [position, e] of endpoints.entries()) {
    const values = endpointValues(id, position, e);
    const row = existing.get(position);
    if (row) await trx.updateTable('agent_endpoints').set(values).where('id', '=', row.id).execute();
    else await trx.insertInto('agent_endpoints').values(values).execute();
  }
  await trx.deleteFrom('agent_endpoints').where('agent_id', '=', id).where('position', '>=', endpoints.length).execute();
}

export async function deleteAgent(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('agents').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export async function setAgentActive(db: Db, id: string, active: boolean): Promise<boolean> {
  const result = await db.updateTable('agents').set({ is_active: active, updated_at: sql<Date>`now()` }).where('id', '=', id).executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Points the primary endpoint of a simulated agent at a new URL; false when it is not (or no longer) simulated. */
export async function moveSimulatedAgent(db: Db, id: string, url: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('agents').select(['id', 'simulated']).where('id', '=', id).forUpdate().executeTakeFirst();
    if (!row?.simulated) return false;
    await trx.updateTable('agent_endpoints').set({ url }).where('agent_id', '=', id).where('position', '=', 0).execute();
    await trx.updateTable('agents').set({ updated_at: sql<Date>`now()` }).where('id', '=', id).execute();
    return true;
  });
}

export async function countAgents(db: Db): Promise<number> {
  const row = await db.selectFrom('agents').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}
