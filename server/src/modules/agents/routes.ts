import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { AppError } from '../../errors.js';
import { Envelope, ErrorResponse, ok } from '../../http/response.js';
import { actsAsAdmin, principalOf } from '../../plugins/authenticate.js';
import { endpointHealth } from '../resilience/endpoint-health.js';
import { agentView, statusView } from './agent-views.js';
import {
  AgentConfigCheckView,
  AgentInputSchema,
  AgentParams,
  AgentPatchSchema,
  AgentsDocumentSchema,
  AgentStatusView,
  AgentValidationView,
  AgentView,
  DeletedView,
  ImportView,
  ListQuery,
  ReloadView,
} from './schema.js';
import type { Actor } from './types.js';

const Errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };
const AgentResponse = { 200: Envelope(AgentView), ...Errors };
/** Bodiless actions accept no body, `null` or `{}`. */
const NoBody = Type.Union([Type.Null(), Type.Object({}, { additionalProperties: false })]);
/** Routes without options refuse unknown query parameters (there is no `?includeSecrets`). */
const NoQuery = Type.Object({}, { additionalProperties: false });

function actorOf(request: FastifyRequest): Actor {
  return { ...principalOf(request), ip: request.ip };
}

function isAdmin(request: FastifyRequest): boolean {
  return actsAsAdmin(request.principal);
}

/**
 * /api/agents. Signed-in users list and read agents (safe fields only);
 * admins also see configuration (never a key: `hasApiKey` instead) and
 * change agents. Every change is audited and reaches every instance.
 */
export const agentRoutes: FastifyPluginAsyncTypebox<RouteOptions> = (app, { deps, guards }) => {
  const { agents } = deps;
  const user = { onRequest: guards.requireUser };
  const admin = { onRequest: guards.requireAdmin };
  app.addHook('onSend', async (_request, reply) => {
    void reply.header('cache-control', 'no-store');
  });

  // ---- signed-in users ----

  app.get('/', { ...user, schema: { querystring: ListQuery, response: { 200: Envelope(Type.Array(AgentView)), ...Errors } } }, (request) => {
    const adminView = isAdmin(request);
    const includeInactive = adminView && request.query.includeInactive === true;
    return ok(agents.list({ includeInactive }).map((a) => agentView(a, adminView)));
  });

  app.get('/:id', { ...user, schema: { params: AgentParams, querystring: NoQuery, response: AgentResponse } }, (request) => {
    const resolved = agents.find(request.params.id);
    if (!resolved) throw new AppError('AGENT_NOT_FOUND', `Agent "${request.params.id}" was not found`);
    return ok(agentView(resolved.agent, isAdmin(request)));
  });

  app.get('/:id/status', { ...user, schema: { params: AgentParams, querystring: NoQuery, response: { 200: Envelope(AgentStatusView), ...Errors } } }, async (request) => {
    const resolved = agents.find(request.params.id);
    if (!resolved) throw new AppError('AGENT_NOT_FOUND', `Agent "${request.params.id}" was not found`);
    const admin = isAdmin(request);
    const health = admin ? await endpointHealth(deps, resolved.endpoints) : undefined;
    return ok(statusView(resolved, admin, health));
  });

  // ---- admins ----

  app.post('/', { ...admin, schema: { body: AgentInputSchema, response: { 201: Envelope(AgentView), ...Errors } } }, async (request, reply) => {
    const agent = await agents.create(request.body, actorOf(request));
    return reply.status(201).send(ok(agentView(agent, true)));
  });

  const update = { ...admin, schema: { params: AgentParams, body: AgentPatchSchema, response: AgentResponse } };
  app.put('/:id', update, async (request) => ok(agentView(await agents.update(request.params.id, request.body, actorOf(request)), true)));
  app.patch('/:id', update, async (request) => ok(agentView(await agents.update(request.params.id, request.body, actorOf(request)), true)));

  app.delete('/:id', { ...admin, schema: { params: AgentParams, body: NoBody, response: { 200: Envelope(DeletedView), ...Errors } } }, async (request) => {
    await agents.remove(request.params.id, actorOf(request));
    return ok({ id: request.params.id, deleted: true as const });
  });

  const toggle = { ...admin, schema: { params: AgentParams, body: NoBody, response: AgentResponse } };
  app.post('/:id/enable', toggle, async (request) => ok(agentView(await agents.setActive(request.params.id, true, actorOf(request)), true)));
  app.post('/:id/disable', toggle, async (request) => ok(agentView(await agents.setActive(request.params.id, false, actorOf(request)), true)));

  app.post('/reload', { ...admin, schema: { body: NoBody, response: { 200: Envelope(ReloadView), ...Errors } } }, async (request) => {
    return ok(await agents.reload(actorOf(request)));
  });

  // The schema documents the body; the service checks it and answers 422 listing every problem.
  app.post('/import', { ...admin, attachValidation: true, schema: { body: AgentsDocumentSchema, response: { 200: Envelope(ImportView), ...Errors } } }, async (request) => {
    const result = await agents.importDocument(request.body, actorOf(request));
    return ok({ imported: result.imported, created: result.created, updated: result.updated, agents: result.agents.map((a) => agentView(a, true)) });
  });

  app.post('/:id/validate', { ...admin, schema: { params: AgentParams, body: NoBody, response: { 200: Envelope(AgentValidationView), ...Errors } } }, async (request) => {
    return ok(await agents.validateEndpoints(request.params.id, actorOf(request)));
  });

  app.get('/:id/validate', { ...admin, schema: { params: AgentParams, querystring: NoQuery, response: { 200: Envelope(AgentConfigCheckView), ...Errors } } }, (request) => {
    return ok(agents.checkConfig(request.params.id));
  });

  return Promise.resolve();
};
