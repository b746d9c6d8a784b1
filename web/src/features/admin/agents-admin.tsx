import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError } from '../../api/client';
import { useI18n } from '../../i18n/i18n';
import { adminApi, type AdminAgent, type AgentInput, type EndpointCheck } from './admin-api';
import { AgentForm } from './agent-form';

function errorText(err: unknown): string {
  return err instanceof ApiError ? `${err.code}: ${err.message}` : String(err);
}

/** Agents: list, create and edit (with fallbacks), test the connection, enable and disable, import agents.json. */
export function AgentsAdmin() {
  const { t } = useI18n();
  const queryClient = useQueryClient();
  const agents = useQuery({ queryKey: ['admin-agents'], queryFn: adminApi.agents });
  const [editing, setEditing] = useState<AdminAgent | 'new' | undefined>();
  const [checks, setChecks] = useState<Record<string, EndpointCheck[] | string>>({});
  const [importResult, setImportResult] = useState<{ ok: boolean; text: string } | undefined>();
  const refresh = async () => {
    await queryClient.invalidateQueries({ queryKey: ['admin-agents'] });
    await queryClient.invalidateQueries({ queryKey: ['agents'] });
  };

  const save = useMutation({
    mutationFn: (input: AgentInput) => {
      if (editing === 'new' || editing === undefined) return adminApi.createAgent(input);
      const { id: _id, ...patch } = input;
      return adminApi.updateAgent(editing.id, patch);
    },
    onSuccess: async () => {
      setEditing(undefined);
      await refresh();
    },
  });
  const toggle = useMutation({ mutationFn: (a: AdminAgent) => adminApi.setAgentActive(a.id, !a.isActive), onSuccess: refresh });
  const test = useMutation({
    mutationFn: (a: AdminAgent) => adminApi.testAgent(a.id),
    onSuccess: (r, a) => setChecks((c) => ({ ...c, [a.id]: r.endpoints })),
    onError: (err, a) => setChecks((c) => ({ ...c, [a.id]: errorText(err) })),
  });
  const importFile = async (file: File) => {
    let document: unknown;
    try {
      document = JSON.parse(await file.text()) as unknown;
    } catch {
      setImportResult({ ok: false, text: t('admin.importInvalid') });
      return;
    }
    try {
      const r = await adminApi.importAgents(document);
      setImportResult({ ok: true, text: t('admin.imported', { n: r.imported, created: r.created, updated: r.updated }) });
      await refresh();
    } catch (err) {
      setImportResult({ ok: false, text: errorText(err) });
    }
  };

  if (editing !== undefined) {
    return (
      <section className="card">
        <h2>{editing === 'new' ? t('admin.newAgent') : t('admin.editAgent', { name: editing.name })}</h2>
        <AgentForm agent={editing === 'new' ? undefined : editing} busy={save.isPending} error={save.isError ? errorText(save.error) : undefined} onSubmit={(input) => save.mutate(input)} onCancel={() => setEditing(undefined)} />
      </section>
    );
  }

  return (
    <section className="card" aria-labelledby="agents-title">
      <div className="card-header">
        <h2 id="agents-title">{t('admin.agentsTab')}</h2>
        <div className="toolbar">
          <label className="button file-button">
            {t('admin.import')}
            <input
              type="file"
              accept="application/json,.json"
              className="visually-hidden"
              data-testid="import-agents"
              onChange={(e) => {
                const file = e.target.files?.[0];
                e.target.value = '';
                if (file) void importFile(file);
              }}
            />
          </label>
          <button type="button" className="primary" onClick={() => setEditing('new')}>
            {t('admin.newAgent')}
          </button>
        </div>
      </div>
      {importResult && (
        <p className={importResult.ok ? 'form-ok' : 'form-error'} role={importResult.ok ? 'status' : 'alert'}>
          {importResult.text}
        </p>
      )}
      {agents.isError && <p role="alert">{t('common.error', { message: agents.error.message })}</p>}
      <div className="table-wrap" tabIndex={0}>
        <table data-testid="admin-agents">
          <thead>
            <tr>
              <th scope="col">{t('admin.agentName')}</th>
              <th scope="col">{t('admin.provider')}</th>
              <th scope="col">{t('admin.endpoints')}</th>
              <th scope="col">{t('admin.status')}</th>
              <th scope="col">{t('admin.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {agents.data?.map((a) => {
              const check = checks[a.id];
              return (
                <tr key={a.id} data-agent={a.id}>
                  <td>
                    <strong>{a.name}</strong>
                    <div className="muted small">{a.id}</div>
                  </td>
                  <td>{a.provider}</td>
                  <td>{1 + a.fallbacks.length}</td>
                  <td>{a.isActive ? t('admin.active') : t('admin.inactive')}</td>
                  <td>
                    <div className="row-actions">
                      <button type="button" className="small-button" onClick={() => setEditing(a)}>
                        {t('admin.edit')}
                      </button>
                      <button type="button" className="small-button" onClick={() => toggle.mutate(a)}>
                        {a.isActive ? t('admin.disable') : t('admin.enable')}
                      </button>
                      <button type="button" className="small-button" disabled={test.isPending && test.variables.id === a.id} onClick={() => test.mutate(a)}>
                        {t('admin.test')}
                      </button>
                    </div>
                    {check !== undefined && (
                      <ul className="check-list" role="status" data-testid={`check-${a.id}`}>
                        {typeof check === 'string' ? (
                          <li className="form-error">{check}</li>
                        ) : (
                          check.map((c) => (
                            <li key={c.position} className={c.ok ? 'form-ok' : 'form-error'}>
                              {c.ok ? t('admin.testOk', { host: c.host, ms: Math.round(c.latencyMs) }) : t('admin.testFailed', { host: c.host, message: c.error?.message ?? c.error?.code ?? '' })}
                            </li>
                          ))
                        )}
                      </ul>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
