import { useState, type FormEvent } from 'react';
import { useI18n } from '../../i18n/i18n';
import type { AdminAgent, AgentInput, FallbackInput } from './admin-api';

const PROVIDERS = ['openai', 'fastgpt', 'anthropic', 'dify'];

interface FallbackDraft extends FallbackInput {
  /** The stored fallback has a key; an empty key field keeps it. */
  hasApiKey: boolean;
}

type Draft = Omit<AgentInput, 'fallbacks'> & { fallbacks: FallbackDraft[] };

function toDraft(agent: AdminAgent | undefined): Draft {
  return {
    id: agent?.id ?? '',
    name: agent?.name ?? '',
    description: agent?.description ?? '',
    provider: agent?.provider ?? 'openai',
    endpoint: agent?.endpoint ?? '',
    apiKey: '',
    appId: agent?.appId ?? '',
    model: agent?.model ?? '',
    welcomeText: agent?.welcomeText ?? '',
    systemPrompt: agent?.systemPrompt ?? '',
    isActive: agent?.isActive ?? true,
    fallbacks: (agent?.fallbacks ?? []).map((f) => ({ provider: f.provider, endpoint: f.endpoint, apiKey: '', appId: f.appId ?? '', model: f.model ?? '', hasApiKey: f.hasApiKey })),
  };
}

/** Empty optional fields are left out, so the server keeps defaults (and stored keys). */
function clean<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== '' && v !== undefined)) as T;
}

/** Create or edit an agent with its ordered fallback endpoints. */
export function AgentForm({ agent, busy, error, onSubmit, onCancel }: { agent: AdminAgent | undefined; busy: boolean; error: string | undefined; onSubmit: (input: AgentInput) => void; onCancel: () => void }) {
  const { t } = useI18n();
  const [draft, setDraft] = useState<Draft>(() => toDraft(agent));
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const setFallback = (i: number, patch: Partial<FallbackDraft>) => setDraft((d) => ({ ...d, fallbacks: d.fallbacks.map((f, j) => (j === i ? { ...f, ...patch } : f)) }));
  const editing = agent !== undefined;

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const { fallbacks, ...rest } = draft;
    onSubmit({
      ...clean(rest),
      isActive: draft.isActive,
      description: draft.description,
      fallbacks: fallbacks.map(({ hasApiKey: _hasKey, ...f }) => clean(f)),
    });
  };

  const field = (id: Exclude<keyof Draft, 'fallbacks' | 'isActive'>, label: string, props: { type?: string; required?: boolean; disabled?: boolean; multiline?: boolean } = {}) => (
    <label className="field" htmlFor={`agent-${id}`}>
      <span>{label}</span>
      {props.multiline ? (
        <textarea id={`agent-${id}`} rows={2} value={String(draft[id] ?? '')} onChange={(e) => set(id, e.target.value as never)} />
      ) : (
        <input id={`agent-${id}`} type={props.type ?? 'text'} required={props.required} disabled={props.disabled} value={String(draft[id] ?? '')} autoComplete="off" onChange={(e) => set(id, e.target.value as never)} />
      )}
    </label>
  );

  return (
    <form className="admin-form" onSubmit={submit} aria-label={editing ? t('admin.editAgent', { name: agent.name }) : t('admin.newAgent')}>
      <div className="form-grid">
        {field('id', t('admin.agentId'), { required: true, disabled: editing })}
        {field('name', t('admin.agentName'), { required: true })}
        <label className="field" htmlFor="agent-provider">
          <span>{t('admin.provider')}</span>
          <select id="agent-provider" value={draft.provider} onChange={(e) => set('provider', e.target.value)}>
            {PROVIDERS.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        {field('endpoint', t('admin.endpoint'), { type: 'url', required: true })}
        {field('apiKey', editing && agent.hasApiKey ? t('admin.apiKeyKeep') : t('admin.apiKey'), { type: 'password' })}
        {field('model', t('admin.model'))}
        {field('appId', t('admin.appId'))}
        <label className="field checkbox" htmlFor="agent-active">
          <input id="agent-active" type="checkbox" checked={draft.isActive} onChange={(e) => set('isActive', e.target.checked)} />
          <span>{t('admin.active')}</span>
        </label>
      </div>
      {field('description', t('admin.description'), { multiline: true })}
      {field('welcomeText', t('admin.welcomeText'), { multiline: true })}
      {field('systemPrompt', t('admin.systemPrompt'), { multiline: true })}
      <fieldset className="fallbacks">
        <legend>{t('admin.fallbacks')}</legend>
        {draft.fallbacks.map((f, i) => (
          <div key={i} className="fallback-row" role="group" aria-label={t('admin.fallbackN', { n: i + 1 })}>
            <select aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.provider')}`} value={f.provider} onChange={(e) => setFallback(i, { provider: e.target.value })}>
              {PROVIDERS.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
            <input aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.endpoint')}`} type="url" required value={f.endpoint} placeholder={t('admin.endpoint')} onChange={(e) => setFallback(i, { endpoint: e.target.value })} />
            <input aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.apiKey')}`} type="password" autoComplete="off" value={f.apiKey} placeholder={f.hasApiKey ? '••••••' : t('admin.apiKey')} onChange={(e) => setFallback(i, { apiKey: e.target.value })} />
            <input aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.model')}`} value={f.model} placeholder={t('admin.model')} onChange={(e) => setFallback(i, { model: e.target.value })} />
            <button type="button" className="small-button danger" onClick={() => setDraft((d) => ({ ...d, fallbacks: d.fallbacks.filter((_, j) => j !== i) }))}>
              {t('admin.removeFallback', { n: i + 1 })}
            </button>
          </div>
        ))}
        <button type="button" className="small-button" onClick={() => setDraft((d) => ({ ...d, fallbacks: [...d.fallbacks, { provider: d.provider, endpoint: '', apiKey: '', model: '', appId: '', hasApiKey: false }] }))}>
          {t('admin.addFallback')}
        </button>
      </fieldset>
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
      <div className="dialog-actions">
        <button type="button" onClick={onCancel}>
          {t('common.cancel')}
        </button>
        <button type="submit" className="primary" disabled={busy}>
          {t('common.save')}
        </button>
      </div>
    </form>
  );
}
