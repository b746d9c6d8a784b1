import { useState, type FormEvent } from 'react';
import { useI18n } from '../../i18n/i18n';
import type { AdminAgent, AgentHedge, AgentInput, ContentPolicyRouting, FallbackInput } from './admin-api';

const PROVIDERS = ['openai', 'fastgpt', 'anthropic', 'dify'];
/** How each provider kind can continue a broken-off answer (server: providers/continuation-kinds.ts); '' is the provider's default. */
const CONTINUATIONS: Record<string, readonly string[]> = {
  openai: ['prefill', 'continue_final_message', 'restart'],
  anthropic: ['prefill', 'restart'],
  fastgpt: ['restart'],
  dify: ['restart'],
};

interface FallbackDraft extends FallbackInput {
  /** The stored fallback has a key; an empty key field keeps it. */
  hasApiKey: boolean;
}

type HedgeMode = 'off' | 'fixed' | 'p95';

type Draft = Omit<AgentInput, 'fallbacks' | 'hedge' | 'features'> & { fallbacks: FallbackDraft[]; hedgeMode: HedgeMode; hedgeMs: string; supportsImages: boolean; supportsFiles: boolean };

function hedgeOf(mode: HedgeMode, ms: string): AgentHedge | undefined {
  if (mode === 'p95') return { afterMs: 'p95' };
  if (mode === 'fixed' && Number(ms) >= 1) return { afterMs: Math.round(Number(ms)) };
  return undefined;
}

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
    continuation: agent?.continuation ?? '',
    isActive: agent?.isActive ?? true,
    fallbacks: (agent?.fallbacks ?? []).map((f) => ({ provider: f.provider, endpoint: f.endpoint, apiKey: '', appId: f.appId ?? '', model: f.model ?? '', continuation: f.continuation ?? '', hasApiKey: f.hasApiKey })),
    hedgeMode: agent?.hedge ? (agent.hedge.afterMs === 'p95' ? 'p95' : 'fixed') : 'off',
    hedgeMs: typeof agent?.hedge?.afterMs === 'number' ? String(agent.hedge.afterMs) : '2000',
    contentPolicy: agent?.contentPolicy ?? 'pass-through',
    supportsImages: agent?.features?.supportsImages === true,
    supportsFiles: agent?.features?.supportsFiles === true,
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
    const { fallbacks, hedgeMode, hedgeMs, supportsImages, supportsFiles, ...rest } = draft;
    const hedge = hedgeOf(hedgeMode, hedgeMs);
    onSubmit({
      ...clean(rest),
      // An edited agent set back to the provider's default clears its stored setting.
      ...(editing && draft.continuation === '' ? { continuation: null } : {}),
      isActive: draft.isActive,
      description: draft.description,
      features: { supportsImages, supportsFiles },
      fallbacks: fallbacks.map(({ hasApiKey: _hasKey, ...f }) => clean(f)),
      // A new agent leaves it out to be off; an edited one clears it with null.
      ...(hedge ? { hedge } : editing ? { hedge: null } : {}),
    });
  };

  /** The continuation kinds `provider` supports, '' (its default) first. */
  const continuationSelect = (id: string, label: string, provider: string, value: string | null | undefined, onChange: (value: string) => void) => (
    <select id={id} aria-label={label} value={value ?? ''} onChange={(e) => onChange(e.target.value)}>
      <option value="">{t('admin.continuationDefault')}</option>
      {(CONTINUATIONS[provider] ?? []).map((k) => (
        <option key={k} value={k}>
          {k}
        </option>
      ))}
    </select>
  );

  const field = (id: Exclude<keyof Draft, 'fallbacks' | 'isActive' | 'continuation' | 'hedgeMode'>, label: string, props: { type?: string; required?: boolean; disabled?: boolean; multiline?: boolean } = {}) => (
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
          <select id="agent-provider" value={draft.provider} onChange={(e) => setDraft((d) => ({ ...d, provider: e.target.value, continuation: '' }))}>
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
        <label className="field" htmlFor="agent-continuation">
          <span>{t('admin.continuation')}</span>
          {continuationSelect('agent-continuation', t('admin.continuation'), draft.provider, draft.continuation, (v) => set('continuation', v))}
        </label>
        <label className="field checkbox" htmlFor="agent-active">
          <input id="agent-active" type="checkbox" checked={draft.isActive} onChange={(e) => set('isActive', e.target.checked)} />
          <span>{t('admin.active')}</span>
        </label>
        <label className="field checkbox" htmlFor="agent-supportsImages">
          <input id="agent-supportsImages" type="checkbox" checked={draft.supportsImages} onChange={(e) => set('supportsImages', e.target.checked)} />
          <span>{t('admin.supportsImages')}</span>
        </label>
        <label className="field checkbox" htmlFor="agent-supportsFiles">
          <input id="agent-supportsFiles" type="checkbox" checked={draft.supportsFiles} onChange={(e) => set('supportsFiles', e.target.checked)} />
          <span>{t('admin.supportsFiles')}</span>
        </label>
      </div>
      {field('description', t('admin.description'), { multiline: true })}
      {field('welcomeText', t('admin.welcomeText'), { multiline: true })}
      {field('systemPrompt', t('admin.systemPrompt'), { multiline: true })}
      <fieldset className="fallbacks">
        <legend>{t('admin.fallbacks')}</legend>
        {draft.fallbacks.map((f, i) => (
          <div key={i} className="fallback-row" role="group" aria-label={t('admin.fallbackN', { n: i + 1 })}>
            <select aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.provider')}`} value={f.provider} onChange={(e) => setFallback(i, { provider: e.target.value, continuation: '' })}>
              {PROVIDERS.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
            <input aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.endpoint')}`} type="url" required value={f.endpoint} placeholder={t('admin.endpoint')} onChange={(e) => setFallback(i, { endpoint: e.target.value })} />
            <input aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.apiKey')}`} type="password" autoComplete="off" value={f.apiKey} placeholder={f.hasApiKey ? '••••••' : t('admin.apiKey')} onChange={(e) => setFallback(i, { apiKey: e.target.value })} />
            <input aria-label={`${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.model')}`} value={f.model} placeholder={t('admin.model')} onChange={(e) => setFallback(i, { model: e.target.value })} />
            {continuationSelect(`agent-fallback-${i}-continuation`, `${t('admin.fallbackN', { n: i + 1 })}: ${t('admin.continuation')}`, f.provider, f.continuation, (v) => setFallback(i, { continuation: v }))}
            <button type="button" className="small-button danger" onClick={() => setDraft((d) => ({ ...d, fallbacks: d.fallbacks.filter((_, j) => j !== i) }))}>
              {t('admin.removeFallback', { n: i + 1 })}
            </button>
          </div>
        ))}
        <button type="button" className="small-button" onClick={() => setDraft((d) => ({ ...d, fallbacks: [...d.fallbacks, { provider: d.provider, endpoint: '', apiKey: '', model: '', appId: '', continuation: '', hasApiKey: false }] }))}>
          {t('admin.addFallback')}
        </button>
      </fieldset>
      <div className="form-grid">
        <label className="field" htmlFor="agent-hedgeMode">
          <span>{t('admin.hedge')}</span>
          <select id="agent-hedgeMode" value={draft.hedgeMode} aria-describedby="agent-hedge-help" onChange={(e) => set('hedgeMode', e.target.value as HedgeMode)}>
            <option value="off">{t('admin.hedgeOff')}</option>
            <option value="fixed">{t('admin.hedgeFixed')}</option>
            <option value="p95">{t('admin.hedgeP95')}</option>
          </select>
        </label>
        {draft.hedgeMode === 'fixed' && field('hedgeMs', t('admin.hedgeMs'), { type: 'number', required: true })}
      </div>
      <p id="agent-hedge-help" className="muted">
        {t('admin.hedgeHelp')}
      </p>
      <label className="field" htmlFor="agent-contentPolicy">
        <span>{t('admin.contentPolicy')}</span>
        <select id="agent-contentPolicy" value={draft.contentPolicy} aria-describedby="agent-content-policy-help" onChange={(e) => set('contentPolicy', e.target.value as ContentPolicyRouting)}>
          <option value="pass-through">{t('admin.contentPolicyPass')}</option>
          <option value="other-model">{t('admin.contentPolicyOtherModel')}</option>
        </select>
      </label>
      <p id="agent-content-policy-help" className="muted">
        {t('admin.contentPolicyHelp')}
      </p>
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
